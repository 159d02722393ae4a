//! The HTTP client under MCP's Streamable HTTP transport: reqwest with rustls, and recovery of
//! sessions that servers forget without saying so as the specification asks.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcError, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};

use crate::error::Error;

/// What rmcp's event streams carry.
type Sse = Result<sse_stream::Sse, SseError>;

/// reqwest as rmcp's Streamable HTTP client, except that an error without a request id, answering
/// a request sent in a session, means the session expired.
///
/// The specification has a server answer 404 to a session it no longer knows, and rmcp then starts
/// a new session and sends the request again. Servers built on the TypeScript SDK's Express
/// example (the reference server among them) answer 400 with a JSON-RPC error whose id is missing
/// instead; rmcp can match that error to no request, which would wait until it times out.
#[derive(Clone)]
pub(crate) struct HttpClient(reqwest::Client);

impl HttpClient {
    /// A client whose TLS is rustls on ring with the webpki roots, leaving the process's default
    /// crypto provider alone.
    pub(crate) fn new() -> Result<Self, Error> {
        let tls = crate::tls::client_config("MCP over HTTP")?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // As rmcp's own client: a pooled connection whose last body was not read stalls.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|error| Error::Config {
                message: format!("the HTTP client for MCP: {error}"),
            })?;
        Ok(Self(client))
    }
}

impl StreamableHttpClient for HttpClient {
    type Error = reqwest::Error;

    fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>>> + Send + '_ {
        let limits = StreamableHttpResponseLimits::default();
        self.post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
    }

    fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> impl Future<Output = Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>>> + Send + '_ {
        let is_request_in_session = matches!(message, ClientJsonRpcMessage::Request(_)) && session_id.is_some();
        let response =
            self.0
                .post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits);
        async move {
            match response.await.map_err(without_url)? {
                StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Error(error), _)
                    if is_request_in_session && ends_session(&error) =>
                {
                    tracing::debug!(target: "kai_core::mcp", error = %error.error.message, "an id-less error in a session: starting a new one");
                    Err(StreamableHttpError::SessionExpired)
                }
                response => Ok(response),
            }
        }
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<Self::Error>>> + Send + '_ {
        let deleted = self.0.delete_session(uri, session_id, auth_header, custom_headers);
        async move { deleted.await.map_err(without_url) }
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<BoxStream<'static, Sse>, StreamableHttpError<Self::Error>>> + Send + '_ {
        self.0
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<BoxStream<'static, Sse>, StreamableHttpError<Self::Error>>> + Send + '_ {
        let stream = self.0.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        );
        async move { stream.await.map_err(without_url) }
    }
}

/// Whether `error`, answering a request made in a session, says the server no longer knows the
/// session: it names no request (it could answer none) and speaks of the session. A parse error or
/// a proxy's refusal without an id is not taken for one.
fn ends_session(error: &JsonRpcError) -> bool {
    error.id.is_none() && error.error.message.to_lowercase().contains("session")
}

/// `error` without the URL reqwest puts in its message, which may hold a credential (a query key).
fn without_url(error: StreamableHttpError<reqwest::Error>) -> StreamableHttpError<reqwest::Error> {
    match error {
        StreamableHttpError::Client(error) => StreamableHttpError::Client(error.without_url()),
        other => other,
    }
}

/// `url` without what may be a credential (user, password, query), to name the server by.
pub(crate) fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "an MCP server over HTTP".to_owned(),
    }
}

/// Whether `url` names a loopback host.
pub(crate) fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| {
        let host = url.host_str().unwrap_or_default();
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(id: serde_json::Value, message: &str) -> JsonRpcError {
        serde_json::from_value(
            serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}}),
        )
        .unwrap()
    }

    #[test]
    fn only_id_less_errors_about_the_session_end_it() {
        assert!(ends_session(&error(
            serde_json::Value::Null,
            "Bad Request: No valid session ID provided"
        )));
        assert!(ends_session(&error(
            serde_json::Value::Null,
            "Invalid or missing session ID"
        )));
        assert!(!ends_session(&error(serde_json::Value::Null, "Parse error")));
        assert!(!ends_session(&error(serde_json::json!(7), "Unknown session")));
    }
}
