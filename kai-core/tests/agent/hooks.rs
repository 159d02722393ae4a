use std::sync::{Arc, Mutex};

use kai_core::testing::ScriptedModel;
use kai_core::{
    Agent, AgentHook, ChatRequest, ChatResponse, Error, HookContext, Message, ToolCall, ToolDecision, ToolResult,
};
use serde_json::json;

use crate::support::{adder, shout, tool_results};

/// A hook driven by closures, recording what it saw.
#[derive(Default)]
struct Policy {
    seen: Arc<Mutex<Vec<String>>>,
    label: &'static str,
    decide: Option<fn(&ToolCall, &serde_json::Value) -> ToolDecision>,
}

#[kai_core::async_trait]
impl AgentHook for Policy {
    async fn before_tool(&self, context: &HookContext, call: &ToolCall, arguments: &serde_json::Value) -> ToolDecision {
        self.seen.lock().unwrap().push(format!(
            "{} before {} {} step {}",
            self.label, call.name, arguments, context.step
        ));
        self.decide
            .map_or(ToolDecision::Allow, |decide| decide(call, arguments))
    }

    async fn after_tool(&self, _: &HookContext, call: &ToolCall, result: &mut ToolResult) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{} after {} {}", self.label, call.name, result.content));
    }
}

#[tokio::test]
async fn deny_goes_back_to_the_model_with_the_reason() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 2}))
        .text("ok");
    let policy = Policy {
        label: "p",
        decide: Some(|_, _| ToolDecision::Deny {
            reason: "arithmetic is forbidden".into(),
        }),
        ..Policy::default()
    };
    let seen = Arc::clone(&policy.seen);
    let agent = Agent::builder(model).tool(adder()).hook(policy).build().unwrap();
    let output = agent.run("go").await.unwrap();
    let result = &tool_results(&output.messages)[0];
    assert!(result.is_error);
    assert_eq!(result.content, "the call was denied: arithmetic is forbidden");
    // after_tool still sees the denial (for audit logs).
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "p before add {\"a\":1,\"b\":2} step 1",
            "p after add the call was denied: arithmetic is forbidden"
        ]
    );
}

#[tokio::test]
async fn rewrites_compose_in_order_and_the_tool_runs_with_the_result() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 2}))
        .text("ok");
    let first = Policy {
        label: "first",
        decide: Some(|_, args| ToolDecision::Rewrite {
            arguments: json!({"a": args["a"].as_i64().unwrap() * 10, "b": args["b"]}),
        }),
        ..Policy::default()
    };
    let seen = Arc::clone(&first.seen);
    let second = Policy {
        label: "second",
        seen: Arc::clone(&seen),
        decide: Some(|_, args| ToolDecision::Rewrite {
            arguments: json!({"a": args["a"], "b": args["b"].as_i64().unwrap() * 100}),
        }),
    };
    let agent = Agent::builder(model)
        .tool(adder())
        .hook(first)
        .hook(second)
        .build()
        .unwrap();
    let output = agent.run("go").await.unwrap();
    assert_eq!(tool_results(&output.messages)[0].content, "210");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], "first before add {\"a\":1,\"b\":2} step 1");
    assert_eq!(seen[1], "second before add {\"a\":10,\"b\":2} step 1");
    // The transcript keeps what the model actually asked for.
    assert_eq!(
        output.messages[1].tool_calls().next().unwrap().arguments,
        "{\"a\":1,\"b\":2}"
    );
}

/// Records the arguments `after_tool` is shown.
#[derive(Default)]
struct AfterArguments(Arc<Mutex<Vec<String>>>);

#[kai_core::async_trait]
impl AgentHook for AfterArguments {
    async fn after_tool(&self, _: &HookContext, call: &ToolCall, _: &mut ToolResult) {
        self.0.lock().unwrap().push(call.arguments.clone());
    }
}

#[tokio::test]
async fn after_tool_sees_the_arguments_the_tool_ran_with() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 1, "b": 2}))
        .text("ok");
    let rewrite = Policy {
        label: "rewrite",
        decide: Some(|_, _| ToolDecision::Rewrite {
            arguments: json!({"a": 5, "b": 5}),
        }),
        ..Policy::default()
    };
    let after = AfterArguments::default();
    let seen = Arc::clone(&after.0);
    let agent = Agent::builder(model)
        .tool(adder())
        .hook(rewrite)
        .hook(after)
        .build()
        .unwrap();
    let output = agent.run("go").await.unwrap();
    assert_eq!(tool_results(&output.messages)[0].content, "10");
    // An audit hook records what ran, not what the model first asked for.
    assert_eq!(*seen.lock().unwrap(), ["{\"a\":5,\"b\":5}"]);
}

#[tokio::test]
async fn the_first_denial_wins_and_later_hooks_are_not_asked() {
    let model = ScriptedModel::new()
        .tool_calls([("add", json!({"a": 1, "b": 2})), ("shout", json!({"word": "hi"}))])
        .text("ok");
    let deny_add = Policy {
        label: "guard",
        decide: Some(|call, _| {
            if call.name == "add" {
                ToolDecision::Deny { reason: "no".into() }
            } else {
                ToolDecision::Allow
            }
        }),
        ..Policy::default()
    };
    let seen = Arc::clone(&deny_add.seen);
    let audit = Policy {
        label: "audit",
        seen: Arc::clone(&seen),
        decide: None,
    };
    let agent = Agent::builder(model)
        .tool(adder())
        .tool(shout())
        .hook(deny_add)
        .hook(audit)
        .build()
        .unwrap();
    let output = agent.run("go").await.unwrap();
    let results = tool_results(&output.messages);
    assert!(results[0].is_error);
    assert_eq!(results[1].content, "HI");
    let seen = seen.lock().unwrap();
    assert!(!seen.iter().any(|s| s.starts_with("audit before add")));
    assert!(seen.iter().any(|s| s.starts_with("audit before shout")));
}

struct ContextInjector;

#[kai_core::async_trait]
impl AgentHook for ContextInjector {
    async fn before_model(&self, _: &HookContext, request: &mut ChatRequest) -> Result<(), Error> {
        request
            .messages
            .insert(1, Message::system("Context: the user's name is Ada."));
        Ok(())
    }
}

struct NoSecrets;

#[kai_core::async_trait]
impl AgentHook for NoSecrets {
    async fn after_model(&self, _: &HookContext, response: &mut ChatResponse) -> Result<(), Error> {
        let leaked = response.text().contains("hunter2");

        if leaked {
            Err(Error::Hook {
                message: "the answer contains a secret".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn before_model_changes_the_request_but_not_the_transcript() {
    let model = ScriptedModel::new().text("Hello Ada");
    let agent = Agent::builder(model.clone())
        .instructions("Be nice.")
        .hook(ContextInjector)
        .build()
        .unwrap();
    let output = agent.run("hi").await.unwrap();
    let sent = &model.requests()[0];
    assert_eq!(sent.messages[1].text(), "Context: the user's name is Ada.");
    assert_eq!(output.messages.len(), 2, "the injected context is not stored");
}

#[tokio::test]
async fn after_model_can_stop_the_run() {
    let model = ScriptedModel::new().text("the password is hunter2");
    let agent = Agent::builder(model).hook(NoSecrets).build().unwrap();
    let error = agent.run("password?").await.unwrap_err();
    assert!(matches!(error.error, Error::Hook { .. }));
    assert_eq!(error.messages().len(), 1, "the rejected answer is not kept");
}

/// A hook that rewrites a result cannot make it answer another call: the call would stay pending and
/// the provider would refuse the transcript.
#[tokio::test]
async fn a_result_keeps_the_id_of_the_call_it_answers() {
    struct Relabel;
    #[kai_core::async_trait]
    impl AgentHook for Relabel {
        async fn after_tool(&self, _: &HookContext, _: &ToolCall, result: &mut ToolResult) {
            result.call_id = "someone_else".into();
            result.content.push_str(" (checked)");
        }
    }
    let model = ScriptedModel::new().tool_call("add", json!({"a": 1, "b": 2})).text("3");
    let agent = Agent::builder(model).tool(adder()).hook(Relabel).build().unwrap();
    let output = agent.run("add").await.unwrap();
    let results = tool_results(&output.messages);
    let call_id = output.messages[1].tool_calls().next().unwrap().id.clone();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].call_id, call_id);
    assert_eq!(results[0].content, "3 (checked)");
}
