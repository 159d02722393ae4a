//! Anthropic streaming events → kai deltas.

use kai_core::{ChatDelta, Error, Usage};
use serde::Deserialize;
use serde_json::Value;

use crate::anthropic::wire::{ErrorDetail, WireMessage, WireUsage, error_of, stop_reason};
use crate::http::{Decoded, SseEvent};

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: WireMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: Value,
    },
    ContentBlockDelta {
        index: u32,
        delta: Value,
    },
    MessageDelta {
        #[serde(default)]
        delta: Value,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
    #[serde(other)]
    Other,
}

/// Decodes one SSE event. `ping`, `content_block_stop` and unknown events produce nothing.
pub(crate) fn decode(event: &SseEvent) -> Result<Decoded, Error> {
    let data = event.data.trim();
    let event: Event = serde_json::from_str(data)
        .map_err(|error| Error::malformed(format!("a stream event is not valid JSON: {error}"), data))?;
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let deltas = match event {
        Event::MessageStart { message } => {
            let mut deltas = vec![ChatDelta::Metadata {
                id: message.id,
                model: message.model,
            }];
            if let Some(usage) = message.usage {
                deltas.push(ChatDelta::Usage(Usage::from(usage)));
            }
            deltas
        }
        Event::ContentBlockStart { index, content_block } => match content_block.get("type").and_then(Value::as_str) {
            Some("text") => text(&content_block, "text")
                .filter(|t| !t.is_empty())
                .map(|text| vec![ChatDelta::Text { text }])
                .unwrap_or_default(),
            Some("tool_use") => vec![ChatDelta::ToolCallStart {
                index,
                id: text(&content_block, "id").unwrap_or_default(),
                name: text(&content_block, "name").unwrap_or_default(),
            }],
            Some("thinking") => vec![ChatDelta::Reasoning {
                index,
                text: text(&content_block, "thinking").unwrap_or_default(),
            }],
            Some("redacted_thinking") => vec![ChatDelta::RedactedReasoning {
                index,
                data: text(&content_block, "data").unwrap_or_default(),
            }],
            _ => Vec::new(),
        },
        Event::ContentBlockDelta { index, delta } => match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => text(&delta, "text")
                .map(|text| vec![ChatDelta::Text { text }])
                .unwrap_or_default(),
            Some("thinking_delta") => text(&delta, "thinking")
                .map(|text| vec![ChatDelta::Reasoning { index, text }])
                .unwrap_or_default(),
            Some("signature_delta") => text(&delta, "signature")
                .map(|signature| vec![ChatDelta::ReasoningSignature { index, signature }])
                .unwrap_or_default(),
            Some("input_json_delta") => text(&delta, "partial_json")
                .filter(|f| !f.is_empty())
                .map(|fragment| vec![ChatDelta::ToolCallArguments { index, fragment }])
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        Event::MessageDelta { delta, usage } => {
            let mut deltas = Vec::new();
            if let Some(usage) = usage {
                deltas.push(ChatDelta::Usage(Usage::from(usage)));
            }
            if let Some(reason) = text(&delta, "stop_reason") {
                deltas.push(ChatDelta::Finish {
                    stop_reason: stop_reason(&reason),
                    provider_reason: Some(reason),
                });
            }
            deltas
        }
        Event::MessageStop => return Ok(Decoded::Done),
        Event::Error { error } => return Err(error_of(error, None, None)),
        Event::Other => Vec::new(),
    };
    Ok(Decoded::Deltas(deltas))
}
