//! The fault cases every provider must survive, run against each provider's wire format.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kai_core::{ChatDelta, ChatModel, ChatRequest, Error, Message, collect_stream};

use super::{FaultServer, Reply};

/// What a provider's fault suite needs to know about its wire format.
pub struct Wire {
    /// Makes a model talking to the server at this base URL (fast retries, short timeouts).
    pub model: fn(&str) -> Arc<dyn ChatModel>,
    /// The base URL to give it, for a server at this address.
    pub base_url: fn(&FaultServer) -> String,
    /// A valid non-streaming response answering "ok".
    pub ok: fn() -> Reply,
    /// A body for the error status, in the provider's error shape.
    pub error_body: fn(u16, &str) -> String,
    /// The start of a valid stream (at least one complete text event), with no end marker.
    pub stream_start: fn() -> String,
    /// A streamed response's content type.
    pub stream_content_type: &'static str,
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![Message::user("hi")])
}

async fn model_for(wire: &Wire, replies: Vec<Reply>) -> (FaultServer, Arc<dyn ChatModel>) {
    let server = FaultServer::start(replies).await;
    let model = (wire.model)(&(wire.base_url)(&server));
    (server, model)
}

/// Runs every case; panics with the case's name on the first failure.
pub async fn run_all(wire: &Wire) {
    unauthorized(wire).await;
    rate_limited_then_ok(wire).await;
    server_error_then_ok(wire).await;
    reset_then_ok(wire).await;
    cut_stream(wire).await;
    malformed_and_empty(wire).await;
    huge_body(wire).await;
}

async fn unauthorized(wire: &Wire) {
    let (server, model) = model_for(
        wire,
        vec![Reply::status(401, &[], &(wire.error_body)(401, "invalid key"))],
    )
    .await;
    let error = model.complete(request()).await.unwrap_err();
    assert!(matches!(error, Error::Authentication { .. }), "401: {error:?}");
    assert_eq!(server.requests().len(), 1, "401 is not retried");
}

async fn rate_limited_then_ok(wire: &Wire) {
    let limited = Reply::status(429, &[("retry-after", "1")], &(wire.error_body)(429, "slow down"));
    let (server, model) = model_for(wire, vec![limited, (wire.ok)()]).await;
    let started = Instant::now();
    let response = model.complete(request()).await.unwrap();
    assert_eq!(response.text(), "ok");
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After honoured");
    assert_eq!(server.requests().len(), 2);
}

async fn server_error_then_ok(wire: &Wire) {
    let failing = Reply::status(500, &[], &(wire.error_body)(500, "internal"));
    let (server, model) = model_for(wire, vec![failing, (wire.ok)()]).await;
    assert_eq!(model.complete(request()).await.unwrap().text(), "ok");
    assert_eq!(server.requests().len(), 2);
}

async fn reset_then_ok(wire: &Wire) {
    let (_server, model) = model_for(wire, vec![Reply::Reset, (wire.ok)()]).await;
    assert_eq!(model.complete(request()).await.unwrap().text(), "ok");
}

async fn cut_stream(wire: &Wire) {
    let body = format!("{}data: {{\"partial", (wire.stream_start)());
    let (server, model) = model_for(wire, vec![Reply::cut(wire.stream_content_type, &body), (wire.ok)()]).await;
    let items: Vec<_> = Arc::clone(&model).stream(request()).collect().await;
    assert!(
        items.iter().any(|item| matches!(item, Ok(ChatDelta::Text { .. }))),
        "the text before the cut arrived: {items:?}"
    );
    assert!(
        matches!(
            items.last(),
            Some(Err(Error::Transport { .. } | Error::MalformedResponse { .. }))
        ),
        "cut stream: {items:?}"
    );
    assert_eq!(server.requests().len(), 1, "a started stream is never retried");
    let collected = collect_stream(futures::stream::iter(items)).await;
    assert!(collected.is_err());
}

async fn malformed_and_empty(wire: &Wire) {
    let garbage = Reply::status(200, &[("content-type", "application/json")], "{\"not\": [valid");
    let empty = Reply::status(200, &[], "");
    let (_server, model) = model_for(wire, vec![garbage, empty]).await;
    for case in ["garbage", "empty"] {
        let error = model.complete(request()).await.unwrap_err();
        assert!(matches!(error, Error::MalformedResponse { .. }), "{case}: {error:?}");
    }
}

async fn huge_body(wire: &Wire) {
    let huge = format!("{{\"padding\": \"{}\"", "x".repeat(10 * 1024 * 1024));
    let (_server, model) = model_for(
        wire,
        vec![Reply::status(200, &[("content-type", "application/json")], &huge)],
    )
    .await;
    let started = Instant::now();
    let error = model.complete(request()).await.unwrap_err();
    let Error::MalformedResponse { snippet, .. } = error else {
        panic!("10 MB of garbage: {error:?}")
    };
    assert!(snippet.len() <= 256);
    assert!(started.elapsed() < Duration::from_secs(20));
}
