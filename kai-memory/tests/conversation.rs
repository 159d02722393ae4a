//! Conversation memory: windows within a budget, summaries of older turns, persistence per session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use futures::executor::block_on;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Role};
use kai_memory::conversation::{ConversationMemory, SessionStore, SummarizingMemory, WindowMemory, estimate_tokens};

/// A session store in a fresh directory, removed with its contents when the guard drops.
fn sessions() -> (tempfile::TempDir, SessionStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(dir.path().join("sessions.sqlite3")).unwrap();
    (dir, store)
}

#[test]
fn a_window_sends_recent_turns_within_budget_and_stores_everything() {
    let (_dir, store) = sessions();
    let memory = WindowMemory::new(store.clone(), 40);
    let model = ScriptedModel::new()
        .text("First answer, rather long to use up the budget.")
        .repeat();
    let agent = Agent::builder(model.clone()).build().unwrap();
    for i in 0..5 {
        block_on(memory.chat(&agent, "alice", &format!("Question number {i} with some words"))).unwrap();
    }
    let requests = model.requests();
    let last = requests.last().unwrap();
    let used: usize = last.messages.iter().map(estimate_tokens).sum();
    assert!(last.messages.len() < 10, "older turns dropped: {}", last.messages.len());
    assert_eq!(last.messages[0].role, Role::User, "the window starts at a user message");
    assert_eq!(
        last.messages.last().unwrap().text(),
        "Question number 4 with some words"
    );
    assert!(used <= 40 + estimate_tokens(last.messages.last().unwrap()), "{used}");
    assert_eq!(store.load("alice").unwrap().messages.len(), 10, "everything is stored");
    assert!(store.load("bob").unwrap().messages.is_empty(), "sessions are separate");

    // Persistence: a new memory over the same database continues the session.
    let reopened = WindowMemory::new(store.clone(), 1_000);
    assert_eq!(block_on(reopened.context("alice")).unwrap().len(), 10);
    assert!(store.delete("alice").unwrap());
}

#[test]
fn older_turns_are_folded_into_a_summary() {
    let (_dir, store) = sessions();
    let summariser = ScriptedModel::new().text("Alice likes tea and lives in Oslo.");
    let memory = SummarizingMemory::new(store.clone(), Arc::new(summariser.clone()), 60, 25);
    let model = ScriptedModel::new()
        .text("Noted, thank you for telling me that.")
        .repeat();
    let agent = Agent::builder(model.clone()).build().unwrap();

    block_on(memory.chat(&agent, "s1", "My name is Alice and I like tea very much.")).unwrap();
    block_on(memory.chat(&agent, "s1", "I live in Oslo, which is in Norway, as you know.")).unwrap();
    block_on(memory.chat(&agent, "s1", "What do you remember about me?")).unwrap();

    let stored = store.load("s1").unwrap();
    assert_eq!(stored.summary.as_deref(), Some("Alice likes tea and lives in Oslo."));
    assert!(stored.messages.len() < 6);
    let asked = &summariser.requests()[0];
    assert!(asked.messages[1].text().contains("User: My name is Alice"));

    let next = block_on(memory.context("s1")).unwrap();
    assert_eq!(next[0].role, Role::System);
    assert!(next[0].text().contains("Alice likes tea"));
}
