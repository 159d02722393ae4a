//! Agent calls over KLP: serving a local agent to remote agents that hold a consent token, and using a
//! remote agent as a local tool.
//!
//! A call is a `call_request` envelope with body `{"input": <text>, "token": <consent token>}`; the answer
//! is a `call_response` envelope with body `{"reply_to": <request id>, "answer": <text>}` or
//! `{"reply_to": …, "error": {"kind": <snake_case>, "message": <text>}}`, which [`call`] returns as
//! [`Error::Refused`]. The token must be an invocation of that request
//! ([`invoke`](crate::consent::invoke)) issued by the session's peer itself and addressed to the serving
//! agent, and grant `agent/invoke` on `agent:<its DID>`; every tool call the served agent makes is then
//! checked against the same token (`tool/call` on `tool:<name>`, with the call's arguments).

use std::sync::Arc;
use std::time::Duration;

use futures::lock::Mutex;
use kai_core::{Agent, ToolContext, ToolError, TypedTool};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::consent::{Capability, ConsentHook, Verifier};
use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;
use crate::sealed::{Envelope, MessageKind};
use crate::session::{FrameTransport, Session};

/// The capability a caller needs to run an agent: `agent/invoke` on `agent:<did>`.
pub fn invoke_capability(agent: &Did) -> Capability {
    Capability::new(format!("agent:{agent}"), "agent/invoke")
}

/// Serves `agent` on `session` until the peer closes it: each call request is admitted with `verifier`
/// (signature chain, audience, freshness, replay), must grant `agent/invoke` on this agent, and runs with a
/// [`ConsentHook`] for the same token. Returns when the session closes; a broken session is an error.
pub async fn serve<T: FrameTransport>(
    agent: &Agent,
    me: &Identity,
    session: &mut Session<T>,
    verifier: &Arc<Verifier>,
) -> Result<(), Error> {
    loop {
        let request = match session.recv().await {
            Ok(request) => request,
            Err(Error::SessionClosed) => return Ok(()),
            Err(error) => return Err(error),
        };
        if request.kind != MessageKind::CallRequest {
            continue;
        }
        let peer = *session.peer();
        let body = match answer(agent, me, &peer, &request, verifier).await {
            Ok(answer) => json!({"reply_to": request.id, "answer": answer}),
            Err(error) => {
                json!({"reply_to": request.id, "error": {"kind": error.kind(), "message": refusal_message(&error)}})
            }
        };
        let response = Envelope::new(me, session.peer(), MessageKind::CallResponse, body);
        session.send(&response).await?;
    }
}

async fn answer(
    agent: &Agent,
    me: &Identity,
    peer: &Did,
    request: &Envelope,
    verifier: &Arc<Verifier>,
) -> Result<String, Error> {
    let malformed = |reason: &str| Error::MessageRejected { reason: reason.into() };
    let input = request.body["input"]
        .as_str()
        .ok_or_else(|| malformed("the request has no input"))?;
    let token = request.body["token"]
        .as_str()
        .ok_or_else(|| malformed("the request carries no consent token"))?;
    // The session authenticated the peer; the token must be the peer's own invocation of this request.
    verifier.admit_invocation(token, peer, &request.id, &invoke_capability(&me.did()))?;
    let guarded = agent.with_hook(Arc::new(ConsentHook::new(Arc::clone(verifier), token)));
    guarded
        .run(input)
        .await
        .map(|output| output.answer)
        .map_err(|e| Error::Refused {
            kind: "agent_failed".into(),
            message: format!("the agent failed: {}", e.error),
        })
}

/// What a refused caller is told: the refusal itself, but nothing of this side's own failures (a file
/// path, an I/O error), which stay in this side's logs.
fn refusal_message(error: &Error) -> String {
    let ours = match error {
        Error::Io(_) | Error::AuditInvalid { .. } => true,
        #[cfg(feature = "vault")]
        Error::Vault(_) => true,
        _ => false,
    };
    if ours {
        tracing::warn!(%error, "a call failed on this side");
        return "the call could not be handled".into();
    }
    error.to_string()
}

/// How long [`call`] waits for the remote agent's answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Calls the agent at the other end of `session` with `input`, under a fresh invocation from `me`
/// granting `capabilities` for one minute, proven by `grant` (a token the remote agent issued to `me`,
/// or a chain ending at `me`). The answer, or the remote side's refusal as [`Error::Refused`] with its
/// kind, so a caller can tell "not granted" from "expired" from a failed run. Waits at most
/// [`CALL_TIMEOUT`] ([`call_within`] sets another limit).
pub async fn call<T: FrameTransport>(
    session: &mut Session<T>,
    me: &Identity,
    grant: &str,
    capabilities: &[Capability],
    input: &str,
) -> Result<String, Error> {
    call_within(CALL_TIMEOUT, session, me, grant, capabilities, input).await
}

/// [`call`], waiting at most `limit` for the answer: a remote agent that never answers (or answers
/// only other requests) gives [`Error::CallTimedOut`]. The session may then be mid-message, and is
/// not used again ([`Error::SessionBroken`] on its next use) unless the wait ended between messages.
pub async fn call_within<T: FrameTransport>(
    limit: Duration,
    session: &mut Session<T>,
    me: &Identity,
    grant: &str,
    capabilities: &[Capability],
    input: &str,
) -> Result<String, Error> {
    crate::clock::within(limit, exchange(session, me, grant, capabilities, input))
        .await
        .unwrap_or_else(|| {
            Err(Error::CallTimedOut {
                millis: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            })
        })
}

/// Sends the call request and waits for its answer.
async fn exchange<T: FrameTransport>(
    session: &mut Session<T>,
    me: &Identity,
    grant: &str,
    capabilities: &[Capability],
    input: &str,
) -> Result<String, Error> {
    let remote = *session.peer();
    let mut request = Envelope::new(me, &remote, MessageKind::CallRequest, json!({"input": input}));
    let token = crate::consent::invoke(
        me,
        &remote,
        capabilities,
        Duration::from_secs(60),
        &[grant.to_owned()],
        &request.id,
    )?;
    request.body["token"] = json!(token);
    session.send(&request).await?;
    loop {
        let response = session.recv().await?;
        if response.kind != MessageKind::CallResponse || response.body["reply_to"] != json!(request.id) {
            continue;
        }
        if let Some(answer) = response.body["answer"].as_str() {
            return Ok(answer.to_owned());
        }
        let error = &response.body["error"];
        // A peer's words end up in logs: at most a thousand characters of them.
        let text = |value: &serde_json::Value| value.as_str().map(|s| s.chars().take(1000).collect::<String>());
        let kind = text(&error["kind"])
            .filter(|kind| kind.len() <= 40 && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .unwrap_or_else(|| "unknown".into());
        return Err(Error::Refused {
            kind,
            message: text(&error["message"])
                .or_else(|| text(error))
                .unwrap_or_else(|| "the remote agent gave no reason".into()),
        });
    }
}

/// A remote agent, reached over a session, as a local [`Tool`](kai_core::Tool). Each call issues a fresh token from
/// `grant` (a token the remote agent issued to us, or a chain ending at us) narrowed to this call.
pub struct RemoteAgentTool<T: FrameTransport> {
    session: Mutex<Session<T>>,
    me: Identity,
    grant: String,
    capabilities: Vec<Capability>,
    name: String,
    description: String,
    timeout: Duration,
}

/// What the model passes to a [`RemoteAgentTool`].
#[derive(Deserialize, JsonSchema)]
pub struct CallArgs {
    /// The task for the remote agent, with everything it needs to know.
    input: String,
}

impl<T: FrameTransport> RemoteAgentTool<T> {
    /// A tool named `name` calling the agent at the other end of `session`. Each call delegates
    /// `capabilities` (which `grant` must cover) to the remote agent for one minute.
    pub fn new(
        session: Session<T>,
        me: Identity,
        grant: String,
        capabilities: Vec<Capability>,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            session: Mutex::new(session),
            me,
            grant,
            capabilities,
            name: name.into(),
            description: description.into(),
            timeout: CALL_TIMEOUT,
        }
    }

    /// Sets how long one call waits for the remote agent's answer (default [`CALL_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<T: FrameTransport + Sync + 'static> TypedTool for RemoteAgentTool<T> {
    type Args = CallArgs;
    type Output = String;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    async fn call(&self, args: CallArgs, _context: ToolContext) -> Result<String, ToolError> {
        let mut session = self.session.lock().await;
        call_within(
            self.timeout,
            &mut session,
            &self.me,
            &self.grant,
            &self.capabilities,
            &args.input,
        )
        .await
        .map_err(|error| match error {
            Error::Refused { .. } => ToolError::failed(format_args!("remote agent {}: {error}", session.peer())),
            other => ToolError::failed(other),
        })
    }
}
