//! Conversation memory per session: a token-budgeted window, or a running summary of older turns.
//!
//! Sessions persist in SQLite (`sessions.sqlite3`, fully synchronous commits). Use a memory around any
//! agent with [`ConversationMemory::chat`]: it loads the session's context, runs the agent, and records
//! the new messages.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use kai_core::{Agent, ChatModel, ChatRequest, ContentPart, MaybeSend, MaybeSync, Message, Role, RunOutput, RunState};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Error;
use crate::worker::Worker;

/// A rough token count: about four characters per token, plus four per message.
pub fn estimate_tokens(message: &Message) -> usize {
    let chars: usize = message
        .content
        .iter()
        .map(|part| match part {
            ContentPart::Text { text } => text.chars().count(),
            ContentPart::ToolCall(call) => call.name.len() + call.arguments.chars().count(),
            ContentPart::ToolResult(result) => result.content.chars().count(),
            _ => 1000,
        })
        .sum();
    chars.div_ceil(4) + 4
}

/// Where sessions are kept: every message of each session, and its summary.
///
/// The database work (each write a committed, fsynced SQLite transaction) runs on the store's own
/// thread, so the async methods never block the executor that awaits them. Clones share the thread.
#[derive(Debug, Clone)]
pub struct SessionStore {
    db: Arc<Mutex<Connection>>,
    worker: Arc<Worker>,
}

/// What is stored for a session.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// A summary of messages no longer kept verbatim.
    pub summary: Option<String>,
    /// The messages kept verbatim, oldest first.
    pub messages: Vec<Message>,
}

fn sql(error: rusqlite::Error) -> Error {
    Error::Database(error.to_string())
}

impl SessionStore {
    /// Opens (or creates) the session database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let db = Connection::open(path).map_err(sql)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, summary TEXT, messages TEXT NOT NULL);",
        )
        .map_err(sql)?;
        let worker = Worker::spawn("kai-session-store").map_err(|e| Error::io(path, e))?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
            worker: Arc::new(worker),
        })
    }

    /// Runs `work` on the database, on the store's thread.
    async fn with_db<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let db = Arc::clone(&self.db);
        self.worker
            .run(move || work(&mut db.lock().unwrap_or_else(PoisonError::into_inner)))
            .await
    }

    /// The session's stored state (empty for a new session).
    pub async fn load(&self, id: &str) -> Result<Session, Error> {
        let id = id.to_owned();
        self.with_db(move |db| read_session(db, &id)).await
    }

    /// Replaces the session's stored state.
    pub async fn save(&self, id: &str, session: &Session) -> Result<(), Error> {
        let (id, session) = (id.to_owned(), session.clone());
        self.with_db(move |db| write_session(db, &id, &session)).await
    }

    /// Changes the session's stored state with `change`, atomically: other writers, through this store or
    /// another process's, cannot slip in between the read and the write and have their change lost.
    /// Nothing is written if `change` returns `false`. Returns the session as it now stands.
    pub async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Session) -> bool + Send + 'static,
    ) -> Result<Session, Error> {
        let id = id.to_owned();
        self.with_db(move |db| {
            let transaction = db
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql)?;
            let mut session = read_session(&transaction, &id)?;
            if change(&mut session) {
                write_session(&transaction, &id, &session)?;
            }
            transaction.commit().map_err(sql)?;
            Ok(session)
        })
        .await
    }

    /// Deletes a session; returns whether it existed.
    pub async fn delete(&self, id: &str) -> Result<bool, Error> {
        let id = id.to_owned();
        self.with_db(move |db| {
            Ok(db
                .execute("DELETE FROM sessions WHERE id = ?1", params![id])
                .map_err(sql)?
                > 0)
        })
        .await
    }
}

fn read_session(db: &Connection, id: &str) -> Result<Session, Error> {
    let row: Option<(Option<String>, String)> = db
        .query_row(
            "SELECT summary, messages FROM sessions WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let Some((summary, messages)) = row else {
        return Ok(Session::default());
    };
    let messages = serde_json::from_str(&messages).map_err(|_| Error::Corrupt {
        what: format!("session {id:?} holds messages that do not parse"),
    })?;
    Ok(Session { summary, messages })
}

fn write_session(db: &Connection, id: &str, session: &Session) -> Result<(), Error> {
    let messages = serde_json::to_string(&session.messages).map_err(|e| Error::Record {
        name: id.to_owned(),
        message: e.to_string(),
    })?;
    db.execute(
        "INSERT INTO sessions (id, summary, messages) VALUES (?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET summary = excluded.summary, messages = excluded.messages",
        params![id, session.summary, messages],
    )
    .map_err(sql)?;
    Ok(())
}

/// A policy for what a session's next run sees, and how its history is kept.
#[kai_core::async_trait]
pub trait ConversationMemory: MaybeSend + MaybeSync {
    /// The messages the next run of `session` starts from.
    async fn context(&self, session: &str) -> Result<Vec<Message>, Error>;

    /// Records the messages a run added to `session`.
    async fn record(&self, session: &str, new_messages: &[Message]) -> Result<(), Error>;

    /// Runs `agent` on `input` in `session`: loads the context, runs, records the new messages (those
    /// after the context in the run's output).
    async fn chat(&self, agent: &Agent, session: &str, input: &str) -> Result<RunOutput, Error> {
        let context = self.context(session).await?;
        let start = context.len();
        let output = agent
            .resume(RunState::continuing(context, input))
            .await
            .map_err(|e| Error::Agent(Box::new(e)))?;
        let new_messages = output.messages.get(start..).unwrap_or_default();
        self.record(session, new_messages).await?;
        Ok(output)
    }
}

/// The most recent messages that fit a token budget. Everything is stored; only the window is sent.
/// The window always starts at a user message, so a tool call is never separated from its results.
#[derive(Debug, Clone)]
pub struct WindowMemory {
    sessions: SessionStore,
    budget: usize,
}

impl WindowMemory {
    /// A window of about `budget` tokens.
    pub fn new(sessions: SessionStore, budget: usize) -> Self {
        Self { sessions, budget }
    }
}

/// The start of the longest suffix of `messages` within `budget` that begins at a user message.
fn window_start(messages: &[Message], budget: usize) -> usize {
    let mut used = 0;
    let mut start = messages.len();
    for (index, message) in messages.iter().enumerate().rev() {
        used += estimate_tokens(message);
        if used > budget {
            break;
        }
        if message.role == Role::User && !message.tool_results().any(|_| true) {
            start = index;
        }
    }
    start
}

#[kai_core::async_trait]
impl ConversationMemory for WindowMemory {
    async fn context(&self, session: &str) -> Result<Vec<Message>, Error> {
        let stored = self.sessions.load(session).await?;
        let start = window_start(&stored.messages, self.budget);
        Ok(stored.messages[start..].to_vec())
    }

    async fn record(&self, session: &str, new_messages: &[Message]) -> Result<(), Error> {
        let new_messages = new_messages.to_vec();
        self.sessions
            .update(session, move |stored| {
                stored.messages.extend(new_messages);
                true
            })
            .await
            .map(drop)
    }
}

/// Keeps recent messages verbatim and folds older ones into a running summary written by a model.
///
/// When a session's messages exceed `budget` tokens, the oldest are summarised (together with the
/// previous summary) until the rest fit `keep_recent`; the summary is sent first, as a system message.
///
/// A run's messages are stored before any summarising starts, so a failing summariser loses nothing:
/// the failure is logged (a `tracing` warning), [`record`](ConversationMemory::record) and
/// [`chat`](ConversationMemory::chat) still succeed with the turn stored verbatim, and the next turn
/// tries to summarise again.
#[derive(Clone)]
pub struct SummarizingMemory {
    sessions: SessionStore,
    model: Arc<dyn ChatModel>,
    budget: usize,
    keep_recent: usize,
}

impl std::fmt::Debug for SummarizingMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummarizingMemory")
            .field("model", &self.model.name())
            .field("budget", &self.budget)
            .field("keep_recent", &self.keep_recent)
            .finish()
    }
}

impl SummarizingMemory {
    /// Summarises with `model` once a session passes `budget` tokens, keeping about `keep_recent`.
    pub fn new(sessions: SessionStore, model: Arc<dyn ChatModel>, budget: usize, keep_recent: usize) -> Self {
        Self {
            sessions,
            model,
            budget,
            keep_recent: keep_recent.min(budget),
        }
    }

    async fn summarise(&self, previous: Option<&str>, messages: &[Message]) -> Result<String, Error> {
        let mut transcript = String::new();
        if let Some(previous) = previous {
            transcript.push_str(&format!("Summary so far: {previous}\n\n"));
        }
        for message in messages {
            let who = match message.role {
                Role::User => "User",
                Role::Assistant => "Assistant",
                Role::Tool => "Tool",
                Role::System => "System",
            };
            let mut text = message.text();
            for call in message.tool_calls() {
                text.push_str(&format!(" [called {}({})]", call.name, call.arguments));
            }
            for result in message.tool_results() {
                text.push_str(&format!(" [{} returned: {}]", result.name, result.content));
            }
            transcript.push_str(&format!("{who}: {}\n", text.trim()));
        }
        let request = ChatRequest::new(vec![
            Message::system(
                "Summarise this conversation for the assistant who will continue it: keep names, facts, \
                 decisions, open questions and the user's preferences; drop pleasantries. Reply with the \
                 summary only.",
            ),
            Message::user(transcript),
        ]);
        let response = self.model.complete(request).await.map_err(Error::Model)?;
        Ok(response.text().trim().to_owned())
    }
}

#[kai_core::async_trait]
impl ConversationMemory for SummarizingMemory {
    async fn context(&self, session: &str) -> Result<Vec<Message>, Error> {
        let stored = self.sessions.load(session).await?;
        let mut context = Vec::with_capacity(stored.messages.len() + 1);
        if let Some(summary) = &stored.summary {
            context.push(Message::system(format!(
                "Summary of the earlier conversation: {summary}"
            )));
        }
        context.extend(stored.messages);
        Ok(context)
    }

    async fn record(&self, session: &str, new_messages: &[Message]) -> Result<(), Error> {
        // The context began with the summary message, which is not part of the stored messages.
        let new_messages: Vec<Message> = new_messages
            .iter()
            .filter(|m| m.role != Role::System)
            .cloned()
            .collect();
        let stored = self
            .sessions
            .update(session, move |session| {
                session.messages.extend(new_messages);
                true
            })
            .await?;
        let total: usize = stored.messages.iter().map(estimate_tokens).sum();
        if total <= self.budget {
            return Ok(());
        }
        let keep_from = window_start(&stored.messages, self.keep_recent);
        if keep_from == 0 {
            return Ok(());
        }
        let folded = &stored.messages[..keep_from];
        let summary = match self.summarise(stored.summary.as_deref(), folded).await {
            Ok(summary) => summary,
            Err(error) => {
                tracing::warn!(%error, session, "could not summarise older turns; keeping them verbatim");
                return Ok(());
            }
        };
        // Another writer may have changed the session while the model worked: fold the messages
        // only if they are still the oldest ones under the same summary, and keep what was added.
        let (before, folded) = (stored.summary.clone(), folded.to_vec());
        self.sessions
            .update(session, move |now| {
                let unchanged = now.summary == before && now.messages.starts_with(&folded);
                if unchanged {
                    now.summary = Some(summary);
                    now.messages.drain(..keep_from);
                }
                unchanged
            })
            .await
            .map(drop)
    }
}
