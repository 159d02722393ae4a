//! Cohere v2 chat JSON, and the one place it is converted to and from kai's types.

use kai_core::{
    ChatRequest, ChatResponse, ContentPart, Message, ResponseFormat, Role, StopReason, ToolCall, ToolChoice, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) fn request_body(model: &str, request: &ChatRequest, stream: bool) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages(&request.messages)));
    // Cohere cannot force one particular tool: offer only that tool and require a call.
    let (tools, choice) = match &request.tool_choice {
        Some(ToolChoice::Tool(name)) => (
            request.tools.iter().filter(|t| &t.name == name).collect(),
            Some("REQUIRED"),
        ),
        Some(ToolChoice::Required) => (request.tools.iter().collect(), Some("REQUIRED")),
        Some(ToolChoice::None) => (request.tools.iter().collect(), Some("NONE")),
        Some(ToolChoice::Auto) | None => (request.tools.iter().collect::<Vec<_>>(), None),
    };
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = choice {
            body.insert("tool_choice".into(), json!(choice));
        }
    }
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert(
                "response_format".into(),
                json!({"type": "json_object", "json_schema": crate::json_schema::rewrite(schema, &crate::json_schema::COHERE).schema}),
            );
        }
        Some(ResponseFormat::JsonObject) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        _ => {}
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    if !request.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    crate::convert::merge_extra(&mut body, request);
    Value::Object(body)
}

fn messages(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        let results = message
            .tool_results()
            .map(|r| json!({"role": "tool", "tool_call_id": r.call_id, "content": r.content}));
        let text = message.text();
        match message.role {
            Role::System => out.push(json!({"role": "system", "content": text})),
            Role::User => {
                let images: Vec<Value> = message
                    .content
                    .iter()
                    .filter_map(|part| match part {
                        ContentPart::Image { source } => {
                            Some(json!({"type": "image_url", "image_url": {"url": crate::media::image_url(source)}}))
                        }
                        _ => None,
                    })
                    .collect();
                if images.is_empty() && !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                } else if !images.is_empty() {
                    let mut parts = vec![json!({"type": "text", "text": text})];
                    parts.extend(images);
                    out.push(json!({"role": "user", "content": parts}));
                }
            }
            Role::Assistant => {
                let calls: Vec<Value> = message
                    .tool_calls()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
                if calls.is_empty() {
                    out.push(json!({"role": "assistant", "content": text}));
                } else {
                    // Text before tool calls is Cohere's "tool plan".
                    let mut value = json!({"role": "assistant", "tool_calls": calls});
                    if !text.is_empty() {
                        value["tool_plan"] = json!(text);
                    }
                    out.push(value);
                }
            }
            Role::Tool => {}
        }
        out.extend(results);
    }
    out
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireResponse {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<WireMessage>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub(crate) content: Vec<Value>,
    #[serde(default)]
    pub(crate) tool_plan: Option<String>,
    #[serde(default)]
    pub(crate) tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireToolCall {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) function: Option<WireFunction>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireFunction {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) arguments: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub(crate) struct WireUsage {
    #[serde(default)]
    billed_units: Option<Tokens>,
    #[serde(default)]
    tokens: Option<Tokens>,
    #[serde(default)]
    cached_tokens: Option<f64>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
struct Tokens {
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

fn count(value: Option<f64>) -> u64 {
    value.filter(|v| v.is_finite() && *v >= 0.0).map_or(0, |v| v as u64)
}

impl From<WireUsage> for Usage {
    /// `tokens` counts what the model saw (Cohere's own preamble included); `billed_units` what is
    /// billed. The first is what matters for context limits, so it wins when present.
    fn from(usage: WireUsage) -> Usage {
        let tokens = usage.tokens.or(usage.billed_units).unwrap_or_default();
        Usage {
            input_tokens: count(tokens.input_tokens),
            output_tokens: count(tokens.output_tokens),
            cached_input_tokens: count(usage.cached_tokens),
        }
    }
}

pub(crate) fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "COMPLETE" => StopReason::EndTurn,
        "STOP_SEQUENCE" => StopReason::StopSequence,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "TOOL_CALL" => StopReason::ToolCalls,
        other => StopReason::Other(other.to_owned()),
    }
}

pub(crate) fn response(wire: WireResponse) -> ChatResponse {
    let message = wire.message.unwrap_or_default();
    let mut content = Vec::new();
    let mut text: String = message
        .content
        .iter()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect();
    if text.is_empty()
        && let Some(plan) = message.tool_plan
    {
        text = plan;
    }
    if !text.is_empty() {
        content.push(ContentPart::Text { text });
    }
    for (index, call) in message.tool_calls.into_iter().enumerate() {
        let function = call.function.unwrap_or_default();
        content.push(ContentPart::ToolCall(ToolCall {
            id: call.id.unwrap_or_else(|| format!("call_{index}")),
            name: function.name.unwrap_or_default(),
            arguments: function.arguments.unwrap_or_default(),
            signature: None,
        }));
    }
    ChatResponse {
        message: Message::new(Role::Assistant, content),
        usage: wire.usage.map(Usage::from).unwrap_or_default(),
        stop_reason: wire.finish_reason.as_deref().map(stop_reason),
        provider_stop_reason: wire.finish_reason,
        model: None,
        id: wire.id,
    }
}
