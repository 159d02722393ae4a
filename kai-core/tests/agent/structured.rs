use kai_core::testing::ScriptedModel;
use kai_core::{Agent, ChatModelExt, ChatRequest, Error, Message, OUTPUT_NAME, ResponseFormat, ToolChoice};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::support::adder;

#[derive(Debug, PartialEq, Deserialize, JsonSchema)]
struct Sum {
    /// The operands.
    terms: Vec<i64>,
    /// Their sum.
    total: i64,
}

#[tokio::test]
async fn without_a_json_schema_format_a_forced_tool_call_carries_the_answer() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 2, "b": 3}))
        .tool_call(OUTPUT_NAME, json!({"terms": [2, 3], "total": "five"}))
        .tool_call(OUTPUT_NAME, json!({"terms": [2, 3], "total": 5}));
    let agent = Agent::builder(model.clone()).tool(adder()).build().unwrap();

    let extracted = agent.extract::<Sum>("add 2 and 3").await.unwrap();

    assert_eq!(
        extracted.value,
        Sum {
            terms: vec![2, 3],
            total: 5
        }
    );
    assert_eq!(extracted.output.steps, 3);
    let requests = model.requests();
    let offered: Vec<_> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(offered, ["add", OUTPUT_NAME]);
    assert_eq!(requests[0].tool_choice, Some(ToolChoice::Required));
    assert_eq!(
        requests[0].tools[1].parameters["properties"]["total"]["type"],
        "integer"
    );
    // The invalid answer went back as a tool error naming the problem.
    let repair = requests[2]
        .messages
        .last()
        .unwrap()
        .tool_results()
        .next()
        .unwrap()
        .clone();
    assert!(repair.is_error);
    assert!(repair.content.contains("invalid type"), "{}", repair.content);
}

#[tokio::test]
async fn with_a_json_schema_format_the_text_answer_is_validated_and_repaired() {
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text("The total is 5.")
        .text("```json\n{\"terms\": [2, 3], \"total\": 5}\n```");
    let agent = Agent::builder(model.clone()).build().unwrap();

    let extracted = agent.extract::<Sum>("add 2 and 3").await.unwrap();

    assert_eq!(extracted.value.total, 5);
    let requests = model.requests();
    assert!(matches!(
        &requests[0].response_format,
        Some(ResponseFormat::JsonSchema { name, strict: true, .. }) if name == OUTPUT_NAME
    ));
    let feedback = requests[1].messages.last().unwrap().text();
    assert!(feedback.starts_with("Your answer is not valid"), "{feedback}");
}

#[tokio::test]
async fn repairs_are_bounded() {
    let model = ScriptedModel::new().json_schema_support(true).text("nope").repeat();
    let agent = Agent::builder(model.clone()).max_repairs(2).build().unwrap();
    let error = agent.extract::<Sum>("add").await.unwrap_err();
    assert!(
        matches!(error.error, Error::InvalidOutput { attempts: 3, .. }),
        "{:?}",
        error.error
    );
    assert_eq!(model.requests().len(), 3);
}

#[tokio::test]
async fn tool_mode_repairs_are_bounded_too() {
    let model = ScriptedModel::new()
        .tool_call(OUTPUT_NAME, json!({"total": 1}))
        .repeat();
    let agent = Agent::builder(model.clone()).max_repairs(1).build().unwrap();
    let error = agent.extract::<Sum>("add").await.unwrap_err();
    assert!(
        matches!(error.error, Error::InvalidOutput { attempts: 2, .. }),
        "{:?}",
        error.error
    );
    // The transcript is complete: every call has its result.
    assert!(error.state.pending_tool_calls.is_empty());
}

#[tokio::test]
async fn model_level_extract_uses_the_request_as_given() {
    let model = ScriptedModel::new().tool_call(OUTPUT_NAME, json!({"terms": [1], "total": 1}));
    let request =
        ChatRequest::new(vec![Message::system("Be exact."), Message::user("sum of [1]")]).with_temperature(0.1);
    let extracted = model.extract::<Sum>(request).await.unwrap();
    assert_eq!(extracted.value.total, 1);
    let sent = &model.requests()[0];
    assert_eq!(sent.messages[0].text(), "Be exact.");
    assert_eq!(sent.temperature, Some(0.1));
}

#[tokio::test]
async fn a_user_tool_named_like_the_output_tool_is_a_config_error() {
    let clash = kai_core::tool_fn(OUTPUT_NAME, "x", |args: crate::support::Add| async move {
        Ok::<_, kai_core::ToolError>(args.a)
    });
    let agent = Agent::builder(ScriptedModel::new()).tool(clash).build().unwrap();
    let error = agent.extract::<Sum>("x").await.unwrap_err();
    assert!(matches!(error.error, Error::Config { .. }));
}
