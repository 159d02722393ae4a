//! Anthropic Messages API JSON, and the one place it is converted to and from kai's types.

use kai_core::{
    ChatRequest, ChatResponse, ContentPart, Error, ImageSource, Message, ResponseFormat, Role, StopReason, ToolCall,
    ToolChoice, Usage,
};
use serde::Deserialize;

use crate::convert::{alternating_turns, arguments_object, system_text};
use serde_json::{Value, json};

/// Builds the request body. `default_max_tokens` fills the field the API requires.
pub(crate) fn request_body(model: &str, request: &ChatRequest, stream: bool, default_max_tokens: u32) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(default_max_tokens)),
    );
    if let Some(system) = system_text(&request.messages) {
        body.insert("system".into(), json!(system));
    }
    // Tool results travel as `tool_result` blocks at the start of a user turn.
    let messages = alternating_turns(&request.messages, "assistant", "content", block);
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &request.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Tool(name)) => Some(json!({"type": "tool", "name": name})),
    };
    if request.parallel_tool_calls == Some(false) && !request.tools.is_empty() {
        let value = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if value["type"] != "none" {
            value["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(choice) = choice {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &request.response_format {
        // A map stays open in the rewrite; should the API refuse it, its error says so.
        let schema = crate::json_schema::rewrite(schema, &crate::json_schema::ANTHROPIC).schema;
        body.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
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

fn block(part: &ContentPart) -> Option<Value> {
    Some(match part {
        ContentPart::Text { text } if text.is_empty() => return None,
        ContentPart::Text { text } => json!({"type": "text", "text": text}),
        ContentPart::Image { source } => json!({"type": "image", "source": image_source(source)}),
        ContentPart::ToolCall(call) => {
            json!({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments_object(call)})
        }
        ContentPart::ToolResult(result) => json!({
            "type": "tool_result", "tool_use_id": result.call_id, "content": result.content, "is_error": result.is_error
        }),
        // Thinking goes back exactly as it came, signature and all, or extended thinking with tools fails.
        ContentPart::Reasoning { text, signature } => {
            json!({"type": "thinking", "thinking": text, "signature": signature.as_deref().unwrap_or_default()})
        }
        ContentPart::RedactedReasoning { data } => json!({"type": "redacted_thinking", "data": data}),
        _ => return None,
    })
}

fn image_source(source: &ImageSource) -> Value {
    match source {
        ImageSource::Bytes { media_type, data } => {
            use base64::Engine as _;
            json!({"type": "base64", "media_type": media_type, "data": base64::engine::general_purpose::STANDARD.encode(data)})
        }
        ImageSource::Url { url } => match crate::media::parse_data_url(url) {
            Some((media_type, data)) => json!({"type": "base64", "media_type": media_type, "data": data}),
            None => json!({"type": "url", "url": url}),
        },
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) content: Vec<Block>,
    #[serde(default)]
    pub(crate) stop_reason: Option<String>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub(crate) struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    /// Anthropic's `input_tokens` leaves out cached tokens; kai's includes them.
    fn from(usage: WireUsage) -> Usage {
        let cached = usage.cache_read_input_tokens.unwrap_or(0);
        let created = usage.cache_creation_input_tokens.unwrap_or(0);
        let input = usage
            .input_tokens
            .map(|n| n.saturating_add(cached).saturating_add(created))
            .unwrap_or(0);
        Usage {
            input_tokens: input,
            output_tokens: usage.output_tokens.unwrap_or(0),
            cached_input_tokens: cached,
        }
    }
}

pub(crate) fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolCalls,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

pub(crate) fn response(message: WireMessage) -> ChatResponse {
    let content = message
        .content
        .into_iter()
        .filter_map(|block| match block {
            Block::Text { text } if !text.is_empty() => Some(ContentPart::Text { text }),
            Block::Thinking { thinking, signature } => Some(ContentPart::Reasoning {
                text: thinking,
                signature,
            }),
            Block::RedactedThinking { data } => Some(ContentPart::RedactedReasoning { data }),
            Block::ToolUse { id, name, input } => Some(ContentPart::ToolCall(ToolCall {
                id,
                name,
                arguments: if input.is_null() {
                    "{}".into()
                } else {
                    input.to_string()
                },
                signature: None,
            })),
            _ => None,
        })
        .collect();
    ChatResponse {
        message: Message::new(Role::Assistant, content),
        usage: message.usage.map(Usage::from).unwrap_or_default(),
        stop_reason: message.stop_reason.as_deref().map(stop_reason),
        provider_stop_reason: message.stop_reason,
        model: message.model,
        id: message.id,
    }
}

/// `{"type": "error", "error": {"type": ..., "message": ...}}`
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) error: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ErrorDetail {
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// An error by its Anthropic type, whatever the HTTP status was (stream errors have none).
pub(crate) fn error_of(detail: ErrorDetail, status: Option<u16>, retry_after: Option<std::time::Duration>) -> Error {
    let message = crate::http::bounded_message(&detail.message);
    match detail.kind.as_str() {
        "authentication_error" => Error::Authentication { message },
        "permission_error" | "billing_error" => Error::PermissionDenied { message },
        "rate_limit_error" => Error::RateLimited { message, retry_after },
        "invalid_request_error" if message.to_ascii_lowercase().starts_with("prompt is too long") => {
            Error::ContextTooLong { message }
        }
        "invalid_request_error" | "not_found_error" | "request_too_large" => Error::InvalidRequest { message },
        "timeout_error" => Error::Timeout,
        _ => Error::Server { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_that_would_overflow_saturate() {
        let usage: WireUsage = serde_json::from_value(serde_json::json!({
            "input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX, "cache_creation_input_tokens": 5
        }))
        .unwrap();
        assert_eq!(Usage::from(usage).input_tokens, u64::MAX);
    }
}
