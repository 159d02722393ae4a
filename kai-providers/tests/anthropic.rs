//! Anthropic wire tests against a loopback server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;

use kai_core::{
    ChatDelta, ChatModel, ChatRequest, ContentPart, Error, Message, ResponseFormat, Role, StopReason, ToolCall,
    ToolChoice, ToolDefinition, ToolResult, collect_stream,
};
use kai_providers::{AnthropicClient, AnthropicConfig};
use serde_json::json;
use support::faults::{Wire, run_all};
use support::{FaultServer, Reply, fast_http};

fn model(base_url: &str) -> AnthropicClient {
    let mut config = AnthropicConfig::new("sk-ant-test");
    config.base_url = base_url.to_owned();
    config.http = fast_http();
    AnthropicClient::new(config).unwrap()
}

fn message(content: serde_json::Value, stop: &str) -> serde_json::Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5}
    })
}

fn error_body(status: u16, message: &str) -> String {
    let kind = match status {
        401 => "authentication_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400 => "invalid_request_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}).to_string()
}

#[tokio::test]
async fn sends_the_documented_request() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        message(json!([{"type": "text", "text": "ok"}]), "end_turn"),
    )])
    .await;
    let call = ToolCall::new("toolu_1", "weather", &json!({"city": "Paris"}));
    let request = ChatRequest::new(vec![
        Message::system("Be terse."),
        Message::new(
            Role::User,
            vec![
                ContentPart::text("Weather?"),
                ContentPart::image_url("data:image/png;base64,AQID"),
            ],
        ),
        Message::new(
            Role::Assistant,
            vec![ContentPart::text("Checking."), ContentPart::ToolCall(call.clone())],
        ),
        Message::tool_result(ToolResult::error(&call, "service down")),
        Message::user("Try again?"),
    ])
    .with_tools(vec![ToolDefinition {
        name: "weather".into(),
        description: "Weather".into(),
        parameters: json!({"type": "object"}),
    }])
    .with_tool_choice(ToolChoice::Required)
    .with_response_format(ResponseFormat::JsonSchema {
        name: "a".into(),
        schema: json!({"type": "object"}),
        strict: true,
    })
    .with_temperature(0.2)
    .with_stop("END");
    model(&server.url())
        .chat("claude-sonnet-4-5")
        .complete(request)
        .await
        .unwrap();

    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "sk-ant-test");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        sent.json(),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "Be terse.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AQID"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "service down", "is_error": true},
                    {"type": "text", "text": "Try again?"}
                ]}
            ],
            "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "additionalProperties": false}}},
            "temperature": 0.2,
            "stop_sequences": ["END"]
        })
    );
}

#[tokio::test]
async fn parses_tool_use_and_counts_cached_tokens_as_input() {
    let content = json!([
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Oslo"}},
        {"type": "thinking", "thinking": "hidden", "signature": "x"}
    ]);
    let server = FaultServer::start(vec![Reply::json(200, message(content, "tool_use"))]).await;
    let response = model(&server.url())
        .chat("claude-sonnet-4-5")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.text(), "Let me check.");
    let call = response.tool_calls().next().unwrap();
    assert_eq!(
        (call.id.as_str(), call.arguments.as_str()),
        ("toolu_2", "{\"city\":\"Oslo\"}")
    );
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(response.usage.input_tokens, 135);
    assert_eq!(response.usage.cached_input_tokens, 30);
    assert_eq!(response.usage.output_tokens, 20);
}

fn sse(events: &[(&str, serde_json::Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

fn stream_start() -> String {
    sse(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                   "content": [], "stop_reason": null, "usage": {"input_tokens": 377, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "I'll check."}}),
        ),
    ])
}

#[tokio::test]
async fn streams_the_documented_event_sequence() {
    let rest = sse(&[
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_3", "name": "weather", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"locati"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "on\": \"Paris\"}"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 65}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]);
    let body = format!("{}{rest}", stream_start());
    let server = FaultServer::start(vec![Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into_bytes(),
    }])
    .await;
    let model = model(&server.url()).chat("claude-sonnet-4-5");
    let response = collect_stream(Arc::new(model.clone()).stream(ChatRequest::new(vec![Message::user("hi")])))
        .await
        .unwrap();
    assert_eq!(response.text(), "I'll check.");
    let call = response.tool_calls().next().unwrap();
    assert_eq!((call.id.as_str(), call.name.as_str()), ("toolu_3", "weather"));
    assert_eq!(call.arguments, "{\"location\": \"Paris\"}");
    assert_eq!(response.usage.input_tokens, 377);
    assert_eq!(response.usage.output_tokens, 65);
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(server.requests()[0].json()["stream"], json!(true));
}

#[tokio::test]
async fn an_error_event_mid_stream_is_typed() {
    let body = format!(
        "{}{}",
        stream_start(),
        sse(&[(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        )])
    );
    let server = FaultServer::start(vec![Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into_bytes(),
    }])
    .await;
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(
        Arc::new(model(&server.url()).chat("m")).stream(ChatRequest::new(vec![Message::user("hi")])),
    )
    .await;
    assert!(matches!(items.last(), Some(Err(Error::Server { message, .. })) if message == "Overloaded"));
    assert!(items.iter().any(|i| matches!(i, Ok(ChatDelta::Text { .. }))));
}

#[tokio::test]
async fn errors_map_by_type() {
    let too_long = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 215432 tokens > 200000 maximum"}});
    let billing = json!({"type": "error", "error": {"type": "billing_error", "message": "credit balance too low"}});
    let server = FaultServer::start(vec![Reply::json(400, too_long), Reply::json(402, billing)]).await;
    let model = model(&server.url()).chat("m");
    let error = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ContextTooLong { .. }), "{error:?}");
    let error = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PermissionDenied { .. }), "{error:?}");
}

#[tokio::test]
async fn survives_every_fault() {
    run_all(&Wire {
        model: |url| Arc::new(model(url).chat("claude-sonnet-4-5")),
        base_url: FaultServer::url,
        ok: || Reply::json(200, message(json!([{"type": "text", "text": "ok"}]), "end_turn")),
        error_body,
        stream_start,
        stream_content_type: "text/event-stream",
    })
    .await;
}

#[tokio::test]
async fn a_structured_output_schema_is_sent_without_the_keywords_anthropic_refuses() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
               "content": [{"type": "text", "text": "{}"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 1, "output_tokens": 1}}),
    )])
    .await;
    let request =
        ChatRequest::new(vec![Message::user("plan")]).with_response_format(kai_core::ResponseFormat::JsonSchema {
            name: "trip".into(),
            schema: kai_core::schema_for::<support::Trip>(),
            strict: true,
        });
    model(&server.url())
        .chat("claude-sonnet-4-5")
        .complete(request)
        .await
        .unwrap();
    let sent = server.requests()[0].json();
    assert_eq!(
        sent["output_config"]["format"]["schema"],
        json!({
            "type": "object",
            "description": "A structured-output type with the shapes that trip providers' schema rules: an optional field, a\nlist, an enum, an unsigned integer and a nested struct.",
            "properties": {
                "destination": {"type": "string", "description": "Where to."},
                "nights": {"type": ["integer", "null"], "description": "Nights, if known."},
                "travellers": {"type": "array", "items": {"type": "string"}, "description": "Who travels."},
                "mode": {"description": "How.", "anyOf": [
                    {"const": "train", "type": "string", "description": "By train."},
                    {"const": "plane", "type": "string", "description": "By plane."}
                ]},
                "stay": {
                    "type": "object",
                    "description": "Where to stay.",
                    "properties": {
                        "hotel": {"type": "string", "description": "The hotel's name."},
                        "stars": {"type": "integer", "description": "Stars, 1 to 5."}
                    },
                    "required": ["hotel", "stars"],
                    "additionalProperties": false
                }
            },
            "required": ["destination", "travellers", "mode", "stay"],
            "additionalProperties": false
        })
    );
}

#[test]
fn only_models_with_structured_outputs_claim_them() {
    let client = AnthropicClient::new(AnthropicConfig::new("k")).unwrap();
    for (model, native) in [
        ("claude-sonnet-4-5", true),
        ("claude-opus-4-1", true),
        ("claude-haiku-4-5-20251001", true),
        ("claude-3-5-haiku-latest", false),
        ("claude-sonnet-4-20250514", false),
    ] {
        assert_eq!(client.chat(model).capabilities().json_schema, native, "{model}");
    }
}

/// Extended thinking with tools: the thinking block and its signature must come back unchanged, before
/// the tool call, on the next turn.
#[tokio::test]
async fn thinking_blocks_round_trip_with_their_signatures_streamed_or_not() {
    let answer = json!({"id": "msg_t", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "The user wants Paris weather.", "signature": "sig-abc=="},
            {"type": "redacted_thinking", "data": "ENCRYPTED"},
            {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 20}});
    let stream = sse(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_t", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The user wants "}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris weather."}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig-abc=="}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "ENCRYPTED"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Paris\"}"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 2})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]);
    let ok = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Sunny."}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}});
    let server = FaultServer::start(vec![
        Reply::json(200, answer),
        Reply::Http {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: stream.into_bytes(),
        },
        Reply::json(200, ok.clone()),
        Reply::json(200, ok),
    ])
    .await;
    let model = model(&server.url()).chat("claude-sonnet-4-5");
    let complete = model
        .complete(ChatRequest::new(vec![Message::user("Weather in Paris?")]))
        .await
        .unwrap();
    let streamed =
        collect_stream(Arc::new(model.clone()).stream(ChatRequest::new(vec![Message::user("Weather in Paris?")])))
            .await
            .unwrap();
    for (turn, response) in [complete, streamed].into_iter().enumerate() {
        assert_eq!(
            response.message.content[..2],
            [
                ContentPart::Reasoning {
                    text: "The user wants Paris weather.".into(),
                    signature: Some("sig-abc==".into())
                },
                ContentPart::RedactedReasoning {
                    data: "ENCRYPTED".into()
                },
            ]
        );
        let call = response.tool_calls().next().unwrap().clone();
        let next = ChatRequest::new(vec![
            Message::user("Weather in Paris?"),
            response.message,
            Message::tool_result(ToolResult::success(&call, "sunny")),
        ]);
        model.complete(next).await.unwrap();
        let sent = server.requests()[2 + turn].json();
        assert_eq!(
            sent["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "The user wants Paris weather.", "signature": "sig-abc=="},
                {"type": "redacted_thinking", "data": "ENCRYPTED"},
                {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Paris"}}
            ]),
            "turn {turn}"
        );
    }
}
