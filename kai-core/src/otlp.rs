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

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::error::Error;

/// How long one export may take before it is given up (spans of that batch are dropped).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the spans of the layers it makes to an OTLP receiver, in batches from a thread of its own
/// (no async runtime needed). Spans still buffered are sent by [`flush`](Self::flush) and
/// [`shutdown`](Self::shutdown), and on drop.
pub struct OtlpExporter {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl std::fmt::Debug for OtlpExporter {
    // The endpoint without user info; headers (which may carry API keys) are never shown.
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
    headers: HashMap<String, String>,
    timeout: Duration,
}

impl std::fmt::Debug for OtlpExporterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporterBuilder")
            .field("endpoint", &without_user_info(&self.endpoint))
            .field("service_name", &self.service_name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `url` without a `user:password@` part.
fn without_user_info(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme && !url[scheme + 3..at].contains('/') => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl OtlpExporter {
    /// An exporter to the OTLP/HTTP receiver at `endpoint` (its base, like `http://127.0.0.1:4318`;
    /// `/v1/traces` is added unless it is there), naming this program `service_name`.
    pub fn builder(endpoint: impl Into<String>, service_name: impl Into<String>) -> OtlpExporterBuilder {
        OtlpExporterBuilder {
            endpoint: endpoint.into(),
            service_name: service_name.into(),
            headers: HashMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A `tracing` layer whose spans this exporter sends; add it to a `tracing_subscriber` registry.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("kai"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
    }

    /// Sends every span finished so far, waiting for the receiver's answer.
    pub fn flush(&self) -> Result<(), Error> {
        self.provider.force_flush().map_err(export_error)
    }

    /// Sends what is buffered and stops the exporter.
    pub fn shutdown(self) -> Result<(), Error> {
        self.provider.shutdown().map_err(export_error)
    }
}

fn export_error(error: opentelemetry_sdk::error::OTelSdkError) -> Error {
    Error::Transport {
        message: format!("OTLP export: {error}"),
    }
}

impl OtlpExporterBuilder {
    /// Adds a header to every export request (an API key or `authorization` a receiver asks for).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// How long one export may take (10 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The exporter; [`Error::Config`] for an endpoint that is not an `http` or `https` URL, or a
    /// header that is not valid in HTTP.
    pub fn build(self) -> Result<OtlpExporter, Error> {
        let config = |message: String| Error::Config { message };
        let endpoint = self.endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(config(format!(
                "the OTLP endpoint {:?} is not an http or https URL",
                without_user_info(endpoint)
            )));
        }
        for (name, value) in &self.headers {
            let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            let valid_value = value.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b));
            if !valid_name || !valid_value {
                return Err(config(format!("the OTLP header {name:?} is not a valid HTTP header")));
            }
        }
        let traces = if endpoint.ends_with("/v1/traces") {
            endpoint.to_owned()
        } else {
            format!("{endpoint}/v1/traces")
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&traces)
            .with_timeout(self.timeout)
            .with_headers(self.headers)
            .build()
            .map_err(|error| config(format!("the OTLP exporter: {error}")))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(self.service_name).build())
            .build();
        Ok(OtlpExporter {
            provider,
            endpoint: without_user_info(&traces),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_headers_are_checked_and_user_info_is_never_shown() {
        assert!(matches!(
            OtlpExporter::builder("ftp://collector", "svc").build(),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            OtlpExporter::builder("http://127.0.0.1:4318", "svc")
                .header("x-key", "line\nbreak")
                .build(),
            Err(Error::Config { .. })
        ));
        let builder =
            OtlpExporter::builder("https://user:hunter2@collector.example/otlp", "svc").header("api-key", "s3cret");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
        assert_eq!(
            without_user_info("https://user:hunter2@collector.example/otlp"),
            "https://collector.example/otlp"
        );
        assert_eq!(without_user_info("http://host/path@x"), "http://host/path@x");
    }
}
