//! OpenTelemetry export of the agent loop's spans over OTLP/HTTP (protobuf), to any OTLP receiver: the
//! OpenTelemetry Collector, Jaeger, Grafana Tempo, or a vendor's endpoint.
//!
//! The spans follow the OpenTelemetry GenAI semantic conventions: `invoke_agent {agent}`,
//! `chat {model}` and `execute_tool {tool}`, with `gen_ai.operation.name`, `gen_ai.provider.name`,
//! `gen_ai.request.model`, `gen_ai.response.*`, `gen_ai.usage.input_tokens` and `output_tokens`,
//! `gen_ai.tool.*` and `error.type` attributes. They carry names and counts, never prompts, answers
//! or tool arguments.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let exporter = kai_core::otlp::OtlpExporter::builder("http://127.0.0.1:4318", "support-bot")
//!     .build()
//!     .unwrap();
//! let subscriber = tracing_subscriber::registry().with(exporter.layer());
//! tracing::subscriber::set_global_default(subscriber).unwrap();
//! // ... run agents; before the process ends:
//! exporter.shutdown().unwrap();
//! ```

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::error::Error;

/// How long one export may take unless set: under the 5 s the SDK's flush waits, so a flush sees it
/// end.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);

/// Sends the spans of the layers it makes to an OTLP receiver, in batches from a thread of its own
/// (no async runtime needed; at most 2,048 spans wait, more are dropped). Spans still buffered are
/// sent by [`flush`](Self::flush) and [`shutdown`](Self::shutdown), and when it is dropped. Export
/// failures are reported through `tracing` by the OpenTelemetry SDK (target `opentelemetry*`).
///
/// The SDK also reads the `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` environment variables: headers set
/// there are added to every request, and queue sizes change.
pub struct OtlpExporter {
    provider: SdkTracerProvider,
    endpoint: String,
    timeout: Duration,
    shut_down: bool,
}

impl std::fmt::Debug for OtlpExporter {
    // Endpoints carry no user info or query (`build` refuses them); headers are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Sets up an [`OtlpExporter`].
pub struct OtlpExporterBuilder {
    endpoint: String,
    service_name: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

impl std::fmt::Debug for OtlpExporterBuilder {
    // The endpoint may still hold user info here (`build` refuses it): it is not shown, nor are header
    // values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporterBuilder")
            .field("service_name", &self.service_name)
            .field(
                "headers",
                &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// An exporter to the OTLP/HTTP receiver at `endpoint` (its base, like `http://127.0.0.1:4318`;
    /// `/v1/traces` is added unless it is there), naming this program `service_name`.
    pub fn builder(endpoint: impl Into<String>, service_name: impl Into<String>) -> OtlpExporterBuilder {
        OtlpExporterBuilder {
            endpoint: endpoint.into(),
            service_name: service_name.into(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A `tracing` layer whose spans this exporter sends; add it to a `tracing_subscriber` registry.
    ///
    /// Spans of every level are exported; of the events inside them, only those at `INFO` and above
    /// (as span events), so `DEBUG` text (a tool's panic message, a provider's retried error) stays
    /// out. A span is marked as an error by its own `otel.status_code`, which the agent loop sets
    /// with `error.type`, not by the events in it: a model call retried after a 503 and then
    /// answered is not an error.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("kai"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_error_events_to_status(false)
            .with_error_events_to_exceptions(false)
            .with_error_fields_to_exceptions(false)
            .with_filter(filter_fn(|metadata| {
                metadata.is_span() || *metadata.level() <= tracing::Level::INFO
            }))
    }

    /// Sends every span finished so far, waiting for the receiver's answer (up to 5 s): it blocks,
    /// so in async code call it from `tokio::task::spawn_blocking`.
    pub fn flush(&self) -> Result<(), Error> {
        self.provider.force_flush().map_err(export_error)
    }

    /// Sends what is buffered and stops the exporter, waiting up to the export timeout and a second
    /// (it blocks, as [`flush`](Self::flush) does).
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.shut_down = true;
        self.provider
            .shutdown_with_timeout(self.timeout + Duration::from_secs(1))
            .map_err(export_error)
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        if !self.shut_down {
            // The spans still buffered are sent; a failure has nowhere to go but the SDK's log.
            let _ = self
                .provider
                .shutdown_with_timeout(self.timeout + Duration::from_secs(1));
        }
    }
}

fn export_error(error: opentelemetry_sdk::error::OTelSdkError) -> Error {
    Error::Transport {
        message: format!("OTLP export: {error}"),
    }
}

/// Checks an endpoint: `http` or `https`, no user info (reqwest would not send it), no query or
/// fragment (`/v1/traces` is added to the path). The error never repeats the endpoint.
fn check_endpoint(endpoint: &str) -> Result<(), Error> {
    let refused = |why: &str| {
        Err(Error::Config {
            message: format!("the OTLP endpoint {why}"),
        })
    };
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        return refused("is not an http or https URL");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return refused("has no host");
    }
    if authority.contains('@') {
        return refused("holds user info: give credentials as a header");
    }
    if rest.contains(['?', '#']) {
        return refused("has a query or fragment: give credentials as a header");
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refused("holds white space or control characters");
    }
    Ok(())
}

impl OtlpExporterBuilder {
    /// Adds a header to every export request (an API key or `authorization` a receiver asks for).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long one export may take (4 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The exporter; [`Error::Config`] for an endpoint that is not a plain `http` or `https` URL, or a
    /// header that is not valid in HTTP (neither is repeated in the error).
    pub fn build(self) -> Result<OtlpExporter, Error> {
        let config = |message: String| Error::Config { message };
        let endpoint = self.endpoint.trim_end_matches('/');
        check_endpoint(endpoint)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config("an OTLP header's name is not valid in HTTP".into()))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| config(format!("the OTLP header {name}'s value is not valid in HTTP")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let traces = if endpoint.ends_with("/v1/traces") {
            endpoint.to_owned()
        } else {
            format!("{endpoint}/v1/traces")
        };
        // reqwest's blocking client runs a runtime of its own: it is made on a thread of its own, so
        // building the exporter from async code is fine.
        let tls = crate::tls::client_config("OTLP export")?;
        let timeout = self.timeout;
        let client = std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .tls_backend_preconfigured(tls)
                .default_headers(headers)
                .timeout(timeout)
                .build()
        })
        .join()
        .map_err(|_| config("the OTLP exporter's HTTP client could not be made".into()))?
        .map_err(|error| config(format!("the OTLP exporter's HTTP client: {error}")))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(&traces)
            .with_timeout(self.timeout)
            .build()
            .map_err(|_| config("the OTLP exporter could not be made for that endpoint".into()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(self.service_name).build())
            .build();
        Ok(OtlpExporter {
            provider,
            endpoint: traces,
            timeout: self.timeout,
            shut_down: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_headers_are_checked_and_credentials_are_never_shown() {
        for (endpoint, why) in [
            ("ftp://collector", "http or https"),
            ("http:///v1/traces", "no host"),
            ("https://user:p@ss@collector.example/otlp", "user info"),
            ("user:hunter2@collector:4318", "http or https"),
            ("https://collector.example/otlp?api_key=hunter2", "query"),
            ("http://collector .example", "white space"),
        ] {
            let error = OtlpExporter::builder(endpoint, "svc").build().unwrap_err();
            let text = error.to_string();
            assert!(
                matches!(error, Error::Config { .. }) && text.contains(why),
                "{endpoint}: {text}"
            );
            assert!(!text.contains("hunter2") && !text.contains("ss@"), "{text}");
        }
        let error = OtlpExporter::builder("http://127.0.0.1:4318", "svc")
            .header("x-key", "s3cret\nbreak")
            .build()
            .unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let builder =
            OtlpExporter::builder("https://user:hunter2@collector.example/otlp", "svc").header("api-key", "s3cret");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    }

    #[tokio::test]
    async fn an_https_exporter_is_built_and_dropped_in_async_code() {
        // TLS comes with the exporter (rustls on ring), whatever else the process has installed.
        let exporter = OtlpExporter::builder("https://collector.example:4318/", "svc")
            .header("authorization", "Bearer s3cret%2B")
            .build()
            .unwrap();
        assert!(!format!("{exporter:?}").contains("s3cret"));
        assert!(format!("{exporter:?}").contains("https://collector.example:4318/v1/traces"));
        drop(exporter);
    }
}
