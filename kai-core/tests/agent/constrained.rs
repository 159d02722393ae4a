use futures::StreamExt as _;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, AgentEvent, ResponseFormat, Role};

use crate::support::adder;

/// The action schema a constrained step's request carries.
fn action_schema(request: &kai_core::ChatRequest) -> &serde_json::Value {
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => schema,
        other => panic!("no schema: {other:?}"),
    }
}

/// A small model held to one valid action per step: it gets a schema of the actions, no tool
/// definitions, and sees its earlier call and the result as text; the state keeps them structured.
#[tokio::test]
async fn each_step_is_one_call_or_the_answer_and_the_state_stays_structured() {
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text(r#"{"name": "add", "parameters": {"a": 2, "b": 3}}"#)
        .text(r#"{"answer": "2 + 3 = 5"}"#);
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .constrained_steps(true)
        .build()
        .unwrap();

    let output = agent.run("add 2 and 3").await.unwrap();

    assert_eq!(output.answer, "2 + 3 = 5");
    let call = output.messages[1]
        .tool_calls()
        .next()
        .expect("a structured call in the state");
    assert_eq!(
        (call.name.as_str(), call.arguments.as_str()),
        ("add", r#"{"a":2,"b":3}"#)
    );
    assert_eq!(output.messages[2].tool_results().next().unwrap().content, "5");
    let requests = model.requests();
    for request in &requests {
        assert!(request.tools.is_empty());
        assert!(
            matches!(&request.response_format, Some(ResponseFormat::JsonSchema { name, .. }) if name == "next_action")
        );
    }
    let seen: Vec<(Role, String)> = requests[1].messages.iter().map(|m| (m.role, m.text())).collect();
    assert_eq!(
        seen[2],
        (
            Role::Assistant,
            r#"{"name":"add","parameters":{"a":2,"b":3}}"#.to_owned()
        )
    );
    assert_eq!(
        seen[3],
        (
            Role::User,
            r#"{"tool_result":{"failed":false,"output":"5","tool":"add"}}"#.to_owned()
        )
    );
}

/// The last step of a run that must answer allows only the answer, and a stream shows the decoded
/// answer, never the JSON around it.
#[tokio::test]
async fn the_last_step_must_answer_and_streams_show_the_answer_alone() {
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text(r#"{"name": "add", "parameters": {"a": 2, "b": 3}}"#)
        .text(r#"{"answer": "5"}"#);
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .constrained_steps(true)
        .max_steps(2)
        .answer_on_last_step(true)
        .build()
        .unwrap();

    let texts: Vec<String> = agent
        .stream("add 2 and 3")
        .filter_map(|event| async move {
            match event.unwrap() {
                AgentEvent::TextDelta { text } => Some(text),
                _ => None,
            }
        })
        .collect()
        .await;

    assert_eq!(texts, ["5"]);
    let last = model.requests().pop().unwrap();
    let schema = action_schema(&last);
    assert_eq!(schema["required"], serde_json::json!(["answer"]));
}

/// A model that cannot follow a schema takes ordinary steps.
#[tokio::test]
async fn without_schema_output_steps_are_ordinary() {
    let model = ScriptedModel::new()
        .tool_call("add", serde_json::json!({"a": 1, "b": 1}))
        .text("2");
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .constrained_steps(true)
        .build()
        .unwrap();
    assert_eq!(agent.run("1+1").await.unwrap().answer, "2");
    let first = &model.requests()[0];
    assert_eq!(first.tools.len(), 1);
    assert_eq!(first.response_format, None);
}

/// A required tool choice holds until the model has called a tool in this turn, then it may answer:
/// a model told to look something up first cannot be made to loop by it.
#[tokio::test]
async fn a_required_tool_choice_resets_after_the_first_call() {
    let model = ScriptedModel::new()
        .tool_call("add", serde_json::json!({"a": 1, "b": 1}))
        .text("2")
        .tool_call("add", serde_json::json!({"a": 2, "b": 2}))
        .text("4");
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .tool_choice(kai_core::ToolChoice::Required)
        .build()
        .unwrap();
    let mut conversation = kai_core::Conversation::new(agent);
    assert_eq!(conversation.send("1+1").await.unwrap().answer, "2");
    assert_eq!(conversation.send("2+2").await.unwrap().answer, "4");
    let choices: Vec<_> = model
        .requests()
        .into_iter()
        .map(|request| request.tool_choice)
        .collect();
    assert_eq!(
        choices,
        [
            Some(kai_core::ToolChoice::Required),
            None,
            Some(kai_core::ToolChoice::Required),
            None
        ],
        "required again for the next turn"
    );
}

/// A model that repeats a call it already made (same tool, same arguments) is stuck: the step after
/// the repeat may only answer.
#[tokio::test]
async fn a_repeated_call_is_followed_by_a_step_that_must_answer() {
    let call = r#"{"name": "add", "parameters": {"a": 2, "b": 3}}"#;
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text(call)
        .text(r#"{"name": "add", "parameters": {"a": 5, "b": 0}}"#)
        .text(call)
        .text(r#"{"answer": "5"}"#);
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .constrained_steps(true)
        .build()
        .unwrap();
    assert_eq!(agent.run("add 2 and 3").await.unwrap().answer, "5");
    let answer_only: Vec<bool> = model
        .requests()
        .iter()
        .map(|request| action_schema(request).get("anyOf").is_none())
        .collect();
    assert_eq!(answer_only, [false, false, false, true]);
}

/// Repeating a call that failed is trying again, not being stuck: the next step may still call.
#[tokio::test]
async fn repeating_a_failed_call_is_not_being_stuck() {
    let bad = r#"{"name": "add", "parameters": {"a": "two", "b": 3}}"#;
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text(bad)
        .text(bad)
        .text(r#"{"answer": "cannot add"}"#);
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .constrained_steps(true)
        .build()
        .unwrap();
    agent.run("add two and 3").await.unwrap();
    let last = model.requests().pop().unwrap();
    let schema = action_schema(&last);
    assert!(schema.get("anyOf").is_some(), "tools still offered: {schema}");
}

/// A repair request is the run's own message, not a new turn: a required tool choice that the model
/// has met stays met, so a tool is not forced a second time.
#[tokio::test]
async fn a_repair_request_does_not_rearm_a_required_tool_choice() {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Total {
        total: i64,
    }
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .tool_call("add", serde_json::json!({"a": 2, "b": 3}))
        .text("five")
        .text(r#"{"total": 5}"#);
    let agent = Agent::builder(model.clone())
        .tool(adder())
        .tool_choice(kai_core::ToolChoice::Required)
        .build()
        .unwrap();
    assert_eq!(agent.extract::<Total>("add 2 and 3").await.unwrap().value.total, 5);
    let choices: Vec<_> = model
        .requests()
        .into_iter()
        .map(|request| request.tool_choice)
        .collect();
    assert_eq!(choices, [Some(kai_core::ToolChoice::Required), None, None]);
}
