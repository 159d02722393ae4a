use futures::StreamExt as _;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, AgentEvent, ChatDelta, StopReason, ToolContext, ToolProgress, tool_fn};
use serde_json::json;

use crate::support::{adder, shout, usage};

/// A compact name for each event, to compare sequences.
fn label(event: &AgentEvent) -> String {
    match event {
        AgentEvent::TextDelta { text } => format!("text:{text}"),
        AgentEvent::ToolCallStarted { call } => format!("start:{}", call.name),
        AgentEvent::ToolCallFinished { result } => format!("end:{}:{}", result.name, result.content),
        AgentEvent::StepFinished { step, usage } => format!("step:{step}:{}", usage.total_tokens()),
        AgentEvent::Finished { output } => format!("final:{}", output.answer),
        AgentEvent::ToolProgress { call_id, progress } => {
            format!(
                "progress:{call_id}:{}:{}",
                progress.progress,
                progress.message.as_deref().unwrap_or("")
            )
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn events_arrive_in_order() {
    let model = ScriptedModel::new()
        .stream(vec![
            ChatDelta::text("Let me "),
            ChatDelta::text("add."),
            ChatDelta::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "add".into(),
            },
            ChatDelta::ToolCallArguments {
                index: 0,
                fragment: "{\"a\": 2,".into(),
            },
            ChatDelta::ToolCallArguments {
                index: 0,
                fragment: " \"b\": 2}".into(),
            },
            ChatDelta::Usage(usage(7, 3)),
            ChatDelta::Finish {
                stop_reason: StopReason::ToolCalls,
                provider_reason: None,
            },
        ])
        .stream(vec![ChatDelta::text("It is "), ChatDelta::text("4.")])
        .usage(usage(12, 2));
    let agent = Agent::builder(model)
        .tool(adder())
        .max_parallel_tools(1)
        .build()
        .unwrap();

    let events: Vec<_> = agent.stream("2+2?").map(|e| e.unwrap()).collect().await;
    let labels: Vec<_> = events.iter().map(label).collect();
    assert_eq!(
        labels,
        [
            "text:Let me ",
            "text:add.",
            "start:add",
            "end:add:4",
            "step:1:10",
            "text:It is ",
            "text:4.",
            "step:2:14",
            "final:It is 4.",
        ]
    );
    let AgentEvent::Finished { output } = events.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(output.usage, usage(19, 5));
    assert_eq!(output.messages[1].text(), "Let me add.");
}

#[tokio::test]
async fn failed_calls_show_up_as_finished_events_with_errors() {
    let model = ScriptedModel::new()
        .tool_calls([
            ("add", json!({"a": 1, "b": 1})),
            ("nope", json!({})),
            ("shout", json!({"word": 3})),
        ])
        .text("done");
    let agent = Agent::builder(model)
        .tool(adder())
        .tool(shout())
        .max_parallel_tools(1)
        .build()
        .unwrap();
    let events: Vec<_> = agent.stream("go").map(|e| e.unwrap()).collect().await;
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolCallFinished { result } => Some((result.name.as_str(), result.is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(finished, [("add", false), ("nope", true), ("shout", true)]);
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolCallStarted { call } => Some(call.name.as_str()),
            _ => None,
        })
        .collect();
    // Neither the unknown tool nor the call whose arguments fail the tool's schema started: arguments
    // are checked against the schema before a tool runs.
    assert_eq!(started, ["add"]);
}

#[tokio::test]
async fn a_model_that_cannot_stream_is_replayed_as_deltas() {
    let model = ScriptedModel::new().text("whole answer");
    let agent = Agent::builder(model).build().unwrap();
    let labels: Vec<_> = agent.stream("hi").map(|e| label(&e.unwrap())).collect().await;
    // The scripted model estimates usage at four bytes a token: "hi" is 1, "whole answer" is 3.
    assert_eq!(labels, ["text:whole answer", "step:1:4", "final:whole answer"]);
}

#[tokio::test]
async fn the_stream_ends_with_the_error() {
    let model = ScriptedModel::new().fail(kai_core::Error::Timeout);
    let agent = Agent::builder(model).build().unwrap();
    let items: Vec<_> = agent.stream("hi").collect().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap_err().error, kai_core::Error::Timeout);
}

#[test]
fn events_serialize_for_other_languages() {
    let event = AgentEvent::StepFinished {
        step: 2,
        usage: usage(1, 2),
    };
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["type"], "step_finished");
    assert_eq!(serde_json::from_value::<AgentEvent>(json).unwrap(), event);
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Nothing {}

/// What a tool reports with `report_progress` comes out of a streamed run between its call's start and
/// end; a run that is not streamed has no one listening, and the tool can tell.
#[tokio::test]
async fn a_tools_progress_is_streamed_between_its_start_and_end() {
    let counter = tool_fn(
        "count",
        "Counts to two.",
        |_: Nothing, context: ToolContext| async move {
            let heard = context.progress_is_heard();
            for step in [1.0, 2.0] {
                context.report_progress(
                    ToolProgress::new(step)
                        .with_total(2.0)
                        .with_message(format!("step {step}")),
                );
            }
            Ok(heard)
        },
    );
    let model = ScriptedModel::new()
        .tool_call("count", json!({}))
        .text("counted")
        .repeat();
    let agent = Agent::builder(model).tool(counter).build().unwrap();
    let events: Vec<_> = agent.stream("Count.").map(|e| e.unwrap()).collect().await;
    let labels: Vec<_> = events
        .iter()
        .map(label)
        .filter(|label| !label.starts_with("step"))
        .collect();
    assert_eq!(
        labels,
        [
            "start:count",
            "progress:call_1_0:1:step 1",
            "progress:call_1_0:2:step 2",
            "end:count:true",
            "text:counted",
            "final:counted"
        ]
    );
    let output = agent.run("Count.").await.unwrap();
    let results: Vec<_> = output
        .messages
        .iter()
        .flat_map(|message| message.tool_results())
        .collect();
    assert_eq!(results[0].content, "false", "no one listens outside a stream");
}

/// A tool that keeps its context and reports after it returned: nothing comes after its result, and the
/// stream still ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_after_a_call_ended_goes_nowhere() {
    let (kept, mut receive_kept) = tokio::sync::mpsc::unbounded_channel::<ToolContext>();
    let leaky = tool_fn(
        "leaky",
        "Keeps its context.",
        move |_: Nothing, context: ToolContext| {
            let kept = kept.clone();
            async move {
                context.report_progress(ToolProgress::new(1.0));
                let _ = kept.send(context);
                Ok("returned")
            }
        },
    );
    let model = ScriptedModel::new().tool_call("leaky", json!({})).text("done");
    let agent = Agent::builder(model).tool(leaky).build().unwrap();
    let mut stream = agent.stream("Go.");
    let mut labels = Vec::new();
    let kept_context = tokio::spawn(async move {
        let context = receive_kept.recv().await.unwrap();
        for step in 2..100 {
            context.report_progress(ToolProgress::new(f64::from(step)));
            tokio::task::yield_now().await;
        }
        context
    });
    while let Some(event) = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ended")
    {
        labels.push(label(&event.unwrap()));
    }
    let _context = kept_context.await.unwrap();
    let end = labels.iter().position(|label| label == "end:leaky:returned").unwrap();
    assert_eq!(labels[..2], ["start:leaky", "progress:call_1_0:1:"]);
    assert!(
        !labels[end..].iter().any(|label| label.starts_with("progress")),
        "{labels:?}"
    );
    assert_eq!(labels.last().unwrap(), "final:done");
}
