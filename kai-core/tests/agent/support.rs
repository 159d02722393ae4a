//! Tools and helpers shared by the agent tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kai_core::{Message, Role, ToolResult, tool_fn};
use kai_core::{Tool, Usage};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
pub struct Add {
    pub a: i64,
    pub b: i64,
}

pub fn adder() -> impl Tool {
    tool_fn(
        "add",
        "Adds two integers.",
        |args: Add| async move { Ok(args.a + args.b) },
    )
}

#[derive(Deserialize, JsonSchema)]
pub struct Word {
    pub word: String,
}

pub fn shout() -> impl Tool {
    tool_fn("shout", "Upper-cases a word.", |args: Word| async move {
        Ok(args.word.to_uppercase())
    })
}

#[derive(Deserialize, JsonSchema)]
pub struct Nap {
    pub millis: u64,
}

/// A tool that sleeps and records how many of its calls ran at the same time.
pub struct Sleeper {
    pub running: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
}

impl Sleeper {
    pub fn new() -> Self {
        Self {
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    pub fn tool(&self) -> impl Tool + use<> {
        let running = Arc::clone(&self.running);
        let peak = Arc::clone(&self.peak);
        tool_fn("nap", "Sleeps.", move |args: Nap| {
            let running = Arc::clone(&running);
            let peak = Arc::clone(&peak);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(args.millis)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(format!("slept {} ms", args.millis))
            }
        })
    }
}

pub fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: 0,
    }
}

/// The tool results in a transcript, in order.
pub fn tool_results(messages: &[Message]) -> Vec<ToolResult> {
    messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .flat_map(|m| m.tool_results().cloned())
        .collect()
}

/// Stores every checkpoint as JSON, as a database would.
#[derive(Default, Clone)]
pub struct Store(pub std::sync::Arc<std::sync::Mutex<Vec<String>>>);

#[kai_core::async_trait]
impl kai_core::AgentHook for Store {
    async fn checkpoint(&self, state: &kai_core::RunState) -> Result<(), kai_core::Error> {
        self.0.lock().unwrap().push(serde_json::to_string(state).unwrap());
        Ok(())
    }
}

/// A token that is cancelled `after` from now.
pub fn cancel_after(after: Duration) -> kai_core::CancellationToken {
    let cancel = kai_core::CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        canceller.cancel();
    });
    cancel
}
