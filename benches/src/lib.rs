//! Fixtures shared by kAI's benchmarks and its instruction-count runs.

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Tool, tool_fn};

/// Arguments of the benchmark's tool.
#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct Add {
    /// First operand.
    pub a: i64,
    /// Second operand.
    pub b: i64,
}

/// The benchmark's tool: adds two integers.
pub fn adder() -> impl Tool {
    tool_fn(
        "add",
        "Adds two integers.",
        |args: Add| async move { Ok(args.a + args.b) },
    )
}

/// A scripted model that, forever, asks for one `add` call and then answers.
pub fn tool_then_answer_model() -> ScriptedModel {
    ScriptedModel::new()
        .record_requests(false)
        .tool_call("add", serde_json::json!({"a": 2, "b": 3}))
        .text("2 + 3 = 5")
        .repeat()
}

/// The agent whose runs the benchmarks time: two steps per run (one tool call, one answer).
pub fn agent() -> Agent {
    match Agent::builder(tool_then_answer_model())
        .instructions("You are a calculator. Use the add tool.")
        .tool(adder())
        .build()
    {
        Ok(agent) => agent,
        Err(error) => unreachable!("the benchmark agent is valid: {error}"),
    }
}
