//! A hundred agent runs at once on a multi-threaded tokio runtime: agents are moved into spawned
//! tasks, and their runs and event streams move between threads. Each run's agent has a scripted
//! model of its own: one script shared by runs at once would hand each run whichever answer comes
//! next, not the one its conversation needs.
//!
//! `cargo run -p kai-examples --example many_runs`

use futures::StreamExt as _;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, AgentEvent, tool_fn};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Square {
    /// The number to square.
    n: i64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut tools = kai_core::ToolSet::new();
    tools.add(tool_fn("square", "Squares a number.", |args: Square| async move {
        Ok(args.n * args.n)
    }))?;

    let mut tasks = Vec::new();
    for i in 0..100 {
        let model = ScriptedModel::new()
            .record_requests(false)
            .tool_call("square", serde_json::json!({"n": 12}))
            .text("144");
        let agent = Agent::builder(model).tools(&tools).build()?;
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                agent.run("What is 12 squared?").await.map(|output| output.answer)
            } else {
                // The stream owns what it needs: it is held inside the spawned task across awaits.
                let mut events = agent.stream("What is 12 squared?");
                let mut answer = String::new();
                while let Some(event) = events.next().await {
                    if let AgentEvent::Finished { output } = event? {
                        answer = output.answer;
                    }
                }
                Ok(answer)
            }
        }));
    }
    let mut answered = 0;
    for task in tasks {
        if task.await?? == "144" {
            answered += 1;
        }
    }
    println!("{answered} of 100 runs answered 144");
    if answered != 100 {
        return Err("some runs answered wrongly".into());
    }
    Ok(())
}
