//! Ollama native API wire tests against a loopback server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;

use futures::StreamExt as _;
use kai_core::{
    ChatModel, ChatRequest, ContentPart, EmbeddingModel, Error, Message, ResponseFormat, Role, StopReason, ToolCall,
    ToolDefinition, ToolResult, collect_stream,
};
use kai_providers::{OllamaClient, OllamaConfig};
use serde_json::json;
use support::faults::{Wire, run_all};
use support::{FaultServer, Reply, fast_http};

fn client(base_url: &str) -> OllamaClient {
    let mut config = OllamaConfig::new(base_url);
    config.http = fast_http();
    OllamaClient::new(config).unwrap()
}

fn base(server: &FaultServer) -> String {
    format!("http://{}", server.addr)
}

fn done(message: serde_json::Value, reason: &str) -> serde_json::Value {
    json!({"model": "llama3.2", "created_at": "2025-07-07T20:22:19Z", "message": message, "done": true,
           "done_reason": reason, "prompt_eval_count": 169, "eval_count": 15})
}

fn error_body(_status: u16, message: &str) -> String {
    json!({"error": message}).to_string()
}

#[tokio::test]
async fn sends_the_documented_request() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        done(json!({"role": "assistant", "content": "ok"}), "stop"),
    )])
    .await;
    let call = ToolCall::new("call_1", "weather", &json!({"city": "Toronto"}));
    let request = ChatRequest::new(vec![
        Message::system("Be terse."),
        Message::new(
            Role::User,
            vec![
                ContentPart::text("What is this?"),
                ContentPart::image_bytes("image/png", vec![1, 2, 3]),
            ],
        ),
        Message::new(Role::Assistant, vec![ContentPart::ToolCall(call.clone())]),
        Message::tool_result(ToolResult::success(&call, "11 degrees")),
    ])
    .with_tools(vec![ToolDefinition {
        name: "weather".into(),
        description: "Weather".into(),
        parameters: json!({"type": "object"}),
    }])
    .with_response_format(ResponseFormat::JsonSchema {
        name: "a".into(),
        schema: json!({"type": "object"}),
        strict: true,
    })
    .with_temperature(0.25)
    .with_max_tokens(64)
    .with_stop("END")
    .with_extra("keep_alive", json!("5m"))
    .with_extra("options", json!({"num_ctx": 8192}));
    client(&base(&server)).chat("llama3.2").complete(request).await.unwrap();
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/api/chat");
    assert_eq!(
        sent.json(),
        json!({
            "model": "llama3.2",
            "stream": false,
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "What is this?", "images": ["AQID"]},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "function": {"name": "weather", "arguments": {"city": "Toronto"}}}]},
                {"role": "tool", "content": "11 degrees", "tool_name": "weather", "tool_call_id": "call_1"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object"}}}],
            "format": {"type": "object"},
            "options": {"temperature": 0.25, "num_predict": 64, "stop": ["END"], "num_ctx": 8192},
            "keep_alive": "5m"
        })
    );
}

#[tokio::test]
async fn tool_calls_without_ids_and_with_stop_are_tool_calls() {
    let message = json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Tokyo"}}}]});
    let server = FaultServer::start(vec![Reply::json(200, done(message, "stop"))]).await;
    let response = client(&base(&server))
        .chat("llama3.2")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    let call = response.tool_calls().next().unwrap();
    assert_eq!(
        (call.id.as_str(), call.arguments.as_str()),
        ("call_0", "{\"city\":\"Tokyo\"}")
    );
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("stop"));
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (169, 15));
}

fn stream_start() -> String {
    let line = json!({"model": "llama3.2", "created_at": "t", "message": {"role": "assistant", "content": "The"}, "done": false});
    format!("{line}\n")
}

#[tokio::test]
async fn streams_ndjson_lines() {
    let call = json!({"model": "llama3.2", "message": {"role": "assistant", "content": "", "tool_calls": [{"id": "call_x", "function": {"index": 0, "name": "weather", "arguments": {"city": "Tokyo"}}}]}, "done": false});
    let last = done(json!({"role": "assistant", "content": ""}), "stop");
    let body = format!(
        "{}{{\"model\":\"llama3.2\",\"message\":{{\"role\":\"assistant\",\"content\":\" sky\"}},\"done\":false}}\n{call}\n{last}\n",
        stream_start()
    );
    let server = FaultServer::start(vec![Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "application/x-ndjson".into())],
        body: body.into_bytes(),
    }])
    .await;
    let response = collect_stream(
        Arc::new(client(&base(&server)).chat("llama3.2")).stream(ChatRequest::new(vec![Message::user("hi")])),
    )
    .await
    .unwrap();
    assert_eq!(response.text(), "The sky");
    assert_eq!(response.tool_calls().next().unwrap().id, "call_x");
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("stop"));
    assert_eq!(response.usage.output_tokens, 15);
}

#[tokio::test]
async fn an_error_line_under_200_is_an_error() {
    let body = format!(
        "{}{{\"error\":\"an error was encountered while running the model\"}}\n",
        stream_start()
    );
    let server = FaultServer::start(vec![Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "application/x-ndjson".into())],
        body: body.into_bytes(),
    }])
    .await;
    let items: Vec<_> = Arc::new(client(&base(&server)).chat("m"))
        .stream(ChatRequest::new(vec![Message::user("hi")]))
        .collect()
        .await;
    assert!(matches!(items.last(), Some(Err(Error::Server { message, .. })) if message.contains("running the model")));
}

#[tokio::test]
async fn a_missing_model_is_an_invalid_request() {
    let server = FaultServer::start(vec![Reply::status(
        404,
        &[],
        &error_body(404, "model \"foo\" not found, try pulling it first"),
    )])
    .await;
    let error = client(&base(&server))
        .chat("foo")
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidRequest { ref message } if message.contains("not found")),
        "{error:?}"
    );
}

#[tokio::test]
async fn embed_reads_embeddings() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        json!({"model": "all-minilm", "embeddings": [[0.1, 0.2], [0.3, 0.4]], "prompt_eval_count": 8}),
    )])
    .await;
    let model = client(&base(&server)).embeddings("all-minilm", 2);
    let embeddings = model.embed(&["a".to_owned(), "b".to_owned()]).await.unwrap();
    assert_eq!(embeddings.vectors.len(), 2);
    assert_eq!(embeddings.usage.input_tokens, 8);
    assert_eq!(
        server.requests()[0].json(),
        json!({"model": "all-minilm", "input": ["a", "b"]})
    );
}

#[tokio::test]
async fn survives_every_fault() {
    run_all(&Wire {
        model: |url| Arc::new(client(url).chat("llama3.2")),
        base_url: base,
        ok: || Reply::json(200, done(json!({"role": "assistant", "content": "ok"}), "stop")),
        error_body,
        stream_start,
        stream_content_type: "application/x-ndjson",
    })
    .await;
}
