//! Durable runs: checkpoints, resumption in a fresh agent, and approvals that survive a restart.

use std::sync::{Arc, Mutex};

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, AgentHook, Error, HookContext, RunState, ToolCall, ToolDecision};
use serde_json::json;

use crate::support::{adder, shout, tool_results};

/// Stores every checkpoint as JSON, as a database would.
#[derive(Default, Clone)]
struct Store(Arc<Mutex<Vec<String>>>);

#[kai_core::async_trait]
impl AgentHook for Store {
    async fn checkpoint(&self, state: &RunState) -> Result<(), Error> {
        self.0.lock().unwrap().push(serde_json::to_string(state).unwrap());
        Ok(())
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
            Ok::<_, kai_core::ToolError>(args.word.to_uppercase())
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
