use kai_core::testing::ScriptedModel;
use kai_core::{
    Agent, ChatModelExt, ChatRequest, Error, Message, OUTPUT_NAME, ResponseFormat, RunOptions, RunState, ToolChoice,
};
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

/// Some providers (Gemini, Cohere) constrain output to a schema but refuse a schema and tools in one
/// request: an agent with tools then answers through the forced tool call, one without through the
/// native format.
#[tokio::test]
async fn a_model_that_cannot_pair_a_schema_with_tools_answers_through_the_tool_when_tools_are_offered() {
    let schema_only = kai_core::ModelCapabilities {
        json_schema: true,
        json_schema_with_tools: false,
        ..kai_core::ModelCapabilities::ALL
    };
    let model = ScriptedModel::new()
        .capabilities(schema_only)
        .tool_call(OUTPUT_NAME, json!({"terms": [2, 3], "total": 5}))
        .text(r#"{"terms": [2, 3], "total": 5}"#);
    let with_tools = Agent::builder(model.clone()).tool(adder()).build().unwrap();
    with_tools.extract::<Sum>("add 2 and 3").await.unwrap();
    let without_tools = Agent::builder(model.clone()).build().unwrap();
    without_tools.extract::<Sum>("add 2 and 3").await.unwrap();

    let requests = model.requests();
    assert_eq!(requests[0].response_format, None);
    assert!(requests[0].tools.iter().any(|tool| tool.name == OUTPUT_NAME));
    assert!(matches!(
        requests[1].response_format,
        Some(ResponseFormat::JsonSchema { .. })
    ));
    assert!(requests[1].tools.is_empty());
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
    let clash = kai_core::tool_fn(OUTPUT_NAME, "x", |args: crate::support::Add| async move { Ok(args.a) });
    let agent = Agent::builder(ScriptedModel::new()).tool(clash).build().unwrap();
    let error = agent.extract::<Sum>("x").await.unwrap_err();
    assert!(matches!(error.error, Error::Config { .. }));
}

#[tokio::test]
async fn a_runtime_schema_drives_extraction_and_repair() {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
        "required": ["city", "population"],
        "additionalProperties": false,
    });
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text(r#"{"city": "Oslo", "population": -5}"#)
        .text("```json\n{\"city\": \"Oslo\", \"population\": 709000}\n```");
    let agent = Agent::builder(model.clone()).build().unwrap();
    let extracted = agent
        .extract_json("Largest city of Norway?", schema.clone())
        .await
        .unwrap();
    assert_eq!(extracted.value, json!({"city": "Oslo", "population": 709000}));
    let requests = model.requests();
    assert_eq!(
        requests[0].response_format,
        Some(ResponseFormat::JsonSchema {
            name: OUTPUT_NAME.into(),
            schema: schema.clone(),
            strict: true
        })
    );
    let repair = requests[1].messages.last().unwrap().text();
    assert!(repair.contains("/population"), "{repair}");

    // Straight from a model, without an agent.
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text(r#"{"city": "Bergen", "population": 291000}"#);
    let request = ChatRequest::new(vec![Message::user("Second city?")]);
    let extracted = model.extract_json(request, schema).await.unwrap();
    assert_eq!(extracted.value["city"], "Bergen");
}

#[tokio::test]
async fn a_callers_check_repairs_answers_through_the_output_tool_and_is_bounded() {
    let schema = json!({
        "type": "object",
        "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}},
        "required": ["start", "end"],
    });
    let ordered = |value: &serde_json::Value| {
        if value["start"].as_i64() < value["end"].as_i64() {
            Ok(())
        } else {
            Err("start must come before end".to_owned())
        }
    };
    let model = ScriptedModel::new()
        .tool_call(OUTPUT_NAME, json!({"start": 9, "end": 5}))
        .tool_call(OUTPUT_NAME, json!({"start": 5, "end": 9}));
    let agent = Agent::builder(model.clone()).build().unwrap();
    let state = RunState::new("A range?");
    let extracted = agent
        .resume_extract_json_checked(state, schema.clone(), ordered, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(extracted.value, json!({"start": 5, "end": 9}));
    let repair = model.requests()[1].messages.last().unwrap().clone();
    assert!(
        format!("{repair:?}").contains("start must come before end"),
        "{repair:?}"
    );

    // An answer the check never accepts ends the run after the allowed repairs.
    let model = ScriptedModel::new()
        .tool_call(OUTPUT_NAME, json!({"start": 9, "end": 5}))
        .repeat();
    let agent = Agent::builder(model).max_repairs(1).build().unwrap();
    let error = agent
        .resume_extract_json_checked(RunState::new("A range?"), schema, ordered, RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error.error, Error::InvalidOutput { attempts: 2, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_runtime_schema_that_is_not_one_fails_before_the_model_is_called() {
    let model = ScriptedModel::new().text("{}");
    let agent = Agent::builder(model.clone()).build().unwrap();
    let error = agent
        .extract_json("hi", json!({"type": "object", "required": "city"}))
        .await
        .unwrap_err();
    assert!(matches!(error.error, Error::Config { .. }), "{error}");
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn a_run_error_round_trips_through_json_and_resumes() {
    let model = ScriptedModel::new().fail(Error::RateLimited {
        message: "slow down".into(),
        retry_after: Some(std::time::Duration::from_millis(250)),
    });
    let agent = Agent::builder(model).build().unwrap();
    let error = agent.run("hi").await.unwrap_err();
    let json = serde_json::to_value(&error).unwrap();
    assert_eq!(json["error"]["kind"], "rate_limited");
    assert_eq!(json["error"]["retry_after_ms"], 250);
    assert_eq!(json["state"]["version"], kai_core::RunState::FORMAT_VERSION);
    let back: kai_core::RunError = serde_json::from_value(json).unwrap();
    assert_eq!(back, error);
    assert!(back.is_retryable());
    assert_eq!(back.kind(), "rate_limited");
}

#[tokio::test]
async fn nulls_for_optional_fields_from_a_strict_provider_fit_a_runtime_schema() {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "nickname": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": false,
    });
    let model = ScriptedModel::new()
        .json_schema_support(true)
        .text(r#"{"city": "Oslo", "nickname": null}"#);
    let agent = Agent::builder(model).build().unwrap();
    let extracted = agent.extract_json("?", schema).await.unwrap();
    assert_eq!(extracted.value, json!({"city": "Oslo"}));
    assert_eq!(extracted.output.steps, 1);
}

/// A structured-output run that stops for an approval resumes as one: the pending `final_result` call
/// is still the answer, not an unknown tool.
#[tokio::test]
async fn a_structured_output_run_resumes_after_an_approval() {
    let build = |model: ScriptedModel| {
        Agent::builder(model)
            .tool(adder())
            .needs_approval("add", "sums are audited")
            .build()
            .unwrap()
    };
    let agent = build(ScriptedModel::new().tool_call("add", json!({"a": 40, "b": 2})));
    let error = agent.extract::<Sum>("40 + 2?").await.unwrap_err();
    assert!(matches!(error.error, Error::ApprovalRequired { .. }));
    let mut state = *error.state;
    state.approve_all();
    let agent = build(ScriptedModel::new().tool_call(OUTPUT_NAME, json!({"terms": [40, 2], "total": 42})));
    let answer = agent
        .resume_extract::<Sum>(state, kai_core::RunOptions::default())
        .await
        .unwrap();
    assert_eq!(answer.value.total, 42);
}

/// A crash after a structured answer given through the output tool was checkpointed: resuming gives
/// that answer, without another model call.
#[tokio::test]
async fn resuming_a_finished_tool_mode_extraction_gives_its_answer_again() {
    let agent = Agent::builder(ScriptedModel::new().tool_call(OUTPUT_NAME, json!({"terms": [1, 2], "total": 3})))
        .build()
        .unwrap();
    let done = agent.extract::<Sum>("1 + 2?").await.unwrap();
    let state = kai_core::RunState {
        messages: done.output.messages.clone(),
        steps: done.output.steps,
        ..kai_core::RunState::new("")
    };
    let idle = Agent::builder(ScriptedModel::new()).build().unwrap();
    let again = idle
        .resume_extract::<Sum>(state, kai_core::RunOptions::default())
        .await
        .unwrap();
    assert_eq!(again.value, done.value);
}
