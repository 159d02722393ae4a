//! Metrics from the agent loop's spans: a `tracing` layer that turns each finished `invoke_agent`,
//! `chat` and `execute_tool` span into counters and histograms of the [`metrics`] facade, for any
//! recorder (Prometheus with the `prometheus` feature: [`install_prometheus`]).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `kai_agent_runs_total` | counter | `agent`, `outcome` (`ok` or the error's kind) |
//! | `kai_agent_run_duration_seconds` | histogram | `agent` |
//! | `kai_agent_steps_total` | counter | `agent` |
//! | `kai_model_calls_total` | counter | `provider`, `model`, `outcome` |
//! | `kai_model_call_duration_seconds` | histogram | `provider`, `model` |
//! | `kai_tokens_total` | counter | `provider`, `model`, `type` (`input`, `output`) |
//! | `kai_cost_microdollars_total` | counter | `provider`, `model` (with [`MetricsLayer::with_cost`]) |
//! | `kai_tool_calls_total` | counter | `tool`, `outcome` |
//! | `kai_tool_call_duration_seconds` | histogram | `tool` |
//! | `kai_errors_total` | counter | `operation` (`invoke_agent`, `chat`, `execute_tool`), `kind` |
//!
//! Labels carry names (agents, models, tools), never prompts or arguments.

use std::sync::Arc;
use std::time::Instant;

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::message::Usage;

#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "prometheus")]
pub use prometheus::install_prometheus;

/// Prices a model call: `(provider, model, usage)` to US dollars, when the model's price is known.
pub type CostFn = Arc<dyn Fn(&str, &str, &Usage) -> Option<f64> + Send + Sync>;

/// The layer that records kAI's metrics; add it to a `tracing_subscriber` registry.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// let subscriber = tracing_subscriber::registry().with(kai_core::metrics::MetricsLayer::new());
/// let _guard = tracing::subscriber::set_default(subscriber);
/// ```
#[derive(Clone, Default)]
pub struct MetricsLayer {
    cost: Option<CostFn>,
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("cost", &self.cost.is_some())
            .finish()
    }
}

impl MetricsLayer {
    /// A layer recording every metric but cost.
    pub fn new() -> Self {
        Self::default()
    }

    /// This layer, also counting the cost of model calls priced by `cost` (such as
    /// `kai_providers::pricing::PriceTable::cost`).
    pub fn with_cost(mut self, cost: impl Fn(&str, &str, &Usage) -> Option<f64> + Send + Sync + 'static) -> Self {
        self.cost = Some(Arc::new(cost));
        self
    }
}

/// What a span of interest has said so far, kept in its extensions.
#[derive(Debug, Default)]
struct Observed {
    operation: &'static str,
    started: Option<Instant>,
    agent: String,
    provider: String,
    model: String,
    tool: String,
    input_tokens: u64,
    output_tokens: u64,
    steps: u64,
    error: Option<String>,
}

impl Visit for Observed {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "gen_ai.agent.name" => self.agent = value.to_owned(),
            "gen_ai.provider.name" => self.provider = value.to_owned(),
            "gen_ai.request.model" => self.model = value.to_owned(),
            "gen_ai.tool.name" => self.tool = value.to_owned(),
            "error.type" => self.error = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "gen_ai.usage.input_tokens" => self.input_tokens = value,
            "gen_ai.usage.output_tokens" => self.output_tokens = value,
            "kai.steps" => self.steps = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or_default());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here; their Display is what the span holds.
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for MetricsLayer {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let operation = match attributes.metadata().name() {
            "invoke_agent" => "invoke_agent",
            "chat" => "chat",
            "execute_tool" => "execute_tool",
            _ => return,
        };
        let Some(span) = context.span(id) else {
            return;
        };
        let mut observed = Observed {
            operation,
            started: Some(Instant::now()),
            ..Observed::default()
        };
        attributes.record(&mut observed);
        span.extensions_mut().insert(observed);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        if let Some(span) = context.span(id)
            && let Some(observed) = span.extensions_mut().get_mut::<Observed>()
        {
            values.record(observed);
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        let Some(observed) = span.extensions_mut().remove::<Observed>() else {
            return;
        };
        self.emit(&observed);
    }
}

impl MetricsLayer {
    fn emit(&self, observed: &Observed) {
        let seconds = observed.started.map_or(0.0, |started| started.elapsed().as_secs_f64());
        let outcome = observed.error.clone().unwrap_or_else(|| "ok".to_owned());
        if let Some(kind) = &observed.error {
            metrics::counter!("kai_errors_total", "operation" => observed.operation, "kind" => kind.clone())
                .increment(1);
        }
        match observed.operation {
            "invoke_agent" => {
                let agent = observed.agent.clone();
                metrics::counter!("kai_agent_runs_total", "agent" => agent.clone(), "outcome" => outcome).increment(1);
                metrics::histogram!("kai_agent_run_duration_seconds", "agent" => agent.clone()).record(seconds);
                metrics::counter!("kai_agent_steps_total", "agent" => agent).increment(observed.steps);
            }
            "chat" => {
                let (provider, model) = (observed.provider.clone(), observed.model.clone());
                metrics::counter!("kai_model_calls_total", "provider" => provider.clone(), "model" => model.clone(), "outcome" => outcome)
                    .increment(1);
                metrics::histogram!("kai_model_call_duration_seconds", "provider" => provider.clone(), "model" => model.clone())
                    .record(seconds);
                for (kind, tokens) in [("input", observed.input_tokens), ("output", observed.output_tokens)] {
                    metrics::counter!("kai_tokens_total", "provider" => provider.clone(), "model" => model.clone(), "type" => kind)
                        .increment(tokens);
                }
                let usage = Usage {
                    input_tokens: observed.input_tokens,
                    output_tokens: observed.output_tokens,
                    ..Usage::default()
                };
                if let Some(cost) = self.cost.as_ref().and_then(|cost| cost(&provider, &model, &usage)) {
                    // Counters count whole units: millionths of a dollar.
                    let micro = (cost * 1_000_000.0).round().max(0.0) as u64;
                    metrics::counter!("kai_cost_microdollars_total", "provider" => provider, "model" => model)
                        .increment(micro);
                }
            }
            _ => {
                let tool = observed.tool.clone();
                metrics::counter!("kai_tool_calls_total", "tool" => tool.clone(), "outcome" => outcome).increment(1);
                metrics::histogram!("kai_tool_call_duration_seconds", "tool" => tool).record(seconds);
            }
        }
    }
}
