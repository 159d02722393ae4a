//! Framework overhead per agent step, with a scripted model and an in-process tool.
//!
//! Each run is two steps: the model asks for one tool call, the tool runs, the model answers.
//! `by_hand` does the same model calls and tool call directly, without the agent, as the baseline;
//! the difference is what the agent loop costs.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt as _;
use futures::executor::block_on;
use kai_core::{ChatModel, ChatRequest, Message, Tool, ToolContext};

fn agent_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("agent_step");

    let agent = kai_benches::agent();
    group.bench_function("run_2_steps", |b| {
        b.iter(|| block_on(agent.run("What is 2 + 3?")).map(|output| output.steps))
    });

    group.bench_function("stream_2_steps", |b| {
        b.iter(|| block_on(agent.stream("What is 2 + 3?").count()))
    });

    let model = kai_benches::tool_then_answer_model();
    let tool = kai_benches::adder();
    let definition = tool.definition();
    group.bench_function("by_hand_2_steps", |b| {
        b.iter(|| {
            block_on(async {
                let request =
                    ChatRequest::new(vec![Message::user("What is 2 + 3?")]).with_tools(vec![definition.clone()]);
                let first = model.complete(request.clone()).await?;
                let call = first.tool_calls().next().cloned();
                if let Some(call) = call {
                    let arguments: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_default();
                    let _ = tool.call(arguments, ToolContext::default()).await;
                }
                model.complete(request).await
            })
        })
    });
    group.finish();
}

criterion_group!(benches, agent_step);
criterion_main!(benches);
