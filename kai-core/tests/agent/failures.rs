//! Every failure path: tool failures go back to the model; run failures are typed and keep the transcript.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kai_core::testing::ScriptedModel;
use kai_core::{
    Agent, AgentEvent, CancellationToken, ChatDelta, Error, Role, RunOptions, RunState, ToolError, tool_fn,
};
use serde_json::json;

use crate::support::{Nap, adder, tool_results};

/// Runs a one-tool-call script and returns the single tool result the model got back.
async fn result_for(agent_tools: kai_core::AgentBuilder, model: ScriptedModel) -> kai_core::ToolResult {
    let agent = agent_tools.build().unwrap();
    let output = agent.run("go").await.unwrap();
    assert_eq!(output.answer, "recovered");
    // The model saw the error and could answer.
    assert_eq!(model.requests().len(), 2);
    let results = tool_results(&output.messages);
    assert_eq!(results.len(), 1);
    results[0].clone()
}

#[tokio::test]
async fn unknown_tool_goes_back_to_the_model() {
    let model = ScriptedModel::new()
        .tool_call("subtract", json!({"a": 1}))
        .text("recovered");
    let result = result_for(Agent::builder(model.clone()).tool(adder()), model).await;
    assert!(result.is_error);
    assert!(
        result.content.contains("unknown tool \"subtract\""),
        "{}",
        result.content
    );
    assert!(
        result.content.contains("add"),
        "lists the available tools: {}",
        result.content
    );
}

#[tokio::test]
async fn arguments_that_are_not_json_go_back_to_the_model() {
    let model = ScriptedModel::new()
        .raw_tool_call("add", "{\"a\": 1, \"b\":")
        .text("recovered");
    let result = result_for(Agent::builder(model.clone()).tool(adder()), model).await;
    assert!(result.is_error);
    assert!(result.content.contains("not valid JSON"), "{}", result.content);
}

#[tokio::test]
async fn arguments_that_fail_the_schema_go_back_to_the_model() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": "one", "b": 2}))
        .text("recovered");
    let result = result_for(Agent::builder(model.clone()).tool(adder()), model).await;
    assert!(result.is_error);
    assert!(result.content.starts_with("invalid arguments"), "{}", result.content);
}

#[tokio::test]
async fn empty_arguments_mean_no_arguments() {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct NoArgs {}
    let now = tool_fn("now", "The time.", |_: NoArgs| async { Ok("noon") });
    let model = ScriptedModel::new().raw_tool_call("now", "").text("recovered");
    let result = result_for(Agent::builder(model.clone()).tool(now), model).await;
    assert!(!result.is_error);
    assert_eq!(result.content, "noon");
}

#[tokio::test]
async fn a_tool_error_goes_back_to_the_model() {
    let failing = tool_fn("add", "Fails.", |_: crate::support::Add| async {
        Err::<i64, _>(ToolError::failed("disk full"))
    });
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 2}))
        .text("recovered");
    let result = result_for(Agent::builder(model.clone()).tool(failing), model).await;
    assert!(result.is_error);
    assert_eq!(result.content, "disk full");
}

#[tokio::test]
async fn a_panicking_tool_becomes_an_error_result() {
    let panicking = tool_fn("add", "Panics.", |args: crate::support::Add| async move {
        if args.a == 1 {
            panic!("could not connect with password hunter2");
        }
        Ok(0)
    });
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 2}))
        .text("recovered");
    let result = result_for(Agent::builder(model.clone()).tool(panicking), model).await;
    assert!(result.is_error);
    // The panic message (here holding a password) never reaches the model.
    assert_eq!(result.content, "the tool failed unexpectedly");
}

#[tokio::test]
async fn a_slow_tool_times_out_and_is_dropped() {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let slow = tool_fn("nap", "Sleeps.", move |args: Nap| {
        let flag = Arc::clone(&flag);
        async move {
            tokio::time::sleep(Duration::from_millis(args.millis)).await;
            flag.store(true, Ordering::SeqCst);
            Ok("done")
        }
    });
    let model = ScriptedModel::new()
        .tool_call("nap", json!({"millis": 5_000}))
        .text("recovered");
    let started = Instant::now();
    let result = result_for(
        Agent::builder(model.clone())
            .tool(slow)
            .tool_timeout(Duration::from_millis(50)),
        model,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(result.is_error);
    assert!(result.content.contains("did not finish"), "{}", result.content);
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test]
async fn running_out_of_steps_is_a_typed_error_with_the_transcript() {
    let model = ScriptedModel::new().tool_call("add", json!({"a": 1, "b": 1})).repeat();
    let agent = Agent::builder(model).tool(adder()).max_steps(3).build().unwrap();
    let error = agent.run("loop forever").await.unwrap_err();
    assert_eq!(error.error, Error::MaxStepsExceeded { max_steps: 3 });
    assert_eq!(error.state.steps, 3);
    // user + 3 × (assistant call + tool result): the last calls were answered before stopping.
    assert_eq!(error.messages().len(), 7);
    assert!(error.state.pending_tool_calls.is_empty());
}

#[tokio::test]
async fn the_deadline_stops_a_run() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 1}))
        .text("too late")
        .delayed(Duration::from_secs(10));
    let agent = Agent::builder(model)
        .tool(adder())
        .deadline(Duration::from_millis(100))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = agent.run("hurry").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(error.error, Error::DeadlineExceeded);
    assert_eq!(error.state.steps, 1);
    assert_eq!(error.messages().len(), 3, "the first step is kept");
}

#[tokio::test]
async fn a_slow_step_times_out() {
    let model = ScriptedModel::new().text("slow").delayed(Duration::from_secs(10));
    let agent = Agent::builder(model)
        .step_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let error = agent.run("hurry").await.unwrap_err();
    assert_eq!(error.error, Error::StepTimeout { step: 1 });
    assert_eq!(error.messages().len(), 1);
}

#[tokio::test]
async fn model_errors_are_typed_and_keep_the_transcript() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 1}))
        .fail(Error::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(7)),
        });
    let agent = Agent::builder(model).tool(adder()).build().unwrap();
    let error = agent.run("go").await.unwrap_err();
    assert_eq!(error.error.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(error.messages().len(), 3);

    // The state is complete enough to retry: resuming with a working model finishes the run.
    let agent = Agent::builder(ScriptedModel::new().text("2"))
        .tool(adder())
        .build()
        .unwrap();
    let output = agent.resume(*error.state).await.unwrap();
    assert_eq!(output.answer, "2");
    assert_eq!(output.steps, 2);
}

#[tokio::test]
async fn cancelling_mid_stream_stops_promptly_and_keeps_the_transcript() {
    let deltas: Vec<_> = (0..100).map(|i| ChatDelta::text(format!("word{i} "))).collect();
    let model = ScriptedModel::new().stream_every(deltas, Duration::from_millis(20));
    let agent = Agent::builder(model).build().unwrap();
    let token = CancellationToken::new();
    let mut events = agent.stream_with(
        RunState::new("tell me a long story"),
        RunOptions::cancel_on(token.clone()),
    );

    let started = Instant::now();
    let mut deltas_seen = 0;
    let error = loop {
        match events.next().await.expect("the stream ends with the error") {
            Ok(AgentEvent::TextDelta { .. }) => {
                deltas_seen += 1;
                if deltas_seen == 3 {
                    token.cancel();
                }
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(error) => break error,
        }
    };
    assert!(events.next().await.is_none(), "nothing after the error");
    assert_eq!(error.error, Error::Cancelled);
    assert!(deltas_seen <= 4, "stopped promptly, saw {deltas_seen} deltas");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(error.messages().len(), 1);
    assert_eq!(error.messages()[0].role, Role::User);
}

#[tokio::test]
async fn cancelling_drops_in_flight_tool_calls() {
    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicBool::new(false));
    let (d, c) = (Arc::clone(&dropped), Arc::clone(&completed));
    let slow = tool_fn("nap", "Sleeps.", move |args: Nap| {
        let guard = DropFlag(Arc::clone(&d));
        let completed = Arc::clone(&c);
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_millis(args.millis)).await;
            completed.store(true, Ordering::SeqCst);
            Ok("done")
        }
    });
    let model = ScriptedModel::new()
        .tool_call("nap", json!({"millis": 10_000}))
        .text("never");
    let agent = Agent::builder(model).tool(slow).build().unwrap();
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let error = agent
        .resume_with(RunState::new("sleep"), RunOptions::cancel_on(token))
        .await
        .unwrap_err();
    assert_eq!(error.error, Error::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(dropped.load(Ordering::SeqCst), "the tool's future was dropped");
    assert!(!completed.load(Ordering::SeqCst));
    // The call is still pending in the state, so a resumed run would execute it.
    assert_eq!(error.state.pending_tool_calls.len(), 1);
}

#[tokio::test]
async fn a_cancelled_token_stops_the_run_before_it_starts() {
    let model = ScriptedModel::new().text("hi");
    let agent = Agent::builder(model.clone()).build().unwrap();
    let token = CancellationToken::new();
    token.cancel();
    let error = agent
        .resume_with(RunState::new("hi"), RunOptions::cancel_on(token))
        .await
        .unwrap_err();
    assert_eq!(error.error, Error::Cancelled);
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn an_exhausted_script_is_an_error_not_a_panic() {
    let agent = Agent::builder(ScriptedModel::new()).build().unwrap();
    let error = agent.run("hi").await.unwrap_err();
    assert!(matches!(error.error, Error::InvalidRequest { .. }));
}

#[tokio::test]
async fn the_last_step_can_be_reserved_for_an_answer() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 1}))
        .tool_call("add", json!({"a": 2, "b": 2}))
        .text("2 and 4");
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .max_steps(3)
        .answer_on_last_step(true)
        .build()
        .unwrap();
    let output = agent.run("sums").await.unwrap();
    assert_eq!(output.answer, "2 and 4");
    let choices: Vec<_> = model.requests().iter().map(|r| r.tool_choice.clone()).collect();
    assert_eq!(choices, [None, None, Some(kai_core::ToolChoice::None)]);
}
