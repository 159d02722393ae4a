//! Multi-turn conversations: history kept between runs.

use crate::agent::{Agent, RunError, RunOptions, RunOutput, RunState};
use crate::message::{Message, Usage};

/// A conversation with an agent: each [`send`](Conversation::send) is one run that sees the history of
/// the earlier ones.
///
/// The history is plain [`Message`]s, so it can be stored with serde and given back to
/// [`Conversation::with_history`] later. A failed run leaves the history as it was; its transcript is
/// in the [`RunError`].
///
/// ```
/// use kai_core::testing::ScriptedModel;
/// use kai_core::{Agent, Conversation};
///
/// # futures::executor::block_on(async {
/// let agent = Agent::builder(ScriptedModel::new().text("Hi Ada!").text("You are Ada.")).build().unwrap();
/// let mut chat = Conversation::new(agent);
/// chat.send("I am Ada.").await.unwrap();
/// let second = chat.send("Who am I?").await.unwrap();
/// assert_eq!(second.answer, "You are Ada.");
/// assert_eq!(chat.history().len(), 4);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Conversation {
    agent: Agent,
    history: Vec<Message>,
    usage: Usage,
}

impl Conversation {
    /// An empty conversation.
    pub fn new(agent: Agent) -> Self {
        Self::with_history(agent, Vec::new())
    }

    /// A conversation that continues from stored history.
    pub fn with_history(agent: Agent, history: Vec<Message>) -> Self {
        Self {
            agent,
            history,
            usage: Usage::default(),
        }
    }

    /// Sends one user message and runs the agent until it answers.
    pub async fn send(&mut self, input: impl Into<String>) -> Result<RunOutput, RunError> {
        self.send_with(input, RunOptions::default()).await
    }

    /// Sends one user message, with run options such as a cancellation token.
    pub async fn send_with(&mut self, input: impl Into<String>, options: RunOptions) -> Result<RunOutput, RunError> {
        let state = RunState::continuing(self.history.clone(), input);
        self.finish(self.agent.resume_with(state, options).await)
    }

    /// Resumes a run of this conversation that stopped (for example to wait for an approval).
    pub async fn resume(&mut self, state: RunState) -> Result<RunOutput, RunError> {
        self.finish(self.agent.resume(state).await)
    }

    fn finish(&mut self, result: Result<RunOutput, RunError>) -> Result<RunOutput, RunError> {
        if let Ok(output) = &result {
            self.history.clone_from(&output.messages);
            self.usage += output.usage;
        }
        result
    }

    /// The messages so far.
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Takes the history out, leaving the conversation empty.
    pub fn take_history(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.history)
    }

    /// Tokens used by every run of this conversation object.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }
}
