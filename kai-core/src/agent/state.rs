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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The transcript: user, assistant and tool messages (the agent's instructions are not included).
    pub messages: Vec<Message>,
    /// Model calls made so far.
    pub step: u32,
    /// Tokens used so far.
    pub usage: Usage,
    /// Tool calls from the last assistant message that have not been answered yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_tool_calls: Vec<ToolCall>,
    /// Tool calls waiting for, or holding, a human's decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// Answers to structured-output requests that failed validation and were sent back for repair.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repairs: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

    /// Approves the tool call with this id.
    pub fn approve(&mut self, call_id: &str) -> Result<(), Error> {
        self.decide(call_id, ApprovalDecision::Approved)
    }

    /// Rejects the tool call with this id; the model is told `reason`.
    pub fn reject(&mut self, call_id: &str, reason: impl Into<String>) -> Result<(), Error> {
        self.decide(call_id, ApprovalDecision::Rejected { reason: reason.into() })
    }

    /// The decision recorded for this call, if any.
    pub(crate) fn decision_for(&self, call_id: &str) -> Option<&ApprovalDecision> {
        self.approvals
            .iter()
            .find(|a| a.call.id == call_id)
            .and_then(|a| a.decision.as_ref())
    }

    fn decide(&mut self, call_id: &str, decision: ApprovalDecision) -> Result<(), Error> {
        match self.approvals.iter_mut().find(|a| a.call.id == call_id) {
            Some(approval) => {
                approval.decision = Some(decision);
                Ok(())
            }
            None => Err(Error::Config {
                message: format!("no tool call {call_id:?} is waiting for approval"),
            }),
        }
    }
}
