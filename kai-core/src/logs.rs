//! Structured logs: one JSON object per line, for log shippers (Loki, Elasticsearch, CloudWatch).
//!
//! Each line has `timestamp` (RFC 3339), `level`, `target`, the event's fields and message at the top
//! level, and `span`: the innermost span with its fields, so an event inside a model call carries
//! `gen_ai.operation.name`, `gen_ai.request.model` and `kai.step`.
//!
//! What kAI logs at `INFO` and above carries names, ids, counts and error kinds, never prompts,
//! answers, tool arguments or results, and no secret at any level: API keys, tokens and passphrases
//! live in types whose `Debug` hides them. `DEBUG` may carry text from the outside (a tool's panic
//! message, an MCP server's standard error, a provider's error body), so keep production at `INFO`.
//!
//! Rust's default panic hook also writes a panic's message to standard error, outside any log: a
//! tool that panics is caught by the agent loop, but its message still reaches stderr unless the
//! program installs its own hook (`std::panic::set_hook`). Write the JSON lines to stdout, or set a
//! hook, to keep stderr's stream clean.
//!
//! An application's own event fields named `timestamp`, `level`, `target` or `span` would repeat
//! those keys: name them otherwise.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let subscriber = tracing_subscriber::registry().with(kai_core::logs::json_logs(std::io::stderr, tracing::Level::INFO));
//! let _guard = tracing::subscriber::set_default(subscriber);
//! tracing::info!(jobs = 3, "worker started");
//! ```

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::registry::LookupSpan;

/// A layer writing events at `max_level` and above as JSON lines to `writer` (`std::io::stderr`,
/// `std::io::stdout`, or a non-blocking writer).
pub fn json_logs<S, W>(writer: W, max_level: tracing::Level) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_span_events(FmtSpan::NONE)
        .with_target(true)
        .with_ansi(false)
        .with_writer(writer)
        // Spans of every level pass, so an event keeps its span whatever the level.
        .with_filter(filter_fn(move |metadata| {
            metadata.is_span() || *metadata.level() <= max_level
        }))
}
