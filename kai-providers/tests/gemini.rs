//! Gemini wire tests against a loopback server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use kai_core::{
    ChatModel, ChatRequest, ContentPart, EmbeddingModel, Error, Message, ResponseFormat, Role, StopReason, ToolCall,
    ToolChoice, ToolDefinition, ToolResult, collect_stream,
};
use kai_providers::{GeminiClient, GeminiConfig};
use serde_json::json;
use support::faults::{Wire, run_all};
use support::{FaultServer, Reply, fast_http};

fn client(base_url: &str) -> GeminiClient {
    let mut config = GeminiConfig::new("AIza-test");
    config.base_url = base_url.to_owned();
    config.http = fast_http();
    GeminiClient::new(config).unwrap()
}

fn base(server: &FaultServer) -> String {
    format!("http://{}/v1beta", server.addr)
}

fn reply(parts: serde_json::Value, finish: &str) -> serde_json::Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "cachedContentTokenCount": 2},
        "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"
    })
}

fn error_body(status: u16, message: &str) -> String {
    let (code, rpc, reason) = match status {
        401 => (400, "INVALID_ARGUMENT", "API_KEY_INVALID"),
        429 => (429, "RESOURCE_EXHAUSTED", ""),
        _ => (status, "INTERNAL", ""),
    };
    json!({"error": {"code": code, "message": message, "status": rpc,
                     "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]}})
    .to_string()
}

#[tokio::test]
async fn sends_the_documented_request() {
    let server = FaultServer::start(vec![Reply::json(200, reply(json!([{"text": "ok"}]), "STOP"))]).await;
    let call = ToolCall {
        signature: Some("sig-1".into()),
        ..ToolCall::new("fc-1", "weather", &json!({"city": "Paris"}))
    };
    let local = ToolCall::new("kai_gemini_1", "time", &json!({}));
    let request = ChatRequest::new(vec![
        Message::system("Be terse."),
        Message::new(
            Role::User,
            vec![
                ContentPart::text("Weather?"),
                ContentPart::image_bytes("image/png", vec![1, 2, 3]),
            ],
        ),
        Message::new(
            Role::Assistant,
            vec![
                ContentPart::ToolCall(call.clone()),
                ContentPart::ToolCall(local.clone()),
            ],
        ),
        Message::tool_result(ToolResult::success(&call, "{\"temp\": 15}")),
        Message::tool_result(ToolResult::error(&local, "clock broken")),
    ])
    .with_tools(vec![ToolDefinition {
        name: "weather".into(),
        description: "Weather".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }])
    .with_tool_choice(ToolChoice::Tool("weather".into()))
    .with_response_format(ResponseFormat::JsonSchema {
        name: "a".into(),
        schema: json!({"type": "object"}),
        strict: true,
    })
    .with_temperature(0.3)
    .with_max_tokens(50);
    client(&base(&server))
        .chat("gemini-2.5-flash")
        .complete(request)
        .await
        .unwrap();

    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.headers["x-goog-api-key"], "AIza-test");
    assert!(!sent.path.contains("key="), "the key never goes in the URL");
    assert_eq!(
        sent.json(),
        json!({
            "systemInstruction": {"parts": [{"text": "Be terse."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Weather?"}, {"inlineData": {"mimeType": "image/png", "data": "AQID"}}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}, "id": "fc-1"}, "thoughtSignature": "sig-1"},
                    {"functionCall": {"name": "time", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "weather", "response": {"output": {"temp": 15}}, "id": "fc-1"}},
                    {"functionResponse": {"name": "time", "response": {"error": "clock broken"}}}
                ]}
            ],
            "tools": [{"functionDeclarations": [{"name": "weather", "description": "Weather",
                       "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
            "generationConfig": {"temperature": 0.3, "maxOutputTokens": 50,
                                 "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}
        })
    );
}

#[tokio::test]
async fn function_calls_end_with_stop_but_mean_tool_calls() {
    let parts = json!([
        {"text": "thinking...", "thought": true},
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "sig-9"},
        {"functionCall": {"id": "abc", "name": "time", "args": {}}}
    ]);
    let server = FaultServer::start(vec![Reply::json(200, reply(parts, "STOP"))]).await;
    let response = client(&base(&server))
        .chat("gemini-2.5-flash")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.text(), "", "thoughts are not answer text");
    let calls: Vec<_> = response.tool_calls().cloned().collect();
    assert_eq!(calls[0].id, "kai_gemini_0");
    assert_eq!(calls[0].signature.as_deref(), Some("sig-9"));
    assert_eq!(calls[1].id, "abc");
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("STOP"));
    assert_eq!(response.usage.output_tokens, 12, "thinking tokens count as output");
    assert_eq!(response.usage.cached_input_tokens, 2);
}

fn stream_start() -> String {
    let first = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
                       "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1}, "responseId": "r1"});
    format!("data: {first}\r\n\r\n")
}

#[tokio::test]
async fn streams_whole_chunks_until_the_body_ends() {
    let second = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "lo"},
        {"functionCall": {"id": "f1", "name": "weather", "args": {"city": "Rome"}}, "thoughtSignature": "s"}
    ]}, "index": 0}]});
    let last = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                      "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 9}});
    let body = format!("{}data: {second}\r\n\r\ndata: {last}\r\n\r\n", stream_start());
    let server = FaultServer::start(vec![Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into_bytes(),
    }])
    .await;
    let model = client(&base(&server)).chat("gemini-2.5-flash");
    let response = collect_stream(Arc::new(model).stream(ChatRequest::new(vec![Message::user("hi")])))
        .await
        .unwrap();
    assert_eq!(response.text(), "Hello");
    let call = response.tool_calls().next().unwrap();
    assert_eq!(
        (call.id.as_str(), call.arguments.as_str(), call.signature.as_deref()),
        ("f1", "{\"city\":\"Rome\"}", Some("s"))
    );
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("STOP"));
    assert_eq!(response.usage.output_tokens, 9);
    assert_eq!(
        server.requests()[0].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
}

#[tokio::test]
async fn quota_errors_carry_the_retry_delay() {
    let body = json!({"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED",
                                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}});
    let server = FaultServer::start(vec![
        Reply::json(429, body.clone()),
        Reply::json(429, body.clone()),
        Reply::json(429, body),
    ])
    .await;
    let mut config = GeminiConfig::new("k");
    config.base_url = base(&server);
    config.http = kai_providers::HttpConfig {
        retry: kai_providers::RetryPolicy::none(),
        ..fast_http()
    };
    let error = GeminiClient::new(config)
        .unwrap()
        .chat("m")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(37)));
}

#[tokio::test]
async fn embeddings_are_batched_with_the_model_repeated() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        json!({"embeddings": [{"values": [1.0, 0.0]}, {"values": [0.0, 1.0]}]}),
    )])
    .await;
    let model = client(&base(&server))
        .embeddings("gemini-embedding-001", 2)
        .with_task_type("RETRIEVAL_DOCUMENT");
    let texts = vec!["a".to_owned(), "b".to_owned()];
    let embeddings = model.embed(&texts).await.unwrap();
    assert_eq!(embeddings.vectors[1], vec![0.0, 1.0]);
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert_eq!(
        sent.json()["requests"][0],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]},
               "outputDimensionality": 2, "taskType": "RETRIEVAL_DOCUMENT"})
    );
}

#[tokio::test]
async fn a_blocked_prompt_is_a_content_filter_stop() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        json!({"promptFeedback": {"blockReason": "SAFETY"}}),
    )])
    .await;
    let response = client(&base(&server))
        .chat("m")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.stop_reason, Some(StopReason::ContentFilter));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("SAFETY"));
}

#[tokio::test]
async fn an_invalid_key_is_an_authentication_error_despite_the_400() {
    let server = FaultServer::start(vec![Reply::status(
        400,
        &[],
        &error_body(401, "API key not valid. Please pass a valid API key."),
    )])
    .await;
    let error = client(&base(&server))
        .chat("m")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Authentication { .. }), "{error:?}");
}

#[tokio::test]
async fn survives_every_fault() {
    run_all(&Wire {
        model: |url| Arc::new(client(url).chat("gemini-2.5-flash")),
        base_url: base,
        ok: || Reply::json(200, reply(json!([{"text": "ok"}]), "STOP")),
        error_body,
        stream_start,
        stream_content_type: "text/event-stream",
    })
    .await;
}

/// Gemini takes a closed list of keywords: no `const` (a one-value `enum` instead), no integer formats,
/// no `$schema`; objects are not closed for it (it does not need that, and `{"type": "object"}` must
/// still mean any object).
#[tokio::test]
async fn a_structured_output_schema_is_sent_in_the_subset_gemini_takes() {
    let server = FaultServer::start(vec![Reply::json(200, reply(json!([{"text": "{}"}]), "STOP"))]).await;
    let request = ChatRequest::new(vec![Message::user("plan")]).with_response_format(ResponseFormat::JsonSchema {
        name: "trip".into(),
        schema: kai_core::schema_for::<support::Trip>(),
        strict: true,
    });
    client(&base(&server))
        .chat("gemini-2.5-flash")
        .complete(request)
        .await
        .unwrap();
    let sent = server.requests()[0].json();
    assert_eq!(
        sent["generationConfig"]["responseJsonSchema"],
        json!({
            "type": "object",
            "description": "A structured-output type with the shapes that trip providers' schema rules: an optional field, a\nlist, an enum, an unsigned integer and a nested struct.",
            "properties": {
                "destination": {"type": "string", "description": "Where to."},
                "nights": {"type": ["integer", "null"], "minimum": 0, "description": "Nights, if known."},
                "travellers": {"type": "array", "items": {"type": "string"}, "description": "Who travels."},
                "mode": {"description": "How.", "oneOf": [
                    {"enum": ["train"], "type": "string", "description": "By train."},
                    {"enum": ["plane"], "type": "string", "description": "By plane."}
                ]},
                "stay": {
                    "type": "object",
                    "description": "Where to stay.",
                    "properties": {
                        "hotel": {"type": "string", "description": "The hotel's name."},
                        "stars": {"type": "integer", "minimum": 0, "maximum": 255, "description": "Stars, 1 to 5."}
                    },
                    "required": ["hotel", "stars"]
                }
            },
            "required": ["destination", "travellers", "mode", "stay"]
        })
    );
}

/// Tool parameters go through the same rewrite, and a `$ref` with a description beside it is wrapped,
/// since Gemini allows only `$` keywords next to a reference.
#[tokio::test]
async fn tool_parameters_are_rewritten_and_references_stand_alone() {
    let server = FaultServer::start(vec![Reply::json(200, reply(json!([{"text": "ok"}]), "STOP"))]).await;
    let parameters = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "stay": {"$ref": "#/$defs/Stay", "description": "Where."},
            "tag": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8, "default": "x"},
            "level": {"enum": ["low", "high", true]},
            "mood": {"type": ["string", "null"], "enum": ["calm", null], "description": "Mood."},
            "any": {"type": "object"}
        },
        "$defs": {"Stay": {"type": "object", "properties": {"hotel": {"type": "string", "minLength": 1}}}}
    });
    let request = ChatRequest::new(vec![Message::user("go")]).with_tools(vec![ToolDefinition::new(
        "book",
        "Books a stay",
        parameters,
    )]);
    client(&base(&server))
        .chat("gemini-2.5-flash")
        .complete(request)
        .await
        .unwrap();
    let sent = server.requests()[0].json();
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
        json!({
            "type": "object",
            "properties": {
                "stay": {"anyOf": [{"$ref": "#/$defs/Stay"}], "description": "Where."},
                "tag": {"type": "string"},
                "level": {"enum": ["low", "high"]},
                "mood": {"anyOf": [{"type": "string", "enum": ["calm"], "description": "Mood."}, {"type": "null"}]},
                "any": {"type": "object"}
            },
            "$defs": {"Stay": {"type": "object", "properties": {"hotel": {"type": "string"}}}}
        })
    );
}

#[test]
fn gemini_models_claim_schemas_but_not_beside_functions_and_gemma_claims_neither() {
    let client = client("http://127.0.0.1:9/v1beta");
    for (model, tools, native) in [
        ("gemini-2.5-flash", true, true),
        ("models/gemini-3-pro-preview", true, true),
        ("gemini-2.0-flash", true, true),
        ("gemini-1.5-pro", true, false),
        ("gemma-3-27b-it", false, false),
    ] {
        let capabilities = client.chat(model).capabilities();
        assert_eq!(
            (capabilities.tools, capabilities.json_schema),
            (tools, native),
            "{model}"
        );
        assert!(!capabilities.json_schema_with_tools, "{model}");
    }
}
