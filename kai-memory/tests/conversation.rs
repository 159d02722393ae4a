//! Conversation memory: windows within a budget, summaries of older turns, persistence per session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

mod common;

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
    let (dir, store) = sessions();
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
    assert_eq!(
        block_on(store.load("alice")).unwrap().messages.len(),
        10,
        "everything is stored"
    );
    assert!(
        block_on(store.load("bob")).unwrap().messages.is_empty(),
        "sessions are separate"
    );

    // Persistence: a new memory over the database, opened again, continues the session.
    let reopened = WindowMemory::new(SessionStore::open(dir.path().join("sessions.sqlite3")).unwrap(), 1_000);
    assert_eq!(block_on(reopened.context("alice")).unwrap().len(), 10);
    assert!(block_on(store.delete("alice")).unwrap());
}

#[test]
fn a_failing_summariser_loses_no_turn_and_the_next_turn_summarises() {
    let (_dir, store) = sessions();
    let outage = kai_core::Error::Server {
        status: Some(503),
        message: "overloaded".into(),
    };
    let summariser = ScriptedModel::new().fail(outage).text("Alice likes tea.");
    let memory = SummarizingMemory::new(store.clone(), Arc::new(summariser.clone()), 60, 25);
    let agent = Agent::builder(ScriptedModel::new().text("Noted, thank you for that.").repeat())
        .build()
        .unwrap();
    let questions = [
        "My name is Alice and I like tea very much.",
        "I live in Oslo, which is in Norway, as you know.",
        "What do you remember about me?",
        "And what do I like to drink?",
    ];
    let mut failed_at = None;
    for (turn, question) in questions.iter().enumerate() {
        let asked_before = summariser.requests().len();
        // The turn succeeds, with its answer, even when summarising fails.
        let output = block_on(memory.chat(&agent, "s1", question)).unwrap();
        assert_eq!(output.messages.last().unwrap().text(), "Noted, thank you for that.");
        let stored = block_on(store.load("s1")).unwrap();
        if summariser.requests().len() > asked_before && failed_at.is_none() {
            failed_at = Some(turn);
            // Summarising failed: the turn is stored verbatim and nothing was folded.
            assert_eq!(stored.summary, None);
            assert_eq!(stored.messages.len(), 2 * (turn + 1));
            assert_eq!(stored.messages[2 * turn].text(), *question);
        }
    }
    assert!(
        failed_at.is_some_and(|turn| turn < questions.len() - 1),
        "{failed_at:?}"
    );
    let stored = block_on(store.load("s1")).unwrap();
    assert_eq!(stored.summary.as_deref(), Some("Alice likes tea."));
    assert_eq!(stored.messages.last().unwrap().text(), "Noted, thank you for that.");
    assert_eq!(summariser.remaining(), 0, "the summary was retried once");
}

#[test]
fn concurrent_writers_to_one_session_lose_nothing() {
    let (dir, _store) = sessions();
    let path = dir.path().join("sessions.sqlite3");
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            // Separate connections, as separate processes would have.
            let memory = WindowMemory::new(SessionStore::open(&path).unwrap(), 1_000);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let message = kai_core::Message::user(format!("{who}{i}"));
                    block_on(memory.record("shared", std::slice::from_ref(&message))).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let stored = block_on(SessionStore::open(&path).unwrap().load("shared")).unwrap();
    assert_eq!(stored.messages.len(), 100);
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

    let stored = block_on(store.load("s1")).unwrap();
    assert_eq!(stored.summary.as_deref(), Some("Alice likes tea and lives in Oslo."));
    assert!(stored.messages.len() < 6);
    let asked = &summariser.requests()[0];
    assert!(asked.messages[1].text().contains("User: My name is Alice"));

    let next = block_on(memory.context("s1")).unwrap();
    assert_eq!(next[0].role, Role::System);
    assert!(next[0].text().contains("Alice likes tea"));
}

/// Each turn is a committed, fsynced SQLite write: it runs on the store's thread, so a one-thread
/// executor awaiting it keeps running its other tasks meanwhile.
#[test]
fn recording_a_turn_does_not_block_the_executor_awaiting_it() {
    let (_dir, store) = sessions();
    let memory = WindowMemory::new(store.clone(), 1_000);
    let turn: Vec<kai_core::Message> = (0..200)
        .map(|i| kai_core::Message::user(format!("message {i} of a long turn")))
        .collect();
    assert!(
        common::leaves_the_executor_free(async { memory.record("alice", &turn).await.unwrap() }),
        "the write ran on the awaiting thread"
    );
    assert_eq!(block_on(store.load("alice")).unwrap().messages.len(), 200);
}

/// A session that goes on and on keeps only its latest turns within the retention, whole turns, and
/// the window still sees the latest ones.
#[test]
fn a_window_keeps_a_bounded_history() {
    let (_dir, store) = sessions();
    let memory = WindowMemory::new(store.clone(), 40).with_retention(120);
    let model = ScriptedModel::new().text("An answer of a few words.").repeat();
    let agent = Agent::builder(model).build().unwrap();
    for i in 0..30 {
        block_on(memory.chat(&agent, "long", &format!("Question number {i}"))).unwrap();
    }
    let stored = block_on(store.load("long")).unwrap().messages;
    let kept: usize = stored.iter().map(estimate_tokens).sum();
    assert!(kept <= 120, "{kept} tokens kept");
    assert!(stored.len() >= 4, "{} messages kept", stored.len());
    assert_eq!(stored[0].role, Role::User, "whole turns are kept");
    assert_eq!(stored.last().unwrap().text(), "An answer of a few words.");
    let context = block_on(memory.context("long")).unwrap();
    assert_eq!(context.last(), stored.last());
    // `usize::MAX` keeps everything.
    let everything = WindowMemory::new(store.clone(), 40).with_retention(usize::MAX);
    let agent = Agent::builder(ScriptedModel::new().text("ok").repeat())
        .build()
        .unwrap();
    for i in 0..10 {
        block_on(everything.chat(&agent, "all", &format!("q{i}"))).unwrap();
    }
    assert_eq!(block_on(store.load("all")).unwrap().messages.len(), 20);
}
