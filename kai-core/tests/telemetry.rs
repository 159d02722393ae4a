//! Spans use the OpenTelemetry GenAI attribute names and never carry prompts.
//!
//! This test has a test binary of its own. `tracing` caches each callsite's interest process-wide, and
//! while exactly one subscriber is registered a callsite first reached on another thread asks only that
//! thread's default (none) and is cached as disabled; a test running beside this one would hide spans
//! from it.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, ChatResponse, Message, StopReason, Tool, Usage, tool_fn};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

#[derive(Deserialize, JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

fn adder() -> impl Tool {
    tool_fn(
        "add",
        "Adds two integers.",
        |args: Add| async move { Ok(args.a + args.b) },
    )
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: 0,
    }
}

type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

struct Capture(Spans);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(spans.len());
        }
        spans.push((attrs.metadata().name().to_owned(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(&index) = span.extensions().get::<usize>() else {
            return;
        };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[index].1));
    }
}

#[tokio::test]
async fn runs_model_calls_and_tool_calls_are_spans_with_gen_ai_attributes() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&spans)));
    let _guard = tracing::subscriber::set_default(subscriber);

    let model = ScriptedModel::new()
        .name("tiny")
        .tool_call("add", json!({"a": 1, "b": 2}))
        .usage(usage(11, 3))
        .respond(ChatResponse {
            stop_reason: Some(StopReason::EndTurn),
            provider_stop_reason: Some("end_turn".into()),
            ..ChatResponse::new(Message::assistant("3"))
        })
        .usage(usage(17, 1));
    let agent = Agent::builder(model).name("calc").tool(adder()).build().unwrap();
    agent.run("the secret prompt").await.unwrap();

    let spans = spans.lock().unwrap();
    let names: Vec<_> = spans.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["invoke_agent", "chat", "execute_tool", "chat"]);
    let run = &spans[0].1;
    assert_eq!(run["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(run["gen_ai.agent.name"], "calc");
    assert_eq!(run["gen_ai.usage.input_tokens"], "28");
    assert_eq!(run["gen_ai.usage.output_tokens"], "4");
    let chat = &spans[1].1;
    assert_eq!(chat["gen_ai.request.model"], "tiny");
    assert_eq!(chat["gen_ai.provider.name"], "kai.scripted");
    assert_eq!(chat["gen_ai.response.finish_reasons"], "tool_calls");
    assert_eq!(chat["gen_ai.usage.input_tokens"], "11");
    let answer = &spans[3].1;
    assert_eq!(
        answer["gen_ai.response.finish_reasons"], "end_turn",
        "the provider's own word, when it gave one"
    );
    let tool = &spans[2].1;
    assert_eq!(tool["gen_ai.tool.name"], "add");
    assert!(tool["gen_ai.tool.call.id"].starts_with("call_"));
    for (_, fields) in spans.iter() {
        assert!(
            fields.values().all(|v| !v.contains("secret prompt")),
            "no prompt text in spans"
        );
    }
}
