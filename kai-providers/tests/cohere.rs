//! Cohere v2 wire tests against a loopback server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;

use kai_core::{
    ChatModel, ChatRequest, ContentPart, EmbeddingModel, Message, Role, StopReason, ToolCall, ToolChoice,
    ToolDefinition, ToolResult, collect_stream,
};
use kai_providers::{CohereClient, CohereConfig};
use serde_json::json;
use support::faults::{Wire, run_all};
use support::{FaultServer, Reply, fast_http};

fn client(base_url: &str) -> CohereClient {
    let mut config = CohereConfig::new("co-test");
    config.base_url = base_url.to_owned();
    config.http = fast_http();
    CohereClient::new(config).unwrap()
}

fn base(server: &FaultServer) -> String {
    format!("http://{}/v2", server.addr)
}

fn reply(message: serde_json::Value, finish: &str) -> serde_json::Value {
    json!({"id": "c1", "finish_reason": finish, "message": message,
           "usage": {"billed_units": {"input_tokens": 50, "output_tokens": 26}, "tokens": {"input_tokens": 793, "output_tokens": 61}, "cached_tokens": 176}})
}

fn error_body(_status: u16, message: &str) -> String {
    json!({"message": message}).to_string()
}

fn tool(name: &str) -> ToolDefinition {
    ToolDefinition {
        name: name.into(),
        description: "d".into(),
        parameters: json!({"type": "object"}),
    }
}

#[tokio::test]
async fn sends_the_documented_request() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        reply(
            json!({"role": "assistant", "content": [{"type": "text", "text": "ok"}]}),
            "COMPLETE",
        ),
    )])
    .await;
    let call = ToolCall::new("get_weather_1", "weather", &json!({"city": "Madrid"}));
    let request = ChatRequest::new(vec![
        Message::system("Be terse."),
        Message::user("Weather in Madrid?"),
        Message::new(
            Role::Assistant,
            vec![
                ContentPart::text("I will look it up."),
                ContentPart::ToolCall(call.clone()),
            ],
        ),
        Message::tool_result(ToolResult::success(&call, "24C")),
    ])
    .with_tools(vec![tool("weather"), tool("time")])
    .with_tool_choice(ToolChoice::Tool("weather".into()))
    .with_max_tokens(100);
    client(&base(&server))
        .chat("command-a-03-2025")
        .complete(request)
        .await
        .unwrap();
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(sent.headers["authorization"], "Bearer co-test");
    assert_eq!(
        sent.json(),
        json!({
            "model": "command-a-03-2025",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Weather in Madrid?"},
                {"role": "assistant", "tool_plan": "I will look it up.", "tool_calls": [
                    {"id": "get_weather_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Madrid\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "get_weather_1", "content": "24C"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "REQUIRED",
            "max_tokens": 100
        })
    );
}

#[tokio::test]
async fn parses_tool_calls_and_usage() {
    let message = json!({"role": "assistant", "tool_plan": "Looking up.", "tool_calls": [
        {"id": "get_weather_3v76", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Madrid\"}"}}
    ]});
    let server = FaultServer::start(vec![Reply::json(200, reply(message, "TOOL_CALL"))]).await;
    let response = client(&base(&server))
        .chat("m")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.text(), "Looking up.");
    assert_eq!(response.tool_calls().next().unwrap().id, "get_weather_3v76");
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("TOOL_CALL"));
    assert_eq!(
        (
            response.usage.input_tokens,
            response.usage.output_tokens,
            response.usage.cached_input_tokens
        ),
        (793, 61, 176)
    );
}

fn stream_start() -> String {
    [
        ("message-start", json!({"id": "5c1f", "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": []}}})),
        ("content-start", json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})),
        ("content-delta", json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hola"}}}})),
    ]
    .iter()
    .map(|(event, data)| format!("event: {event}\ndata: {data}\n\n"))
    .collect()
}

#[tokio::test]
async fn streams_text_and_tool_calls() {
    let rest: String = [
        ("content-end", json!({"type": "content-end", "index": 0})),
        ("tool-plan-delta", json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": " amigo"}}})),
        ("tool-call-start", json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {"id": "db_1", "type": "function", "function": {"name": "db", "arguments": ""}}}}})),
        ("tool-call-delta", json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{\"q\":"}}}}})),
        ("tool-call-delta", json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": " 1}"}}}}})),
        ("tool-call-end", json!({"type": "tool-call-end", "index": 0})),
        ("message-end", json!({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 2}, "tokens": {"input_tokens": 70, "output_tokens": 9}}}})),
    ]
    .iter()
    .map(|(event, data)| format!("event: {event}\ndata: {data}\n\n"))
    .collect();
    let body = format!("{}{rest}data: [DONE]\n\n", stream_start());
    let server = FaultServer::start(vec![Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into_bytes(),
    }])
    .await;
    let response =
        collect_stream(Arc::new(client(&base(&server)).chat("m")).stream(ChatRequest::new(vec![Message::user("hi")])))
            .await
            .unwrap();
    assert_eq!(response.text(), "Hola amigo");
    let call = response.tool_calls().next().unwrap();
    assert_eq!(
        (call.id.as_str(), call.name.as_str(), call.arguments.as_str()),
        ("db_1", "db", "{\"q\": 1}")
    );
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("TOOL_CALL"));
    assert_eq!(response.usage.input_tokens, 70);
}

#[tokio::test]
async fn embed_sends_input_type_and_reads_floats() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        json!({"id": "e", "embeddings": {"float": [[0.5, 0.5]]}, "meta": {"billed_units": {"input_tokens": 3}}}),
    )])
    .await;
    let model = client(&base(&server))
        .embeddings("embed-v4.0", 2)
        .with_input_type("search_query");
    let embeddings = model.embed(&["hello".to_owned()]).await.unwrap();
    assert_eq!(embeddings.vectors, vec![vec![0.5, 0.5]]);
    assert_eq!(embeddings.usage.input_tokens, 3);
    assert_eq!(
        server.requests()[0].json(),
        json!({"model": "embed-v4.0", "texts": ["hello"], "input_type": "search_query", "embedding_types": ["float"]})
    );
}

#[tokio::test]
async fn survives_every_fault() {
    run_all(&Wire {
        model: |url| Arc::new(client(url).chat("command-a-03-2025")),
        base_url: base,
        ok: || {
            Reply::json(
                200,
                reply(
                    json!({"role": "assistant", "content": [{"type": "text", "text": "ok"}]}),
                    "COMPLETE",
                ),
            )
        },
        error_body,
        stream_start,
        stream_content_type: "text/event-stream",
    })
    .await;
}

/// Cohere's schema rules: `oneOf` as `anyOf`, no numeric limits, only four formats; objects are not
/// closed for it, and the schema goes under `json_schema` (the v2 name; v1 called it `schema`).
#[tokio::test]
async fn a_structured_output_schema_is_sent_in_the_subset_cohere_takes() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        reply(
            json!({"role": "assistant", "content": [{"type": "text", "text": "{}"}]}),
            "COMPLETE",
        ),
    )])
    .await;
    let request =
        ChatRequest::new(vec![Message::user("plan")]).with_response_format(kai_core::ResponseFormat::JsonSchema {
            name: "trip".into(),
            schema: kai_core::schema_for::<support::Trip>(),
            strict: true,
        });
    client(&base(&server))
        .chat("command-a-03-2025")
        .complete(request)
        .await
        .unwrap();
    let sent = server.requests()[0].json();
    assert_eq!(sent["response_format"]["type"], "json_object");
    assert_eq!(
        sent["response_format"]["json_schema"],
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
                    "required": ["hotel", "stars"]
                }
            },
            "required": ["destination", "travellers", "mode", "stay"]
        })
    );
}

#[test]
fn only_models_with_structured_outputs_claim_them_and_never_beside_tools() {
    let client = client("http://127.0.0.1:9/v2");
    for (model, native) in [
        ("command-a-03-2025", true),
        ("command-a-reasoning-08-2025", true),
        ("command-r-plus-08-2024", true),
        ("command-r-08-2024", true),
        ("command-r", true),
        ("command-r7b-12-2024", false),
        ("command-light", false),
        ("c4ai-aya-expanse-32b", false),
    ] {
        let capabilities = client.chat(model).capabilities();
        assert_eq!(capabilities.json_schema, native, "{model}");
        assert!(!capabilities.json_schema_with_tools, "{model}");
    }
}
