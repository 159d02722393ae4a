//! The accept loop kAI's HTTP servers share (MCP over HTTP, A2A): HTTP/1.1 on a TCP listener, a
//! bounded number of connections, a time limit on each request's headers, and a shutdown token.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::CancellationToken;

/// How long a connection has to send each request's headers (and how long an idle one is kept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `service` on `listener` until `shutdown` is cancelled: at most `max_connections`
/// connections at once (more wait to be accepted), each with [`HEADER_READ_TIMEOUT`]; `what` names
/// the server in debug logs.
pub async fn serve_http1<S, B>(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    max_connections: usize,
    service: S,
    what: &'static str,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, or a connection that failed before it was accepted: wait a
                // little rather than spin.
                Err(error) => {
                    tracing::debug!(server = what, %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(server = what, %error, "a connection ended badly");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
}
