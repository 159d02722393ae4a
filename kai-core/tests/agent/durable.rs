//! Durable runs: checkpoints, resumption in a fresh agent, and approvals that survive a restart.

use std::sync::Arc;

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, AgentHook, Error, HookContext, RunState, ToolCall, ToolDecision};
use serde_json::json;

use crate::support::{Store, adder, shout, tool_results};

/// Rewrites every call's arguments to `{"a": <its number>, "b": 0}`.
struct Rewrite(i64);

#[kai_core::async_trait]
impl AgentHook for Rewrite {
    async fn before_tool(&self, _: &HookContext, _: &ToolCall, _: &serde_json::Value) -> ToolDecision {
        ToolDecision::Rewrite {
            arguments: json!({"a": self.0, "b": 0}),
        }
    }
}

/// Asks for approval before any call to `shout`.
struct ApproveShouting;

#[kai_core::async_trait]
impl AgentHook for ApproveShouting {
    async fn before_tool(&self, _: &HookContext, call: &ToolCall, _: &serde_json::Value) -> ToolDecision {
        if call.name == "shout" {
            ToolDecision::RequireApproval {
                reason: "shouting disturbs people".into(),
            }
        } else {
            ToolDecision::Allow
        }
    }
}

#[tokio::test]
async fn every_step_is_checkpointed_and_a_run_resumes_from_any_checkpoint() {
    let script = || {
        ScriptedModel::new()
            .tool_call("add", json!({"a": 1, "b": 2}))
            .tool_call("add", json!({"a": 3, "b": 4}))
            .text("3 and 7")
    };
    let store = Store::default();
    let agent = Agent::builder(script())
        .tool(adder())
        .hook(store.clone())
        .build()
        .unwrap();
    let complete = agent.run("two sums").await.unwrap();

    let checkpoints = store.0.lock().unwrap().clone();
    // After each model call (2 with tool calls) and after each batch of results (2), and the answer.
    assert_eq!(checkpoints.len(), 5);

    // "Crash" after the second model call, before its tool ran: a new agent in a new process resumes.
    let mid: RunState = serde_json::from_str(&checkpoints[2]).unwrap();
    assert_eq!(mid.steps, 2);
    assert_eq!(mid.pending_tool_calls.len(), 1);
    let remaining = ScriptedModel::new().text("3 and 7");
    let agent = Agent::builder(remaining.clone()).tool(adder()).build().unwrap();
    let resumed = agent.resume(mid).await.unwrap();
    assert_eq!(
        remaining.requests().len(),
        1,
        "the pending call ran without asking the model again"
    );
    assert_eq!(resumed.messages, complete.messages);
    assert_eq!(resumed.steps, 3);
}

#[tokio::test]
async fn approval_suspends_the_run_and_survives_a_restart() {
    let model = ScriptedModel::new()
        .tool_calls([("add", json!({"a": 1, "b": 1})), ("shout", json!({"word": "done"}))])
        .text("DONE");
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .tool(shout())
        .hook(ApproveShouting)
        .build()
        .unwrap();
    let suspended = agent.run("add then shout").await.unwrap_err();
    let Error::ApprovalRequired { call_ids } = &suspended.error else {
        panic!("expected an approval request, got {:?}", suspended.error);
    };
    assert_eq!(call_ids.len(), 1);
    // Nothing ran yet, not even the call that needed no approval: the batch waits as a whole.
    assert!(tool_results(suspended.messages()).is_empty());
    let approval = suspended.state.pending_approvals().next().unwrap();
    assert_eq!(approval.call.name, "shout");
    assert_eq!(approval.reason, "shouting disturbs people");

    // Store the state, "restart", approve, resume with a freshly built agent.
    let stored = serde_json::to_string(&suspended.state).unwrap();
    let mut state: RunState = serde_json::from_str(&stored).unwrap();
    assert!(matches!(
        agent.resume(state.clone()).await.unwrap_err().error,
        Error::ApprovalRequired { .. }
    ));
    state.approve(&call_ids[0]).unwrap();
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .tool(shout())
        .hook(ApproveShouting)
        .build()
        .unwrap();
    let output = agent.resume(state).await.unwrap();
    assert_eq!(output.answer, "DONE");
    let results = tool_results(&output.messages);
    assert_eq!(results[0].content, "2");
    assert_eq!(results[1].content, "DONE");
}

#[tokio::test]
async fn a_rejected_call_is_reported_to_the_model() {
    let model = ScriptedModel::new()
        .tool_call("shout", json!({"word": "hey"}))
        .text("ok, quietly");
    let agent = Agent::builder(model)
        .tool(shout())
        .hook(ApproveShouting)
        .build()
        .unwrap();
    let mut state = *agent.run("shout").await.unwrap_err().state;
    let id = state.pending_approvals().next().unwrap().call.id.clone();
    assert!(state.approve("no-such-call").is_err());
    state.reject(&id, "it is night").unwrap();
    let output = agent.resume(state).await.unwrap();
    let result = &tool_results(&output.messages)[0];
    assert!(result.is_error);
    assert_eq!(result.content, "the call was rejected: it is night");
    assert_eq!(output.answer, "ok, quietly");
}

/// A `shout` tool that counts its runs.
fn counted_shout(runs: Arc<std::sync::atomic::AtomicUsize>) -> impl kai_core::Tool {
    kai_core::tool_fn("shout", "Upper-cases a word.", move |args: crate::support::Word| {
        let runs = Arc::clone(&runs);
        async move {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(args.word.to_uppercase())
        }
    })
}

/// An outer agent that delegates to an inner one whose `shout` needs approval.
fn nested(inner_model: ScriptedModel, outer_model: ScriptedModel, runs: Arc<std::sync::atomic::AtomicUsize>) -> Agent {
    let inner = Agent::builder(inner_model)
        .name("crier")
        .tool(counted_shout(runs))
        .needs_approval("shout", "shouting disturbs people")
        .build()
        .unwrap();
    Agent::builder(outer_model)
        .tool(inner.into_tool("crier", "Shouts things."))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_approval_inside_a_sub_agent_suspends_the_outer_run_and_resumes_both_exactly() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = Store::default();
    let outer = nested(
        ScriptedModel::new().tool_call("shout", json!({"word": "hello"})),
        ScriptedModel::new().tool_call("crier", json!({"input": "shout hello"})),
        Arc::clone(&runs),
    )
    .with_hook(Arc::new(store.clone()));
    let suspended = outer.run("make some noise").await.unwrap_err();
    assert_eq!(
        suspended.error,
        Error::ApprovalRequired {
            call_ids: vec!["call_1_0/call_1_0".into()]
        }
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The suspension was checkpointed, as a database would have it.
    let stored = store.0.lock().unwrap().last().unwrap().clone();
    let mut state: RunState = serde_json::from_str(&stored).unwrap();
    assert_eq!(state, *suspended.state);
    let waiting: Vec<_> = state
        .pending_approvals()
        .map(|a| (a.call.name.clone(), a.reason.clone()))
        .collect();
    assert_eq!(waiting, [("shout".to_owned(), "shouting disturbs people".to_owned())]);

    // Another process: fresh agents whose models hold only what is left of their scripts.
    assert_eq!(state.approve_all(), 1);
    let outer = nested(
        ScriptedModel::new().text("I shouted HELLO."),
        ScriptedModel::new().text("The crier shouted."),
        Arc::clone(&runs),
    );
    let output = outer.resume(state).await.unwrap();
    assert_eq!(output.answer, "The crier shouted.");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1, "shout ran once");
    let results = tool_results(&output.messages);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].content, "I shouted HELLO.");
}

#[tokio::test]
async fn a_rejection_inside_a_sub_agent_reaches_the_inner_model() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outer = nested(
        ScriptedModel::new().tool_call("shout", json!({"word": "hello"})),
        ScriptedModel::new().tool_call("crier", json!({"input": "shout hello"})),
        Arc::clone(&runs),
    );
    let mut state = *outer.run("make some noise").await.unwrap_err().state;
    assert_eq!(state.reject_all("it is night"), 1);
    let inner_model = ScriptedModel::new().text("I was told not to shout.");
    let outer = nested(
        inner_model.clone(),
        ScriptedModel::new().text("No shouting tonight."),
        Arc::clone(&runs),
    );
    let output = outer.resume(state).await.unwrap();
    assert_eq!(output.answer, "No shouting tonight.");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    let inner_saw = tool_results(&inner_model.requests()[0].messages);
    assert!(
        inner_saw[0].is_error && inner_saw[0].content.contains("it is night"),
        "{inner_saw:?}"
    );
}

#[tokio::test]
async fn approval_rules_can_look_at_the_arguments() {
    let agent = Agent::builder(
        ScriptedModel::new()
            .tool_call("add", json!({"a": 1, "b": 2}))
            .tool_call("add", json!({"a": 1000, "b": 2}))
            .text("done"),
    )
    .tool(adder())
    .needs_approval_when("add", "large sums are audited", |args| {
        args["a"].as_i64().is_some_and(|a| a > 100)
    })
    .build()
    .unwrap();
    let error = agent.run("sums").await.unwrap_err();
    assert_eq!(error.state.steps, 2, "the small sum ran without asking");
    assert_eq!(error.state.pending_approvals().count(), 1);
}

/// A model chooses call ids, so one can name a direct call like a nested one (`x/call_1_0`). The
/// bookkeeping goes by where each approval belongs, not by parsing ids: the human's decision on the
/// nested call reaches that call and nothing else.
#[tokio::test]
async fn a_call_id_that_mimics_a_nested_one_does_not_confuse_approvals() {
    use kai_core::{ContentPart, Message, Role, ToolCall};
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let build = |inner_model: ScriptedModel, outer_model: ScriptedModel| {
        let inner = Agent::builder(inner_model)
            .tool(counted_shout(Arc::clone(&runs)))
            .needs_approval("shout", "shouting disturbs people")
            .build()
            .unwrap();
        Agent::builder(outer_model)
            .tool(inner.into_tool("crier", "Shouts things."))
            .tool(adder())
            .needs_approval("add", "sums are audited")
            .build()
            .unwrap()
    };
    let calls = vec![
        ContentPart::ToolCall(ToolCall::new("x", "crier", &json!({"input": "shout hello"}))),
        ContentPart::ToolCall(ToolCall::new("x/call_1_0", "add", &json!({"a": 1, "b": 2}))),
    ];
    let outer_model = ScriptedModel::new().respond(kai_core::ChatResponse::new(Message::new(Role::Assistant, calls)));
    let agent = build(
        ScriptedModel::new().tool_call("shout", json!({"word": "hello"})),
        outer_model,
    );

    // First the direct `add` waits; the human approves it by its id.
    let mut state = *agent.run("go").await.unwrap_err().state;
    state.approve("x/call_1_0").unwrap();
    // `add` runs; the crier's own run suspends on `shout`, whose approval carries the same id.
    let agent = build(
        ScriptedModel::new().tool_call("shout", json!({"word": "hello"})),
        ScriptedModel::new(),
    );
    let error = agent.resume(state).await.unwrap_err();
    assert_eq!(
        error.error,
        Error::ApprovalRequired {
            call_ids: vec!["x/call_1_0".into()]
        }
    );
    let mut state = *error.state;
    let waiting: Vec<_> = state.pending_approvals().map(|a| a.call.name.clone()).collect();
    assert_eq!(waiting, ["shout"]);
    // The spent approval of `add` is gone, so the id names only the waiting `shout`: rejecting it by id
    // rejects the shout, and the earlier approval of `add` does not leak into the crier's run.
    state.reject("x/call_1_0", "not now").unwrap();
    let inner_model = ScriptedModel::new().text("I kept quiet.");
    let agent = build(inner_model.clone(), ScriptedModel::new().text("Done."));
    let output = agent.resume(state).await.unwrap();
    assert_eq!(output.answer, "Done.");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0, "shout never ran");
    let inner_saw = tool_results(&inner_model.requests()[0].messages);
    assert!(
        inner_saw[0].is_error && inner_saw[0].content.contains("not now"),
        "{inner_saw:?}"
    );
    let outer_results: Vec<_> = tool_results(&output.messages).into_iter().map(|r| r.content).collect();
    assert!(outer_results.contains(&"3".to_owned()), "{outer_results:?}");
}

#[test]
fn an_id_shared_by_two_waiting_calls_must_be_decided_together() {
    let call = |id: &str| ToolCall::new(id, "t", &json!({}));
    let mut state = RunState::new("hi");
    for _ in 0..2 {
        state.approvals.push(kai_core::Approval {
            call: call("same"),
            reason: "r".into(),
            decision: None,
            nested: None,
        });
    }
    assert!(matches!(state.approve("same"), Err(Error::Config { .. })));
    assert_eq!(state.approve_all(), 2);
}

#[tokio::test]
async fn two_calls_with_one_id_each_get_a_result() {
    use kai_core::{ContentPart, Message, Role};
    let calls = vec![
        ContentPart::ToolCall(ToolCall::new("dup", "add", &json!({"a": 1, "b": 2}))),
        ContentPart::ToolCall(ToolCall::new("dup", "add", &json!({"a": 3, "b": 4}))),
    ];
    let model = ScriptedModel::new()
        .respond(kai_core::ChatResponse::new(Message::new(Role::Assistant, calls)))
        .text("3 and 7");
    let agent = Agent::builder(model).tool(adder()).build().unwrap();
    let output = agent.run("sums").await.unwrap();
    let mut contents: Vec<_> = tool_results(&output.messages).into_iter().map(|r| r.content).collect();
    contents.sort();
    assert_eq!(contents, ["3", "7"]);
}

/// A hook before the approval check may rewrite arguments differently on resume; the human's approval
/// covers only the arguments they saw.
#[tokio::test]
async fn an_approval_covers_only_the_arguments_the_human_saw() {
    let build = |a: i64, model: ScriptedModel| {
        Agent::builder(model)
            .tool(adder())
            .hook(Rewrite(a))
            .needs_approval("add", "sums are audited")
            .build()
            .unwrap()
    };
    let agent = build(1, ScriptedModel::new().tool_call("add", json!({"a": 5, "b": 5})));
    let mut state = *agent.run("sum").await.unwrap_err().state;
    // The human sees the arguments that would run, after the rewrite.
    assert_eq!(state.approvals[0].call.arguments, r#"{"a":1,"b":0}"#);
    state.approve_all();
    // On resume the hook rewrites to something else: that needs a new approval.
    let agent = build(1000, ScriptedModel::new().text("done"));
    let error = agent.resume(state).await.unwrap_err();
    assert!(matches!(error.error, Error::ApprovalRequired { .. }), "{error}");
    let waiting: Vec<_> = error
        .state
        .pending_approvals()
        .map(|a| a.call.arguments.clone())
        .collect();
    assert_eq!(waiting, [r#"{"a":1000,"b":0}"#]);
}

/// A hook after the one that asks for approval may rewrite the arguments: the human approves what
/// will run, after every hook.
#[tokio::test]
async fn an_approval_covers_the_arguments_after_every_hook() {
    let build = |a: i64, model: ScriptedModel| {
        Agent::builder(model)
            .tool(adder())
            .needs_approval("add", "sums are audited")
            .hook(Rewrite(a))
            .build()
            .unwrap()
    };
    let agent = build(7, ScriptedModel::new().tool_call("add", json!({"a": 5, "b": 5})));
    let mut state = *agent.run("sum").await.unwrap_err().state;
    assert_eq!(state.approvals[0].call.arguments, r#"{"a":7,"b":0}"#);
    state.approve_all();
    let agent = build(1000, ScriptedModel::new().text("done"));
    let error = agent.resume(state).await.unwrap_err();
    let waiting: Vec<_> = error
        .state
        .pending_approvals()
        .map(|a| a.call.arguments.clone())
        .collect();
    assert_eq!(waiting, [r#"{"a":1000,"b":0}"#], "a later rewrite needs a new approval");
}

/// The sub-agent call itself needs approval, and so does a call inside it: each is asked once.
#[tokio::test]
async fn an_approved_sub_agent_call_is_not_asked_again_after_its_inner_approval() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let build = |inner_model: ScriptedModel, outer_model: ScriptedModel| {
        let inner = Agent::builder(inner_model)
            .name("crier")
            .tool(counted_shout(Arc::clone(&runs)))
            .needs_approval("shout", "shouting disturbs people")
            .build()
            .unwrap();
        Agent::builder(outer_model)
            .tool(inner.into_tool("crier", "Shouts things."))
            .needs_approval("crier", "the crier is expensive")
            .build()
            .unwrap()
    };
    let outer = build(
        ScriptedModel::new(),
        ScriptedModel::new().tool_call("crier", json!({"input": "shout hello"})),
    );
    let mut state = *outer.run("make some noise").await.unwrap_err().state;
    let asked: Vec<_> = state.pending_approvals().map(|a| a.call.name.clone()).collect();
    assert_eq!(asked, ["crier"]);
    state.approve_all();
    let outer = build(
        ScriptedModel::new().tool_call("shout", json!({"word": "hello"})),
        ScriptedModel::new(),
    );
    let mut state = *outer.resume(state).await.unwrap_err().state;
    let asked: Vec<_> = state.pending_approvals().map(|a| a.call.name.clone()).collect();
    assert_eq!(asked, ["shout"], "only the inner call waits");
    state.approve_all();
    let outer = build(
        ScriptedModel::new().text("I shouted HELLO."),
        ScriptedModel::new().text("The crier shouted."),
    );
    let output = outer.resume(state).await.unwrap();
    assert_eq!(output.answer, "The crier shouted.");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A crash after the final answer was checkpointed but before it was delivered: resuming gives the
/// same answer, without another model call or step.
#[tokio::test]
async fn resuming_a_finished_state_gives_its_answer_again() {
    let store = Store::default();
    let agent = Agent::builder(ScriptedModel::new().tool_call("add", json!({"a": 1, "b": 2})).text("3"))
        .tool(adder())
        .hook(store.clone())
        .build()
        .unwrap();
    let output = agent.run("1 + 2?").await.unwrap();
    let last: RunState = serde_json::from_str(store.0.lock().unwrap().last().unwrap()).unwrap();
    let idle = Agent::builder(ScriptedModel::new()).tool(adder()).build().unwrap();
    let again = idle.resume(last).await.unwrap();
    assert_eq!(again.answer, output.answer);
    assert_eq!(again.steps, output.steps);
}
