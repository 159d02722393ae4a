//! The serializable state of an agent run, which makes runs durable.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::message::{Message, ToolCall, Usage};

/// Everything needed to continue a run: the transcript, the step count, usage so far, tool calls
/// that were asked for but not yet answered, and approvals waiting for a human.
///
/// It serializes with serde, so a run can be checkpointed after every step
/// ([`AgentHook::checkpoint`](crate::AgentHook::checkpoint)) and resumed with
/// [`Agent::resume`](crate::Agent::resume) in another process. The agent's instructions, tools and
/// limits are not part of it: they come from the agent that resumes the run.
///
/// ```
/// use kai_core::RunState;
///
/// let state = RunState::new("What is the weather in Oslo?");
/// let stored = serde_json::to_string(&state).unwrap();
/// let restored: RunState = serde_json::from_str(&stored).unwrap();
/// assert_eq!(restored, state);
/// ```
///
/// The stored form carries a format `version`; a state written by a newer kAI whose format this one
/// does not know is refused when it is read, instead of being half understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredRunState")]
pub struct RunState {
    /// The format version of the stored form ([`RunState::FORMAT_VERSION`] when written by this kAI).
    pub version: u32,
    /// A random id for this run, kept through checkpoints and resumes. With a call id it makes an
    /// idempotency key no other run shares ([`ToolContext::idempotency_key`](crate::ToolContext)).
    pub id: String,
    /// The transcript: user, assistant and tool messages (the agent's instructions are not included).
    pub messages: Vec<Message>,
    /// Model calls made so far.
    pub steps: u32,
    /// Tokens used so far.
    pub usage: Usage,
    /// Tool calls from the last assistant message that have not been answered yet. A call leaves this
    /// list the moment its result is added to `messages`, so a resumed run never runs it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_tool_calls: Vec<ToolCall>,
    /// Tool calls waiting for, or holding, a human's decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// Answers to structured-output requests that failed validation and were sent back for repair.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repairs: u32,
    /// Runs of agents used as tools that are suspended waiting for approvals, by the outer call that
    /// started them. Their waiting calls are in `approvals` with ids `<outer call id>/<inner call id>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspended: Vec<SuspendedCall>,
}

/// A tool call whose run (an agent used as a tool) is suspended waiting for approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspendedCall {
    /// The id of the outer call, which is still pending.
    pub call_id: String,
    /// The suspended inner run.
    pub state: Box<RunState>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for RunState {
    fn default() -> Self {
        Self {
            version: Self::FORMAT_VERSION,
            id: new_run_id(),
            messages: Vec::new(),
            steps: 0,
            usage: Usage::default(),
            pending_tool_calls: Vec::new(),
            approvals: Vec::new(),
            repairs: 0,
            suspended: Vec::new(),
        }
    }
}

/// The stored form of a [`RunState`], read before its version is checked.
#[derive(Deserialize)]
struct StoredRunState {
    /// Absent in the first format, which had no version.
    #[serde(default = "first_version")]
    version: u32,
    /// Absent before runs had ids; such a run gets a new one.
    #[serde(default)]
    id: Option<String>,
    messages: Vec<Message>,
    /// Named `step` in the first format.
    #[serde(alias = "step")]
    steps: u32,
    usage: Usage,
    #[serde(default)]
    pending_tool_calls: Vec<ToolCall>,
    #[serde(default)]
    approvals: Vec<Approval>,
    #[serde(default)]
    repairs: u32,
    #[serde(default)]
    suspended: Vec<SuspendedCall>,
}

fn first_version() -> u32 {
    1
}

/// 128 random bits, base64url.
pub(crate) fn new_run_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    // Without an entropy source (a platform kAI does not know) ids fall back to the clock: still
    // distinct between runs, just guessable, and an idempotency key needs no secrecy.
    if getrandom::getrandom(&mut bytes).is_err() {
        let now = web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes.copy_from_slice(&now.as_nanos().to_le_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TryFrom<StoredRunState> for RunState {
    type Error = String;

    fn try_from(stored: StoredRunState) -> Result<Self, String> {
        if stored.version > RunState::FORMAT_VERSION {
            return Err(format!(
                "this run state has format version {}, written by a newer kAI; this one reads versions up to {}",
                stored.version,
                RunState::FORMAT_VERSION
            ));
        }
        Ok(RunState {
            version: RunState::FORMAT_VERSION,
            id: stored.id.filter(|id| !id.is_empty()).unwrap_or_else(new_run_id),
            messages: stored.messages,
            steps: stored.steps,
            usage: stored.usage,
            pending_tool_calls: stored.pending_tool_calls,
            approvals: stored.approvals,
            repairs: stored.repairs,
            suspended: stored.suspended,
        })
    }
}

/// A tool call that a hook wants a human to approve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The call in question.
    pub call: ToolCall,
    /// Why the hook asked.
    pub reason: String,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ApprovalDecision>,
    /// For a call of a suspended inner run (an agent used as a tool): where it waits. Its `call.id` is
    /// then `<outer call id>/<inner call id>`, for display; the bookkeeping goes by this field, never by
    /// parsing ids, which a model chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested: Option<NestedApproval>,
}

/// Where a call waiting for approval inside a suspended inner run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedApproval {
    /// The outer call whose run is suspended.
    pub outer_call_id: String,
    /// The position of the call's approval in the inner run's `approvals`.
    pub index: usize,
}

/// A human's decision on a tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// Run the call.
    Approved,
    /// Do not run it; the model is told the reason.
    Rejected {
        /// The reason, shown to the model.
        reason: String,
    },
}

impl RunState {
    /// The format version this kAI writes. Version 1 (no `version` field, `step` for `steps`) is still
    /// read.
    pub const FORMAT_VERSION: u32 = 2;

    /// A new run that starts with one user message.
    pub fn new(input: impl Into<String>) -> Self {
        Self::continuing(Vec::new(), input)
    }

    /// A new run that continues an earlier conversation with one more user message.
    pub fn continuing(history: Vec<Message>, input: impl Into<String>) -> Self {
        let mut messages = history;
        messages.push(Message::user(input));
        Self {
            messages,
            ..Self::default()
        }
    }

    /// Approvals still waiting for a decision.
    pub fn pending_approvals(&self) -> impl Iterator<Item = &Approval> {
        self.approvals.iter().filter(|a| a.decision.is_none())
    }

    /// Approves the tool call with this id. When several calls waiting have this id (a model may repeat
    /// ids), this is [`Error::Config`]: decide them all with [`approve_all`](Self::approve_all) or
    /// [`reject_all`](Self::reject_all).
    pub fn approve(&mut self, call_id: &str) -> Result<(), Error> {
        self.decide(call_id, ApprovalDecision::Approved)
    }

    /// Rejects the tool call with this id; the model is told `reason`.
    pub fn reject(&mut self, call_id: &str, reason: impl Into<String>) -> Result<(), Error> {
        self.decide(call_id, ApprovalDecision::Rejected { reason: reason.into() })
    }

    /// Approves every call still waiting for a decision; returns how many there were.
    pub fn approve_all(&mut self) -> usize {
        self.decide_pending(ApprovalDecision::Approved)
    }

    /// Rejects every call still waiting for a decision, telling the model `reason`; returns how many
    /// there were.
    pub fn reject_all(&mut self, reason: impl Into<String>) -> usize {
        self.decide_pending(ApprovalDecision::Rejected { reason: reason.into() })
    }

    fn decide_pending(&mut self, decision: ApprovalDecision) -> usize {
        let mut decided = 0;
        for approval in self.approvals.iter_mut().filter(|a| a.decision.is_none()) {
            approval.decision = Some(decision.clone());
            decided += 1;
        }
        decided
    }

    /// Takes the suspended inner run of this outer call, with the decisions made on its waiting calls
    /// moved into it.
    pub(crate) fn take_suspended(&mut self, call_id: &str) -> Option<RunState> {
        let position = self.suspended.iter().position(|s| s.call_id == call_id)?;
        let mut inner = *self.suspended.remove(position).state;
        let belongs = |approval: &Approval| {
            approval
                .nested
                .as_ref()
                .is_some_and(|nested| nested.outer_call_id == call_id)
        };
        for approval in self.approvals.iter().filter(|a| belongs(a)) {
            if let (Some(nested), Some(decision)) = (&approval.nested, &approval.decision)
                && let Some(waiting) = inner.approvals.get_mut(nested.index)
            {
                waiting.decision = Some(decision.clone());
            }
        }
        self.approvals.retain(|a| !belongs(a));
        Some(inner)
    }

    /// Records that the run of outer call `call_id` is suspended in `inner`, its waiting calls being
    /// this run's approvals too.
    pub(crate) fn suspend(&mut self, call_id: &str, inner: RunState) {
        let waiting = inner.approvals.iter().enumerate().filter(|(_, a)| a.decision.is_none());
        for (index, approval) in waiting {
            let mut call = approval.call.clone();
            call.id = format!("{call_id}/{}", call.id);
            self.approvals.push(Approval {
                call,
                reason: approval.reason.clone(),
                decision: None,
                nested: Some(NestedApproval {
                    outer_call_id: call_id.to_owned(),
                    index,
                }),
            });
        }
        self.suspended.push(SuspendedCall {
            call_id: call_id.to_owned(),
            state: Box::new(inner),
        });
    }

    /// The approval recorded for this call of this run (not of a suspended inner run), if any.
    pub(crate) fn approval_for(&self, call_id: &str) -> Option<&Approval> {
        self.approvals
            .iter()
            .filter(|a| a.nested.is_none())
            .find(|a| a.call.id == call_id)
    }

    fn decide(&mut self, call_id: &str, decision: ApprovalDecision) -> Result<(), Error> {
        let mut matching = self.approvals.iter_mut().filter(|a| a.call.id == call_id);
        let (Some(approval), None) = (matching.next(), matching.next()) else {
            let count = self.approvals.iter().filter(|a| a.call.id == call_id).count();
            return Err(Error::Config {
                message: match count {
                    0 => format!("no tool call {call_id:?} is waiting for approval"),
                    _ => format!(
                        "{count} tool calls waiting for approval have the id {call_id:?}; decide them together with approve_all or reject_all"
                    ),
                },
            });
        };
        approval.decision = Some(decision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_format_state_is_read_and_a_newer_format_is_refused() {
        let first = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"step":3,"usage":{"input_tokens":1,"output_tokens":2}}"#;
        let state: RunState = serde_json::from_str(first).unwrap();
        assert_eq!((state.version, state.steps), (RunState::FORMAT_VERSION, 3));

        let mut newer = serde_json::to_value(RunState::new("hi")).unwrap();
        assert_eq!(newer["version"], RunState::FORMAT_VERSION);
        newer["version"] = serde_json::json!(RunState::FORMAT_VERSION + 1);
        let error = serde_json::from_value::<RunState>(newer).unwrap_err();
        assert!(error.to_string().contains("newer kAI"), "{error}");
    }

    #[test]
    fn approve_all_and_reject_all_decide_only_what_waits() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "t".into(),
            arguments: "{}".into(),
            signature: None,
        };
        let mut state = RunState::new("hi");
        state.approvals = vec![
            Approval {
                call: call("a"),
                reason: "r".into(),
                decision: None,
                nested: None,
            },
            Approval {
                call: call("b"),
                reason: "r".into(),
                decision: Some(ApprovalDecision::Approved),
                nested: None,
            },
            Approval {
                call: call("c"),
                reason: "r".into(),
                decision: None,
                nested: None,
            },
        ];
        assert_eq!(state.reject_all("no"), 2);
        assert_eq!(state.approve_all(), 0);
        assert_eq!(state.pending_approvals().count(), 0);
        assert_eq!(state.approvals[1].decision, Some(ApprovalDecision::Approved));
    }
}
