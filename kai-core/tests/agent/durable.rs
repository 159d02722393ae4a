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
