//! OpenAI wire tests against a loopback server: the exact request, every documented response shape,
//! and every fault we could think of. None may panic or hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kai_core::{
    ChatDelta, ChatModel, ChatRequest, ContentPart, EmbeddingModel, Error, Message, ResponseFormat, Role, StopReason,
    ToolCall, ToolChoice, ToolDefinition, ToolResult, collect_stream,
};
use kai_providers::{Flavor, HttpConfig, OpenAiClient, OpenAiConfig, RetryPolicy};
use serde_json::json;
use support::{FaultServer, Reply, fast_http};

fn openai(server: &FaultServer) -> kai_providers::OpenAiChat {
    let mut config = OpenAiConfig::openai("sk-test-key").with_http(fast_http());
    config.base_url = server.url();
    config.organization = Some("org-1".into());
    config.project = Some("proj-1".into());
    OpenAiClient::new(config).unwrap().chat("gpt-4o-mini")
}

fn completion(message: serde_json::Value, finish: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                   "prompt_tokens_details": {"cached_tokens": 4}}
    })
}

fn full_request() -> ChatRequest {
    let call = ToolCall::new("call_a", "weather", &json!({"city": "Oslo"}));
    ChatRequest::new(vec![
        Message::system("Be brief."),
        Message::new(
            Role::User,
            vec![
                ContentPart::text("Weather here?"),
                ContentPart::image_bytes("image/png", vec![1, 2, 3]),
            ],
        ),
        Message::new(Role::Assistant, vec![ContentPart::ToolCall(call.clone())]),
        Message::tool_result(ToolResult::success(&call, "sunny")),
    ])
    .with_tools(vec![ToolDefinition {
        name: "weather".into(),
        description: "Weather in a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }])
    .with_tool_choice(ToolChoice::Tool("weather".into()))
    .with_response_format(ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object"}),
        strict: true,
    })
    .with_temperature(0.5)
    .with_max_tokens(100)
    .with_stop("END")
    .with_extra("seed", json!(7))
}

#[tokio::test]
async fn sends_exactly_the_documented_request() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        completion(json!({"role": "assistant", "content": "ok"}), "stop"),
    )])
    .await;
    openai(&server).complete(full_request()).await.unwrap();

    let sent = &server.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], "Bearer sk-test-key");
    assert_eq!(sent.headers["openai-organization"], "org-1");
    assert_eq!(sent.headers["openai-project"], "proj-1");
    assert_eq!(sent.headers["content-type"], "application/json");
    assert_eq!(
        sent.json(),
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AQID"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
            }}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {}, "required": [], "additionalProperties": false}, "strict": true}},
            "temperature": 0.5,
            "max_completion_tokens": 100,
            "stop": ["END"],
            "seed": 7
        })
    );
}

#[tokio::test]
async fn compatible_servers_get_max_tokens_and_no_key() {
    let server = FaultServer::start(vec![Reply::json(200, completion(json!({"content": "ok"}), "stop"))]).await;
    let config = OpenAiConfig::compatible(server.url(), Flavor::Vllm).with_http(fast_http());
    let model = OpenAiClient::new(config).unwrap().chat("qwen");
    model
        .complete(ChatRequest::new(vec![Message::user("hi")]).with_max_tokens(9))
        .await
        .unwrap();
    let sent = &server.requests()[0];
    assert!(!sent.headers.contains_key("authorization"));
    let body = sent.json();
    assert_eq!(body["max_tokens"], 9);
    assert!(body.get("max_completion_tokens").is_none());
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
}

#[tokio::test]
async fn parses_text_and_tool_call_responses() {
    let server = FaultServer::start(vec![
        Reply::json(
            200,
            completion(json!({"role": "assistant", "content": "Hello"}), "stop"),
        ),
        Reply::json(
            200,
            completion(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{}"}}
                ]}),
                "tool_calls",
            ),
        ),
    ])
    .await;
    let model = openai(&server);
    let text = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(text.text(), "Hello");
    assert_eq!(text.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(text.provider_stop_reason.as_deref(), Some("stop"));
    assert_eq!(text.usage.input_tokens, 12);
    assert_eq!(text.usage.cached_input_tokens, 4);
    assert_eq!(text.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));

    let calls = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    let calls: Vec<_> = calls.tool_calls().cloned().collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (
            calls[0].id.as_str(),
            calls[0].name.as_str(),
            calls[0].arguments.as_str()
        ),
        ("call_1", "a", "{\"x\":1}")
    );
}

#[tokio::test]
async fn streams_text_tool_call_fragments_and_usage() {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let payloads = [
        chunk(json!({"role": "assistant", "content": ""}), json!(null)),
        chunk(json!({"content": "Checking"}), json!(null)),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_x", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
            json!(null),
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            json!(null),
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}),
            json!(null),
        ),
        chunk(json!({}), json!("tool_calls")),
        json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9}}).to_string(),
        "[DONE]".to_owned(),
    ];
    let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let server = FaultServer::start(vec![Reply::sse(&payloads)]).await;
    // The stream owns its model: it outlives every other handle and runs on another task.
    let stream = Arc::new(openai(&server)).stream(ChatRequest::new(vec![Message::user("hi")]));
    let response = tokio::spawn(collect_stream(stream)).await.unwrap().unwrap();
    assert_eq!(response.text(), "Checking");
    let call = response.tool_calls().next().unwrap();
    assert_eq!(
        (call.id.as_str(), call.name.as_str(), call.arguments.as_str()),
        ("call_x", "weather", "{\"city\":\"Oslo\"}")
    );
    assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("tool_calls"));
    assert_eq!(response.usage.input_tokens, 30);
    assert_eq!(
        server.requests()[0].json()["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(server.requests()[0].json()["stream"], json!(true));
}

#[tokio::test]
async fn unauthorized_is_an_authentication_error_without_retry() {
    // Some servers echo the key they were given; it must not reach the error, which callers log.
    let body = json!({"error": {"message": "Incorrect API key provided: sk-test-key", "type": "invalid_request_error", "code": "invalid_api_key"}});
    let server = FaultServer::start(vec![Reply::json(401, body)]).await;
    let error = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::Authentication {
            message: "Incorrect API key provided: ***".into()
        }
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn context_too_long_is_recognised() {
    let body = json!({"error": {"message": "This model's maximum context length is 128000 tokens.", "code": "context_length_exceeded"}});
    let server = FaultServer::start(vec![Reply::json(400, body)]).await;
    let error = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ContextTooLong { .. }), "{error:?}");
}

#[tokio::test]
async fn rate_limits_honour_retry_after_then_succeed() {
    let body = json!({"error": {"message": "Rate limit reached", "type": "requests"}});
    let server = FaultServer::start(vec![
        Reply::Http {
            status: 429,
            headers: vec![("retry-after".into(), "1".into())],
            body: body.to_string().into_bytes(),
        },
        Reply::json(200, completion(json!({"content": "ok"}), "stop")),
    ])
    .await;
    let started = Instant::now();
    let response = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.text(), "ok");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn rate_limits_that_persist_are_typed_errors_with_the_wait() {
    let limited = || {
        Reply::status(
            429,
            &[("retry-after-ms", "20")],
            "{\"error\": {\"message\": \"slow down\"}}",
        )
    };
    let server = FaultServer::start(vec![limited(), limited(), limited()]).await;
    let error = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(20))
        }
    );
    assert_eq!(server.requests().len(), 3, "first attempt and two retries");
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = FaultServer::start(vec![
        Reply::status(500, &[], "internal"),
        Reply::status(503, &[], "{\"error\": \"overloaded\"}"),
        Reply::json(200, completion(json!({"content": "ok"}), "stop")),
    ])
    .await;
    let response = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.text(), "ok");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    let server = FaultServer::start(vec![Reply::json(
        404,
        json!({"error": {"message": "The model `x` does not exist"}}),
    )])
    .await;
    let error = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidRequest { ref message } if message.contains("does not exist")),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn connection_resets_are_retried() {
    let server = FaultServer::start(vec![
        Reply::Reset,
        Reply::json(200, completion(json!({"content": "ok"}), "stop")),
    ])
    .await;
    let response = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.text(), "ok");

    let server = FaultServer::start(vec![Reply::Reset, Reply::Reset, Reply::Reset]).await;
    let error = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
}

#[tokio::test]
async fn a_stream_cut_mid_event_is_an_error_and_is_not_retried() {
    let first = json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]});
    let body = format!("data: {first}\n\ndata: {{\"id\": \"c\", \"choices\": [{{\"delta\": {{\"content\": \"lo");
    let server = FaultServer::start(vec![
        Reply::cut("text/event-stream", &body),
        Reply::json(200, completion(json!({"content": "should not be fetched"}), "stop")),
    ])
    .await;
    let items: Vec<_> = Arc::new(openai(&server))
        .stream(ChatRequest::new(vec![Message::user("hi")]))
        .collect()
        .await;
    assert_eq!(
        items[0].as_ref().unwrap(),
        &ChatDelta::Metadata {
            id: Some("c".into()),
            model: None
        }
    );
    assert_eq!(items[1].as_ref().unwrap(), &ChatDelta::text("Hel"));
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(last, Error::Transport { message } if message.contains("ended before")),
        "{last:?}"
    );
    assert_eq!(server.requests().len(), 1, "a stream that started is never retried");
}

#[tokio::test]
async fn malformed_json_and_empty_bodies_are_typed_errors() {
    let server = FaultServer::start(vec![
        Reply::status(200, &[("content-type", "application/json")], "{\"choices\": [ garbage"),
        Reply::status(200, &[], ""),
        Reply::json(200, json!({"id": "x", "choices": []})),
    ])
    .await;
    let model = openai(&server);
    for _ in 0..3 {
        let error = model
            .complete(ChatRequest::new(vec![Message::user("hi")]))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::MalformedResponse { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn garbage_in_a_stream_is_a_typed_error() {
    let server = FaultServer::start(vec![Reply::sse(&["{not json", "[DONE]"])]).await;
    let items: Vec<_> = Arc::new(openai(&server))
        .stream(ChatRequest::new(vec![Message::user("hi")]))
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(Error::MalformedResponse { .. })));
}

#[tokio::test]
async fn an_error_event_in_a_stream_is_a_server_error() {
    let server = FaultServer::start(vec![Reply::sse(&["{\"error\": {\"message\": \"model overloaded\"}}"])]).await;
    let items: Vec<_> = Arc::new(openai(&server))
        .stream(ChatRequest::new(vec![Message::user("hi")]))
        .collect()
        .await;
    assert!(matches!(&items[0], Err(Error::Server { message, .. }) if message == "model overloaded"));
}

#[tokio::test]
async fn a_ten_megabyte_body_neither_panics_nor_hangs() {
    let huge = format!(
        "{{\"choices\": [{{\"message\": {{\"content\": \"{}\"}}}}]}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let server = FaultServer::start(vec![
        Reply::status(200, &[("content-type", "application/json")], &huge),
        Reply::status(200, &[("content-type", "application/json")], &huge),
    ])
    .await;
    let response = openai(&server)
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(response.text().len(), 10 * 1024 * 1024);

    let mut config = OpenAiConfig::openai("k").with_http(HttpConfig {
        max_body_bytes: 1024 * 1024,
        ..fast_http()
    });
    config.base_url = server.url();
    let bounded = OpenAiClient::new(config).unwrap().chat("m");
    let error = bounded
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    let Error::MalformedResponse { message, snippet } = error else {
        panic!("expected a malformed response")
    };
    assert!(message.contains("larger than"));
    assert!(snippet.len() <= 256);
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let server = FaultServer::start(vec![Reply::Hang]).await;
    let mut config = OpenAiConfig::openai("k").with_http(HttpConfig {
        timeout: Some(Duration::from_millis(200)),
        retry: RetryPolicy::none(),
        ..HttpConfig::default()
    });
    config.base_url = server.url();
    let model = OpenAiClient::new(config).unwrap().chat("m");
    let started = Instant::now();
    let error = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error, Error::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_stream_that_goes_silent_hits_the_idle_timeout() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n".to_vec();
    let first = b"data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}]}\n\n".to_vec();
    let server = FaultServer::start(vec![Reply::Raw(vec![
        (head, Duration::ZERO),
        (first, Duration::ZERO),
        (Vec::new(), Duration::from_secs(30)),
    ])])
    .await;
    let mut config = OpenAiConfig::openai("k").with_http(HttpConfig {
        stream_idle_timeout: Some(Duration::from_millis(200)),
        ..fast_http()
    });
    config.base_url = server.url();
    let model = OpenAiClient::new(config).unwrap().chat("m");
    let started = Instant::now();
    let items: Vec<_> = Arc::new(model)
        .stream(ChatRequest::new(vec![Message::user("hi")]))
        .collect()
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(items.last().unwrap(), Err(Error::Transport { message }) if message.contains("silent")));
}

#[tokio::test]
async fn lenient_with_compatible_servers_quirks() {
    // No ids, arguments as an object, no usage, no index in stream fragments.
    let server = FaultServer::start(vec![
        Reply::json(
            200,
            json!({"choices": [{"message": {"content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}, "finish_reason": "tool_calls"}]}),
        ),
        Reply::sse(&[
            "{\"choices\": [{\"delta\": {\"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"{\\\"a\\\"\"}}]}}]}",
            "{\"choices\": [{\"delta\": {\"tool_calls\": [{\"function\": {\"arguments\": \": 1}\"}}]}}]}",
            "{\"choices\": [{\"delta\": {}, \"finish_reason\": \"tool_calls\"}]}",
        ]),
    ])
    .await;
    let config = OpenAiConfig::compatible(server.url(), Flavor::Generic).with_http(fast_http());
    let model = OpenAiClient::new(config).unwrap().chat("m");
    let response = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    let call = response.tool_calls().next().unwrap();
    assert_eq!((call.id.as_str(), call.arguments.as_str()), ("call_0", "{\"a\":1}"));
    assert_eq!(response.usage.total_tokens(), 0);

    let streamed = collect_stream(Arc::new(model.clone()).stream(ChatRequest::new(vec![Message::user("hi")])))
        .await
        .unwrap();
    let call = streamed.tool_calls().next().unwrap();
    assert_eq!(
        (call.id.as_str(), call.name.as_str(), call.arguments.as_str()),
        ("call_0", "f", "{\"a\": 1}")
    );
}

#[tokio::test]
async fn embeddings_are_ordered_and_checked() {
    let server = FaultServer::start(vec![
        Reply::json(
            200,
            json!({"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}], "usage": {"prompt_tokens": 4}}),
        ),
        Reply::json(200, json!({"data": [{"index": 0, "embedding": [1.0]}]})),
    ])
    .await;
    let mut config = OpenAiConfig::openai("k").with_http(fast_http());
    config.base_url = server.url();
    let model = OpenAiClient::new(config)
        .unwrap()
        .embeddings("text-embedding-3-small", 2);
    let texts = vec!["a".to_owned(), "b".to_owned()];
    let embeddings = model.embed(&texts).await.unwrap();
    assert_eq!(embeddings.vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    assert_eq!(embeddings.usage.input_tokens, 4);
    assert_eq!(
        server.requests()[0].json(),
        json!({"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float", "dimensions": 2})
    );
    let error = model.embed(&texts[..1]).await.unwrap_err();
    assert!(matches!(error, Error::MalformedResponse { .. }));
}

#[tokio::test]
async fn a_stream_arriving_in_pieces_over_time_is_read_whole() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n".to_vec();
    let event = |text: &str| {
        format!("data: {{\"id\": \"c\", \"choices\": [{{\"index\": 0, \"delta\": {{\"content\": \"{text}\"}}}}]}}\n\n")
    };
    let mut pieces = vec![(head, Duration::ZERO)];
    for text in ["one", " two", " three"] {
        let bytes = event(text).into_bytes();
        let (a, b) = bytes.split_at(7);
        pieces.push((a.to_vec(), Duration::from_millis(20)));
        pieces.push((b.to_vec(), Duration::from_millis(20)));
    }
    pieces.push((
        b": ping\n\ndata: {\"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}]}\n\n".to_vec(),
        Duration::from_millis(20),
    ));
    pieces.push((b"data: [DONE]\n\n".to_vec(), Duration::from_millis(20)));
    let server = FaultServer::start(vec![Reply::Raw(pieces)]).await;
    let response = collect_stream(Arc::new(openai(&server)).stream(ChatRequest::new(vec![Message::user("hi")])))
        .await
        .unwrap();
    assert_eq!(response.text(), "one two three");
    assert_eq!(response.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(response.provider_stop_reason.as_deref(), Some("stop"));
}

#[test]
fn keys_never_show_in_debug_output() {
    let key = "sk-live-very-secret";
    let mut config = OpenAiConfig::openai(key);
    config.base_url = "http://127.0.0.1:9/v1".into();
    let client = OpenAiClient::new(config.clone()).unwrap();
    for text in [
        format!("{config:?}"),
        format!("{client:?}"),
        format!("{:?}", client.chat("m")),
    ] {
        assert!(!text.contains(key), "{text}");
    }
    let anthropic = kai_providers::AnthropicClient::new(kai_providers::AnthropicConfig::new(key)).unwrap();
    let gemini = kai_providers::GeminiClient::new(kai_providers::GeminiConfig::new(key)).unwrap();
    let cohere = kai_providers::CohereClient::new(kai_providers::CohereConfig::new(key)).unwrap();
    for text in [format!("{anthropic:?}"), format!("{gemini:?}"), format!("{cohere:?}")] {
        assert!(!text.contains(key), "{text}");
    }
}

#[tokio::test]
async fn an_error_body_that_stalls_after_the_headers_times_out() {
    let head = b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"error\"".to_vec();
    let server = FaultServer::start(vec![Reply::Raw(vec![
        (head, Duration::ZERO),
        (Vec::new(), Duration::from_secs(30)),
    ])])
    .await;
    let mut config = OpenAiConfig::openai("k").with_http(HttpConfig {
        timeout: Some(Duration::from_millis(300)),
        retry: RetryPolicy::none(),
        ..HttpConfig::default()
    });
    config.base_url = server.url();
    let model = OpenAiClient::new(config).unwrap().chat("m");
    let started = Instant::now();
    let error = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(error, Error::Server { status: Some(500), .. }), "{error:?}");
}

#[tokio::test]
async fn a_stream_that_never_ends_stops_at_the_size_limit() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n".to_vec();
    let event = b"data: {\"choices\": [{\"delta\": {\"content\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}]}\n\n".to_vec();
    let mut parts = vec![(head, Duration::ZERO)];
    parts.extend(std::iter::repeat_n((event, Duration::ZERO), 2000));
    let server = FaultServer::start(vec![Reply::Raw(parts)]).await;
    let mut config = OpenAiConfig::openai("k").with_http(HttpConfig {
        max_body_bytes: 16 * 1024,
        ..fast_http()
    });
    config.base_url = server.url();
    let model = OpenAiClient::new(config).unwrap().chat("m");
    let items: Vec<_> = Arc::new(model)
        .stream(ChatRequest::new(vec![Message::user("hi")]))
        .collect()
        .await;
    assert!(items.len() < 400, "{}", items.len());
    assert!(
        matches!(items.last().unwrap(), Err(Error::MalformedResponse { message, .. }) if message.contains("larger than")),
        "{:?}",
        items.last()
    );
}

#[tokio::test]
async fn a_retry_after_too_long_to_represent_is_an_error_not_a_panic() {
    let server = FaultServer::start(vec![Reply::status(
        429,
        &[("retry-after-ms", "1e23")],
        r#"{"error": {"message": "slow down"}}"#,
    )])
    .await;
    let mut config = OpenAiConfig::openai("k").with_http(fast_http());
    config.base_url = server.url();
    let model = OpenAiClient::new(config).unwrap().chat("m");
    let error = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::MAX));
    assert_eq!(
        server.remaining(),
        0,
        "not retried: the wait is longer than the policy allows"
    );
}

#[tokio::test]
async fn a_structured_output_schema_is_sent_in_strict_mode_form() {
    let server = FaultServer::start(vec![Reply::json(200, completion(json!({"content": "{}"}), "stop"))]).await;
    let request =
        ChatRequest::new(vec![Message::user("plan")]).with_response_format(kai_core::ResponseFormat::JsonSchema {
            name: "trip".into(),
            schema: kai_core::schema_for::<support::Trip>(),
            strict: true,
        });
    openai(&server).complete(request).await.unwrap();
    let sent = server.requests()[0].json();
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        json!({
            "type": "object",
            "description": "A structured-output type with the shapes that trip providers' schema rules: an optional field, a\nlist, an enum, an unsigned integer and a nested struct.",
            "properties": {
                "destination": {"type": "string", "description": "Where to."},
                "nights": {"type": ["integer", "null"], "minimum": 0, "description": "Nights, if known."},
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
                        "stars": {"type": "integer", "minimum": 0, "maximum": 255, "description": "Stars, 1 to 5."}
                    },
                    "required": ["hotel", "stars"],
                    "additionalProperties": false
                }
            },
            "required": ["destination", "mode", "nights", "stay", "travellers"],
            "additionalProperties": false
        })
    );
}

/// A map (keys of the model's choosing) cannot be expressed in strict mode; closing it would make every
/// answer an empty map, so the schema goes as a hint, with `strict: false`.
#[tokio::test]
async fn a_schema_with_a_map_is_sent_as_a_hint() {
    let server = FaultServer::start(vec![Reply::json(200, completion(json!({"content": "{}"}), "stop"))]).await;
    let schema = kai_core::schema_for::<std::collections::HashMap<String, u32>>();
    let request =
        ChatRequest::new(vec![Message::user("count")]).with_response_format(kai_core::ResponseFormat::JsonSchema {
            name: "counts".into(),
            schema: schema.clone(),
            strict: true,
        });
    openai(&server).complete(request).await.unwrap();
    let sent = server.requests()[0].json();
    assert_eq!(sent["response_format"]["json_schema"]["strict"], false);
    assert_eq!(sent["response_format"]["json_schema"]["schema"], schema);
}

#[test]
fn only_models_with_structured_outputs_claim_them() {
    let client = OpenAiClient::new(OpenAiConfig::openai("k")).unwrap();
    for (model, native) in [
        ("gpt-4o-mini", true),
        ("gpt-5", true),
        ("o3", true),
        ("gpt-4.1", true),
        ("gpt-4", false),
        ("gpt-4-turbo", false),
        ("gpt-3.5-turbo", false),
    ] {
        assert_eq!(client.chat(model).capabilities().json_schema, native, "{model}");
    }
}

#[tokio::test]
async fn a_refusal_is_the_answer_text_and_stops_as_a_refusal_streamed_or_not() {
    let server = FaultServer::start(vec![
        Reply::json(
            200,
            completion(json!({"content": null, "refusal": "I can't help with that."}), "stop"),
        ),
        Reply::sse(&[
            r#"{"choices": [{"index": 0, "delta": {"role": "assistant", "refusal": ""}}]}"#,
            r#"{"choices": [{"index": 0, "delta": {"refusal": "I can't "}}]}"#,
            r#"{"choices": [{"index": 0, "delta": {"refusal": "help with that."}}]}"#,
            r#"{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}"#,
            "[DONE]",
        ]),
    ])
    .await;
    let model = openai(&server);
    let complete = model
        .complete(ChatRequest::new(vec![Message::user("?")]))
        .await
        .unwrap();
    let streamed = kai_core::collect_stream(Arc::new(model.clone()).stream(ChatRequest::new(vec![Message::user("?")])))
        .await
        .unwrap();
    for response in [complete, streamed] {
        assert_eq!(response.text(), "I can't help with that.");
        assert_eq!(response.stop_reason, Some(kai_core::StopReason::Refusal));
    }
}

#[tokio::test]
async fn models_that_refuse_dimensions_are_not_sent_it() {
    let server = FaultServer::start(vec![Reply::json(
        200,
        json!({"data": [{"index": 0, "embedding": [0.5, 0.5]}]}),
    )])
    .await;
    let mut config = OpenAiConfig::openai("k").with_http(fast_http());
    config.base_url = server.url();
    let model = OpenAiClient::new(config)
        .unwrap()
        .embeddings("text-embedding-ada-002", 2);
    model.embed(&["a".to_owned()]).await.unwrap();
    assert!(server.requests()[0].json().get("dimensions").is_none());
}

#[tokio::test]
async fn llama_cpp_gets_the_schema_in_its_grammar_form() {
    let server = FaultServer::start(vec![Reply::json(200, completion(json!({"content": "{}"}), "stop"))]).await;
    let config = OpenAiConfig::compatible(server.url(), Flavor::LlamaCpp).with_http(fast_http());
    let model = OpenAiClient::new(config).unwrap().chat("smollm2");
    assert!(model.capabilities().json_schema);
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
    let request = ChatRequest::new(vec![Message::user("a?")]).with_response_format(ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: schema.clone(),
        strict: true,
    });
    model.complete(request).await.unwrap();
    assert_eq!(
        server.requests()[0].json()["response_format"],
        json!({"type": "json_object", "schema": schema})
    );
}

/// Under a model's own chat template llama.cpp returns the call as text (Qwen's `<tool_call>` form);
/// it is read as a call when it names an offered tool, streamed or not, and left as text when the tool
/// choice did not allow it (`none`, or another tool forced).
#[tokio::test]
async fn llama_cpp_tool_calls_written_as_text_are_read_as_calls() {
    let written = json!({"content": "<tool_call>\n{\"name\": \"calculate\", \"arguments\": {\"expression\": \"17 * 23\"}}\n</tool_call>"});
    let server = FaultServer::start(vec![
        Reply::json(200, completion(written.clone(), "stop")),
        Reply::json(200, completion(written.clone(), "stop")),
        Reply::json(200, completion(written.clone(), "stop")),
        Reply::json(200, completion(written, "stop")),
    ])
    .await;
    let config = OpenAiConfig::compatible(server.url(), Flavor::LlamaCpp).with_http(fast_http());
    let model = OpenAiClient::new(config).unwrap().chat("qwen");
    let tools = vec![
        kai_core::ToolDefinition::new("calculate", "Arithmetic.", json!({"type": "object"})),
        kai_core::ToolDefinition::new("list_files", "Lists files.", json!({"type": "object"})),
    ];
    let request = ChatRequest::new(vec![Message::user("17 * 23?")]).with_tools(tools);
    let complete = model.complete(request.clone()).await.unwrap();
    let streamed = collect_stream(Arc::new(model.clone()).stream(request.clone()))
        .await
        .unwrap();
    for response in [complete, streamed] {
        let call = response.tool_calls().next().expect("read as a call");
        assert_eq!(
            (call.name.as_str(), call.arguments.as_str()),
            ("calculate", r#"{"expression":"17 * 23"}"#)
        );
        assert_eq!(response.text(), "");
        assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
    }
    for choice in [ToolChoice::None, ToolChoice::Tool("list_files".into())] {
        let refused = model.complete(request.clone().with_tool_choice(choice)).await.unwrap();
        assert!(refused.tool_calls().next().is_none(), "only calls the request allowed");
        assert!(refused.text().contains("<tool_call>"));
    }
}

#[tokio::test]
async fn a_model_without_tools_refuses_them_before_sending() {
    let server = FaultServer::start(vec![]).await;
    let config = OpenAiConfig::compatible(server.url(), Flavor::Generic)
        .without_tools()
        .with_http(fast_http());
    let model = OpenAiClient::new(config).unwrap().chat("tiny");
    assert!(!model.capabilities().tools);
    let request = ChatRequest::new(vec![Message::user("hi")]).with_tools(vec![kai_core::ToolDefinition::new(
        "t",
        "T.",
        json!({"type": "object"}),
    )]);
    let error = model.complete(request).await.unwrap_err();
    assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
    assert!(server.requests().is_empty());
}
