//! Conversation memory per session: a token-budgeted window, or a running summary of older turns.
//!
//! Sessions persist in SQLite (`sessions.sqlite3`, fully synchronous commits), one row per message, so a
//! turn appends its messages and a window reads only the latest ones, however long the session. Use a
//! memory around any agent with [`ConversationMemory::chat`]: it loads the session's context, runs the
//! agent, and records the new messages.

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
        let mut db = Connection::open(path).map_err(sql)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, summary TEXT, messages TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS messages (
                 session TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 tokens INTEGER NOT NULL,
                 starts_turn INTEGER NOT NULL,
                 message TEXT NOT NULL,
                 PRIMARY KEY (session, seq)
             );",
        )
        .map_err(sql)?;
        migrate_message_lists(&mut db)?;
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
            .run(move |_| work(&mut db.lock().unwrap_or_else(PoisonError::into_inner)))
            .await
    }

    /// The session's stored state (empty for a new session).
    pub async fn load(&self, id: &str) -> Result<Session, Error> {
        let id = id.to_owned();
        // One snapshot: the summary and the messages it leaves out must agree.
        self.with_db(move |db| {
            let snapshot = db.transaction().map_err(sql)?;
            read_session(&snapshot, &id)
        })
        .await
    }

    /// Replaces the session's stored state.
    pub async fn save(&self, id: &str, session: &Session) -> Result<(), Error> {
        let (id, session) = (id.to_owned(), session.clone());
        self.with_db(move |db| {
            let transaction = db
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql)?;
            let before = read_session(&transaction, &id)?;
            write_session(&transaction, &id, &before, &session)?;
            transaction.commit().map_err(sql)
        })
        .await
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
            let before = read_session(&transaction, &id)?;
            let mut session = before.clone();
            if change(&mut session) {
                write_session(&transaction, &id, &before, &session)?;
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
            let transaction = db.transaction().map_err(sql)?;
            let sessions = transaction
                .execute("DELETE FROM sessions WHERE id = ?1", params![id])
                .map_err(sql)?;
            let messages = transaction
                .execute("DELETE FROM messages WHERE session = ?1", params![id])
                .map_err(sql)?;
            transaction.commit().map_err(sql)?;
            Ok(sessions + messages > 0)
        })
        .await
    }

    /// Appends `messages` to the session, without reading what it holds.
    pub async fn append(&self, id: &str, messages: &[Message]) -> Result<(), Error> {
        let (id, messages) = (id.to_owned(), messages.to_vec());
        self.with_db(move |db| {
            let transaction = db
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql)?;
            append_rows(&transaction, &id, &messages)?;
            transaction.commit().map_err(sql)
        })
        .await
    }

    /// The session's latest messages within `budget` tokens, starting at a user's message (so a tool
    /// call is never separated from its results); reads only those.
    pub async fn recent(&self, id: &str, budget: usize) -> Result<Vec<Message>, Error> {
        let id = id.to_owned();
        self.with_db(move |db| read_window(db, &id, budget)).await
    }

    /// Drops the session's oldest turns until the rest fit `keep` tokens; returns how many messages
    /// went.
    pub async fn prune(&self, id: &str, keep: usize) -> Result<usize, Error> {
        let id = id.to_owned();
        self.with_db(move |db| {
            let transaction = db
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql)?;
            let pruned = prune(&transaction, &id, keep)?;
            transaction.commit().map_err(sql)?;
            Ok(pruned)
        })
        .await
    }
}

/// Moves the message lists that earlier releases kept in one JSON text per session into rows. A list
/// that does not parse stays where it is (that session's loads report it), so one damaged session does
/// not keep the others from opening.
fn migrate_message_lists(db: &mut Connection) -> Result<(), Error> {
    let transaction = db
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    let lists: Vec<(String, String)> = {
        let mut statement = transaction
            .prepare("SELECT id, messages FROM sessions WHERE messages != '[]'")
            .map_err(sql)?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    for (id, list) in lists {
        let Ok(messages) = serde_json::from_str::<Vec<Message>>(&list) else {
            tracing::warn!(session = %id, "a session's stored messages do not parse; left as they are");
            continue;
        };
        append_rows(&transaction, &id, &messages)?;
        transaction
            .execute("UPDATE sessions SET messages = '[]' WHERE id = ?1", params![id])
            .map_err(sql)?;
    }
    transaction.commit().map_err(sql)
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
    let (summary, unmigrated) = row.unwrap_or((None, "[]".to_owned()));
    if unmigrated != "[]" {
        return Err(Error::Corrupt {
            what: format!("session {id:?} holds messages that do not parse"),
        });
    }
    let mut statement = db
        .prepare_cached("SELECT message FROM messages WHERE session = ?1 ORDER BY seq")
        .map_err(sql)?;
    let texts = statement
        .query_map(params![id], |r| r.get::<_, String>(0))
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let messages = texts
        .iter()
        .map(|text| parse_message(id, text))
        .collect::<Result<_, _>>()?;
    Ok(Session { summary, messages })
}

fn parse_message(id: &str, text: &str) -> Result<Message, Error> {
    serde_json::from_str(text).map_err(|_| Error::Corrupt {
        what: format!("session {id:?} holds a message that does not parse"),
    })
}

/// Whether a turn may start at `message`: a user's message that is not a tool's result, so a window
/// never separates a tool call from its results.
fn starts_turn(message: &Message) -> bool {
    message.role == Role::User && !message.tool_results().any(|_| true)
}

/// Appends `messages` to the session's rows.
fn append_rows(db: &Connection, id: &str, messages: &[Message]) -> Result<(), Error> {
    insert_rows(db, id, next_seq(db, id)?, messages)
}

/// The sequence number after the session's last row.
fn next_seq(db: &Connection, id: &str) -> Result<i64, Error> {
    db.query_row(
        "SELECT COALESCE(MAX(seq) + 1, 0) FROM messages WHERE session = ?1",
        params![id],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// Writes `messages` as the session's rows numbered from `next`.
fn insert_rows(db: &Connection, id: &str, next: i64, messages: &[Message]) -> Result<(), Error> {
    let mut statement = db
        .prepare_cached("INSERT INTO messages (session, seq, tokens, starts_turn, message) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(sql)?;
    for (offset, message) in messages.iter().enumerate() {
        let text = serde_json::to_string(message).map_err(|e| Error::Record {
            name: id.to_owned(),
            message: e.to_string(),
        })?;
        let tokens = i64::try_from(estimate_tokens(message)).unwrap_or(i64::MAX);
        statement
            .execute(params![id, next + offset as i64, tokens, starts_turn(message), text])
            .map_err(sql)?;
    }
    Ok(())
}

/// Stores `session` as `id`'s state, writing only what changed from `before`: messages appended, or the
/// oldest ones dropped (a summary folding them), or else every row.
fn write_session(db: &Connection, id: &str, before: &Session, session: &Session) -> Result<(), Error> {
    db.execute(
        "INSERT INTO sessions (id, summary, messages) VALUES (?1, ?2, '[]')
         ON CONFLICT(id) DO UPDATE SET summary = excluded.summary",
        params![id, session.summary],
    )
    .map_err(sql)?;
    let (old, new) = (&before.messages, &session.messages);
    if new.starts_with(old) {
        return append_rows(db, id, &new[old.len()..]);
    }
    if old.ends_with(new) {
        let dropped = i64::try_from(old.len() - new.len()).unwrap_or(i64::MAX);
        db.execute(
            "DELETE FROM messages WHERE session = ?1 AND seq IN
             (SELECT seq FROM messages WHERE session = ?1 ORDER BY seq LIMIT ?2)",
            params![id, dropped],
        )
        .map_err(sql)?;
        return Ok(());
    }
    // Numbered on from the old rows, never reusing a number a reader may still hold.
    let next = next_seq(db, id)?;
    db.execute("DELETE FROM messages WHERE session = ?1", params![id])
        .map_err(sql)?;
    insert_rows(db, id, next, new)
}

/// The window rule. From a session's messages, newest first (each as its tokens, whether it starts a
/// turn, and what the caller wants of it), the longest run within `budget` tokens that starts at a
/// turn, so that a tool call is never separated from its results: what the caller wanted of those
/// messages, newest first, and whether older messages were left out. Reads no further than the first
/// message that does not fit.
fn window<T, E>(
    newest_first: impl Iterator<Item = Result<(usize, bool, T), E>>,
    budget: usize,
) -> Result<(Vec<T>, bool), E> {
    let (mut used, mut kept, mut turn_start) = (0usize, Vec::new(), 0usize);
    let mut left_out = false;
    for message in newest_first {
        let (tokens, starts_turn, item) = message?;
        used = used.saturating_add(tokens);
        if used > budget {
            left_out = true;
            break;
        }
        kept.push(item);
        if starts_turn {
            turn_start = kept.len();
        }
    }
    kept.truncate(turn_start);
    Ok((kept, left_out))
}

/// The window rule over `id`'s stored messages, read newest first and no further than it needs:
/// the `column` (`message` or `seq`) of those in the window, and whether older ones were left out.
fn stored_window<T: rusqlite::types::FromSql>(
    db: &Connection,
    id: &str,
    column: &'static str,
    budget: usize,
) -> Result<(Vec<T>, bool), Error> {
    let mut statement = db
        .prepare_cached(&format!(
            "SELECT tokens, starts_turn, {column} FROM messages WHERE session = ?1 ORDER BY seq DESC"
        ))
        .map_err(sql)?;
    let mut rows = statement.query(params![id]).map_err(sql)?;
    let read = |row: &rusqlite::Row<'_>| -> Result<(usize, bool, T), Error> {
        let tokens = usize::try_from(row.get::<_, i64>(0).map_err(sql)?).unwrap_or(usize::MAX);
        Ok((tokens, row.get(1).map_err(sql)?, row.get(2).map_err(sql)?))
    };
    let newest_first = std::iter::from_fn(|| match rows.next() {
        Ok(Some(row)) => Some(read(row)),
        Ok(None) => None,
        Err(error) => Some(Err(sql(error))),
    });
    window(newest_first, budget)
}

/// The latest messages of `id` that fit `budget` tokens, starting at a turn: read from the end, so the
/// cost is the window's, not the session's.
fn read_window(db: &Connection, id: &str, budget: usize) -> Result<Vec<Message>, Error> {
    let (texts, _) = stored_window::<String>(db, id, "message", budget)?;
    texts.iter().rev().map(|text| parse_message(id, text)).collect()
}

/// Drops `id`'s oldest turns until the rest fit `keep` tokens (whole turns only); how many messages
/// went.
fn prune(db: &Connection, id: &str, keep: usize) -> Result<usize, Error> {
    let (kept, left_out) = stored_window::<i64>(db, id, "seq", keep)?;
    if !left_out {
        return Ok(0);
    }
    let oldest_kept = kept.last().copied();
    // Nothing fits as a whole turn: keep the latest turn rather than nothing.
    let from = match oldest_kept {
        Some(seq) => seq,
        None => db
            .query_row(
                "SELECT MAX(seq) FROM messages WHERE session = ?1 AND starts_turn",
                params![id],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(sql)?
            .unwrap_or(0),
    };
    db.execute(
        "DELETE FROM messages WHERE session = ?1 AND seq < ?2",
        params![id, from],
    )
    .map_err(sql)
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

/// The most recent messages that fit a token budget. The window always starts at a user message, so a
/// tool call is never separated from its results. A session keeps its latest turns within the retention
/// (by default [`RETENTION_WINDOWS`] windows' worth of tokens; [`with_retention`](Self::with_retention)
/// sets another, `usize::MAX` keeps everything), so a session that goes on for ever does not grow for
/// ever.
#[derive(Debug, Clone)]
pub struct WindowMemory {
    sessions: SessionStore,
    budget: usize,
    retention: usize,
}

/// How many windows' worth of tokens a [`WindowMemory`] keeps by default.
pub const RETENTION_WINDOWS: usize = 32;

impl WindowMemory {
    /// A window of about `budget` tokens, keeping [`RETENTION_WINDOWS`] times that.
    pub fn new(sessions: SessionStore, budget: usize) -> Self {
        Self {
            sessions,
            budget,
            retention: budget.saturating_mul(RETENTION_WINDOWS),
        }
    }

    /// Keeps the latest turns within `tokens` (at least the window); older turns are deleted.
    #[must_use]
    pub fn with_retention(mut self, tokens: usize) -> Self {
        self.retention = tokens.max(self.budget);
        self
    }
}

/// The start of the longest suffix of `messages` within `budget` that begins at a turn.
fn window_start(messages: &[Message], budget: usize) -> usize {
    let newest_first = messages.iter().enumerate().rev().map(|(index, message)| {
        Ok::<_, std::convert::Infallible>((estimate_tokens(message), starts_turn(message), index))
    });
    match window(newest_first, budget) {
        Ok((kept, _)) => kept.last().copied().unwrap_or(messages.len()),
        Err(never) => match never {},
    }
}

#[kai_core::async_trait]
impl ConversationMemory for WindowMemory {
    async fn context(&self, session: &str) -> Result<Vec<Message>, Error> {
        self.sessions.recent(session, self.budget).await
    }

    async fn record(&self, session: &str, new_messages: &[Message]) -> Result<(), Error> {
        self.sessions.append(session, new_messages).await?;
        if self.retention < usize::MAX {
            self.sessions.prune(session, self.retention).await?;
        }
        Ok(())
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
                // The error may quote the model's answer or the provider's body: only its kind at WARN.
                tracing::warn!(
                    kind = error.kind(),
                    session,
                    "could not summarise older turns; keeping them verbatim"
                );
                tracing::debug!(%error, session, "could not summarise older turns");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written before sessions were kept as rows (one JSON list per session) opens with its
    /// messages, which move into rows.
    #[test]
    fn message_lists_of_earlier_releases_move_into_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.sqlite3");
        let old = Connection::open(&path).unwrap();
        let messages = vec![Message::user("hello"), Message::assistant("hi there")];
        old.execute_batch("CREATE TABLE sessions (id TEXT PRIMARY KEY, summary TEXT, messages TEXT NOT NULL);")
            .unwrap();
        old.execute(
            "INSERT INTO sessions (id, summary, messages) VALUES ('a', 'met before', ?1)",
            params![serde_json::to_string(&messages).unwrap()],
        )
        .unwrap();
        drop(old);
        let store = SessionStore::open(&path).unwrap();
        let session = futures::executor::block_on(store.load("a")).unwrap();
        assert_eq!(session.messages, messages);
        assert_eq!(session.summary.as_deref(), Some("met before"));
        futures::executor::block_on(store.append("a", &[Message::user("again")])).unwrap();
        drop(store);
        let reopened = SessionStore::open(&path).unwrap();
        assert_eq!(
            futures::executor::block_on(reopened.load("a")).unwrap().messages.len(),
            3
        );
    }

    /// One session whose stored list does not parse keeps neither the store nor the other sessions
    /// from opening; its own loads say what is wrong.
    #[test]
    fn a_damaged_list_fails_only_its_own_session() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.sqlite3");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, summary TEXT, messages TEXT NOT NULL);
             INSERT INTO sessions VALUES ('bad', NULL, '[{not json');",
        )
        .unwrap();
        old.execute(
            "INSERT INTO sessions VALUES ('good', NULL, ?1)",
            params![serde_json::to_string(&[Message::user("fine")]).unwrap()],
        )
        .unwrap();
        drop(old);
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(
            futures::executor::block_on(store.load("good")).unwrap().messages.len(),
            1
        );
        assert!(matches!(
            futures::executor::block_on(store.load("bad")),
            Err(Error::Corrupt { .. })
        ));
    }
}
