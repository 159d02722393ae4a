//! What tools learn from the run and give back to it: call ids, cancellation, usage, and results that
//! are kept the moment they exist.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, CancellationToken, Error, RunOptions, RunState, ToolContext, Usage, dynamic_tool, tool_fn};
use serde_json::json;

use crate::support::{Nap, Store, adder, cancel_after, tool_results, usage};

/// A `nap` tool that counts its runs and keeps the token of each call.
fn watched_nap(runs: Arc<AtomicUsize>, tokens: Arc<Mutex<Vec<CancellationToken>>>) -> impl kai_core::Tool {
    tool_fn("nap", "Sleeps.", move |args: Nap, context: ToolContext| {
        let (runs, tokens) = (Arc::clone(&runs), Arc::clone(&tokens));
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokens.lock().unwrap().push(context.cancel.clone());
            tokio::time::sleep(Duration::from_millis(args.millis)).await;
            Ok(format!("slept {} ms as {}", args.millis, context.call_id))
        }
    })
}

#[tokio::test]
async fn results_of_finished_calls_survive_a_cancel_mid_batch_and_are_not_run_again() {
    let script = || {
        ScriptedModel::new()
            .tool_calls([("nap", json!({"millis": 10})), ("nap", json!({"millis": 60_000}))])
            .text("rested")
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let agent = Agent::builder(script())
        .tool(watched_nap(Arc::clone(&runs), Arc::clone(&tokens)))
        .build()
        .unwrap();
    let cancel = cancel_after(Duration::from_millis(300));
    let error = agent
        .resume_with(RunState::new("rest"), RunOptions::cancel_on(cancel))
        .await
        .unwrap_err();
    assert_eq!(error.error, Error::Cancelled);
    // The short nap finished before the cancel: its result is in the state, and only the long one is
    // still pending.
    let kept = tool_results(error.messages());
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].content, "slept 10 ms as call_1_0");
    assert_eq!(error.state.pending_tool_calls.len(), 1);
    assert_eq!(error.state.pending_tool_calls[0].id, "call_1_1");
    // Every call's token was cancelled with the run, the dropped long nap's included.
    assert!(tokens.lock().unwrap().iter().all(CancellationToken::is_cancelled));

    // Resume with a model that has only the final answer left: the short nap does not run again, and
    // the long one keeps its id, so a tool can use it as an idempotency key.
    let resumed_agent = Agent::builder(ScriptedModel::new().text("rested"))
        .tool(watched_nap(Arc::clone(&runs), Arc::clone(&tokens)))
        .build()
        .unwrap();
    let mut state = *error.state;
    state.pending_tool_calls[0].arguments = json!({"millis": 1}).to_string();
    let output = resumed_agent.resume(state).await.unwrap();
    assert_eq!(output.answer, "rested");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "two calls in the first run, one in the second"
    );
    let contents: Vec<String> = tool_results(&output.messages).into_iter().map(|r| r.content).collect();
    assert_eq!(contents, ["slept 10 ms as call_1_0", "slept 1 ms as call_1_1"]);
}

#[tokio::test]
async fn a_tool_that_times_out_sees_its_token_cancelled() {
    let runs = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let agent = Agent::builder(
        ScriptedModel::new()
            .tool_call("nap", json!({"millis": 60_000}))
            .text("gave up"),
    )
    .tool(watched_nap(runs, Arc::clone(&tokens)))
    .tool_timeout(Duration::from_millis(50))
    .build()
    .unwrap();
    let output = agent.run("rest").await.unwrap();
    assert!(tool_results(&output.messages)[0].is_error);
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].is_cancelled());
}

#[tokio::test]
async fn a_finished_tool_call_cancels_its_token_so_leftover_work_stops() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let agent = Agent::builder(ScriptedModel::new().tool_call("nap", json!({"millis": 1})).text("ok"))
        .tool(watched_nap(Arc::default(), Arc::clone(&tokens)))
        .build()
        .unwrap();
    agent.run("rest").await.unwrap();
    assert!(tokens.lock().unwrap()[0].is_cancelled());
}

#[tokio::test]
async fn limits_of_duration_max_mean_no_limit_not_a_panic() {
    let agent = Agent::builder(ScriptedModel::new().tool_call("add", json!({"a": 1, "b": 2})).text("3"))
        .tool(adder())
        .deadline(Duration::MAX)
        .step_timeout(Duration::MAX)
        .tool_timeout(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(agent.run("1+2").await.unwrap().answer, "3");
}

#[tokio::test]
async fn a_sub_agents_usage_counts_in_the_outer_run() {
    let inner = Agent::builder(ScriptedModel::new().text("4").usage(usage(100, 10)))
        .name("math")
        .build()
        .unwrap();
    let outer = Agent::builder(
        ScriptedModel::new()
            .tool_call("math", json!({"input": "2+2"}))
            .usage(usage(5, 1))
            .text("It is 4.")
            .usage(usage(7, 2)),
    )
    .tool(inner.into_tool("math", "Does arithmetic."))
    .build()
    .unwrap();
    let output = outer.run("2+2?").await.unwrap();
    assert_eq!(output.usage, usage(112, 13));
}

#[tokio::test]
async fn a_dynamic_tool_only_sees_arguments_that_match_its_schema() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let schema = json!({
        "type": "object",
        "properties": {"count": {"type": "integer", "minimum": 1}},
        "required": ["count"],
        "additionalProperties": false,
    });
    let tool = dynamic_tool(
        "repeat",
        "Repeats.",
        schema,
        move |args: serde_json::Value, _: ToolContext| {
            let recorder = Arc::clone(&recorder);
            async move {
                recorder.lock().unwrap().push(args.clone());
                Ok(json!({"ok": args["count"]}))
            }
        },
    )
    .unwrap();
    let model = ScriptedModel::new()
        .tool_call("repeat", json!({"count": 0}))
        .tool_call("repeat", json!({"count": 2, "extra": true}))
        .tool_call("repeat", json!({"count": 2}))
        .text("done");
    let agent = Agent::builder(model).tool(tool).build().unwrap();
    let output = agent.run("go").await.unwrap();
    let results = tool_results(&output.messages);
    assert!(
        results[0].is_error && results[0].content.contains("/count"),
        "{}",
        results[0].content
    );
    assert!(
        results[1].is_error && results[1].content.contains("extra"),
        "{}",
        results[1].content
    );
    assert_eq!(results[2].content, r#"{"ok":2}"#);
    assert_eq!(*seen.lock().unwrap(), [json!({"count": 2})]);
}

#[test]
fn a_dynamic_tool_with_a_schema_that_is_not_one_is_refused() {
    let callback = |_: serde_json::Value, _: ToolContext| async { Ok(serde_json::Value::Null) };
    assert!(matches!(
        dynamic_tool("bad", "x", json!({"type": "string"}), callback),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        dynamic_tool("bad", "x", json!({"type": "object", "properties": 3}), callback),
        Err(Error::Config { .. })
    ));
}

#[tokio::test]
async fn scripted_call_ids_follow_the_run_and_usage_is_estimated() {
    let model = ScriptedModel::new()
        .repeat()
        .tool_call("add", json!({"a": 1, "b": 1}))
        .text("2");
    let agent = Agent::builder(model).tool(adder()).build().unwrap();
    let first = agent.run("1+1").await.unwrap();
    let second = agent.run("1+1").await.unwrap();
    assert_eq!(tool_results(&first.messages)[0].call_id, "call_1_0");
    assert_eq!(tool_results(&second.messages)[0].call_id, "call_1_0");
    assert_ne!(first.usage, Usage::default());
}

#[tokio::test]
async fn repeated_or_empty_call_ids_are_made_unique_across_the_run() {
    use kai_core::{ChatResponse, ContentPart, Message, Role, ToolCall};
    let calls = |ids: [&str; 2]| {
        let parts = ids
            .iter()
            .map(|id| ContentPart::ToolCall(ToolCall::new(*id, "add", &json!({"a": 1, "b": 1}))))
            .collect();
        ChatResponse::new(Message::new(Role::Assistant, parts))
    };
    // Gemini-style ids that repeat every step, and an empty one.
    let model = ScriptedModel::new()
        .respond(calls(["kai_0", "kai_0"]))
        .respond(calls(["kai_0", ""]))
        .text("done");
    let agent = Agent::builder(model).tool(adder()).build().unwrap();
    let output = agent.run("sums").await.unwrap();
    let ids: Vec<String> = output
        .messages
        .iter()
        .flat_map(|m| m.tool_calls().map(|c| c.id.clone()).collect::<Vec<_>>())
        .collect();
    // (The scripted model names an empty id itself, as some servers do.)
    assert_eq!(ids, ["kai_0", "kai_0-2", "kai_0-3", "call_2_1"]);
    // Every call has exactly one result, under its own id.
    let mut answered: Vec<String> = tool_results(&output.messages).into_iter().map(|r| r.call_id).collect();
    answered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(answered, expected);
}

#[tokio::test]
async fn calls_beyond_the_limit_of_a_step_are_answered_without_running() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let tool = tool_fn("tick", "Counts.", move |_: serde_json::Value| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok("ok")
        }
    });
    let many: Vec<_> = (0..10).map(|_| ("tick", json!({}))).collect();
    let model = ScriptedModel::new().tool_calls(many).text("done");
    let agent = Agent::builder(model)
        .tool(tool)
        .max_tool_calls_per_step(3)
        .build()
        .unwrap();
    let output = agent.run("tick").await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let results = tool_results(&output.messages);
    assert_eq!(results.len(), 10);
    assert_eq!(
        results
            .iter()
            .filter(|r| r.is_error && r.content.contains("more than the 3"))
            .count(),
        7
    );
}

#[tokio::test]
async fn a_cancelled_sub_agent_continues_where_it_stopped_when_the_outer_run_resumes() {
    let adds = Arc::new(AtomicUsize::new(0));
    let counted_add = |adds: Arc<AtomicUsize>| {
        tool_fn("add", "Adds.", move |args: crate::support::Add| {
            let adds = Arc::clone(&adds);
            async move {
                adds.fetch_add(1, Ordering::SeqCst);
                Ok(args.a + args.b)
            }
        })
    };
    let build = |inner_model: ScriptedModel, outer_model: ScriptedModel, adds: Arc<AtomicUsize>| {
        let inner = Agent::builder(inner_model)
            .tool(counted_add(adds))
            .tool(watched_nap(Arc::default(), Arc::default()))
            .build()
            .unwrap();
        Agent::builder(outer_model)
            .tool(inner.into_tool("worker", "Does the work."))
            .build()
            .unwrap()
    };
    let outer = build(
        ScriptedModel::new()
            .tool_call("add", json!({"a": 1, "b": 2}))
            .tool_call("nap", json!({"millis": 60_000})),
        ScriptedModel::new().tool_call("worker", json!({"input": "add, then rest"})),
        Arc::clone(&adds),
    );
    let cancel = cancel_after(Duration::from_millis(300));
    let error = outer
        .resume_with(RunState::new("work"), RunOptions::cancel_on(cancel))
        .await
        .unwrap_err();
    assert_eq!(error.error, Error::Cancelled, "{:#?}", error.state.messages);
    assert_eq!(adds.load(Ordering::SeqCst), 1);
    // The outer call is still pending, and the inner run's progress is kept with it.
    let mut state = *error.state;
    assert_eq!(state.pending_tool_calls.len(), 1);
    assert_eq!(state.suspended.len(), 1);
    let inner = &mut state.suspended[0].state;
    assert_eq!(
        tool_results(&inner.messages).len(),
        1,
        "the add's result is in the inner run"
    );

    // Resumed and cancelled again before the inner run reaches a checkpoint of its own: what it
    // resumed from is still kept with the call.
    let outer = build(ScriptedModel::new(), ScriptedModel::new(), Arc::clone(&adds));
    let cancel = cancel_after(Duration::from_millis(300));
    let error = outer
        .resume_with(state, RunOptions::cancel_on(cancel))
        .await
        .unwrap_err();
    assert_eq!(error.error, Error::Cancelled);
    let mut state = *error.state;
    assert_eq!(
        state.suspended.len(),
        1,
        "the inner run's progress survives a second cancel"
    );
    let inner = &mut state.suspended[0].state;
    assert_eq!(tool_results(&inner.messages).len(), 1);
    inner.pending_tool_calls[0].arguments = json!({"millis": 1}).to_string();

    // Another process: the inner model has only its answer left; the add must not run again.
    let outer = build(
        ScriptedModel::new().text("added and rested"),
        ScriptedModel::new().text("All done."),
        Arc::clone(&adds),
    );
    let output = outer.resume(state).await.unwrap();
    assert_eq!(output.answer, "All done.");
    assert_eq!(adds.load(Ordering::SeqCst), 1, "the inner add ran once in all");
    assert_eq!(tool_results(&output.messages)[0].content, "added and rested");
}

/// Call ids repeat between runs (a provider that gives none gets `call_0`, ...), so the idempotency
/// key adds the run's id: different for two runs, the same for a run and its resumption.
#[tokio::test]
async fn idempotency_keys_differ_between_runs_and_survive_a_resume() {
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&keys);
    let book = tool_fn("book", "Books.", move |_: serde_json::Value, context: ToolContext| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(context.idempotency_key());
            Ok("booked")
        }
    });
    let model = ScriptedModel::new().repeat().tool_call("book", json!({})).text("done");
    let agent = Agent::builder(model).tool(book).build().unwrap();
    agent.run("book").await.unwrap();
    agent.run("book").await.unwrap();
    let mut state = RunState::new("book");
    let id = state.id.clone();
    state = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert_eq!(state.id, id, "the run id is stored");
    agent.resume(state).await.unwrap();
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), 3);
    assert_ne!(keys[0], keys[1]);
    assert!(
        keys[0].ends_with("/call_1_0") && keys[1].ends_with("/call_1_0"),
        "{keys:?}"
    );
    assert_eq!(keys[2], format!("{id}/call_1_0"));
}

/// The process dies while a sub-agent is mid-way: the outer run's last checkpoint already holds the
/// inner run's progress, so a resume elsewhere does not run the inner run's finished tools again.
#[tokio::test]
async fn a_sub_agents_progress_is_in_the_outer_checkpoints_and_survives_a_crash() {
    let adds = Arc::new(AtomicUsize::new(0));
    let build = |inner_model: ScriptedModel, outer_model: ScriptedModel, store: Store| {
        let adds = Arc::clone(&adds);
        let add = tool_fn("add", "Adds.", move |args: crate::support::Add| {
            let adds = Arc::clone(&adds);
            async move {
                adds.fetch_add(1, Ordering::SeqCst);
                Ok(args.a + args.b)
            }
        });
        let inner = Agent::builder(inner_model)
            .tool(add)
            .tool(watched_nap(Arc::default(), Arc::default()))
            .build()
            .unwrap();
        Agent::builder(outer_model)
            .tool(inner.into_tool("worker", "Does the work."))
            .tool(watched_nap(Arc::default(), Arc::default()))
            .hook(store)
            .build()
            .unwrap()
    };
    let store = Store::default();
    let outer = build(
        ScriptedModel::new()
            .tool_call("add", json!({"a": 1, "b": 2}))
            .tool_call("nap", json!({"millis": 60_000})),
        // A sibling call that finishes while the worker naps: its checkpoint must keep the worker's
        // progress too.
        ScriptedModel::new().tool_calls([
            ("worker", json!({"input": "add, then rest"})),
            ("nap", json!({"millis": 200})),
        ]),
        store.clone(),
    );
    // The crash: the run's future is dropped mid-nap, nothing else is written.
    let crashed = tokio::time::timeout(Duration::from_millis(400), outer.run("work")).await;
    assert!(crashed.is_err());
    assert_eq!(adds.load(Ordering::SeqCst), 1);
    let last = store.0.lock().unwrap().last().cloned().unwrap();
    let mut state: RunState = serde_json::from_str(&last).unwrap();
    assert_eq!(tool_results(&state.messages).len(), 1, "the sibling nap finished");
    assert_eq!(state.pending_tool_calls.len(), 1, "the worker call is still pending");
    assert_eq!(state.suspended.len(), 1, "with the inner run's progress");
    let inner_id = state.suspended[0].state.id.clone();
    assert_eq!(inner_id, format!("{}/{}", state.id, state.pending_tool_calls[0].id));
    let inner = &mut state.suspended[0].state;
    assert_eq!(tool_results(&inner.messages).len(), 1, "the add is done in there");
    inner.pending_tool_calls[0].arguments = json!({"millis": 1}).to_string();

    let outer = build(
        ScriptedModel::new().text("added and rested"),
        ScriptedModel::new().text("All done."),
        Store::default(),
    );
    let output = outer.resume(state).await.unwrap();
    assert_eq!(output.answer, "All done.");
    assert_eq!(adds.load(Ordering::SeqCst), 1, "the add ran once in all");
}
