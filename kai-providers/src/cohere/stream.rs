//! Cohere v2 streaming events → kai deltas.

use kai_core::{ChatDelta, Error, Usage};
use serde_json::Value;

use crate::cohere::wire::{WireUsage, stop_reason};
use crate::http::{Decoded, SseEvent};

/// Decodes one SSE event, dispatching on the `type` inside the JSON.
pub(crate) fn decode(event: &SseEvent) -> Result<Decoded, Error> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(Decoded::Done);
    }
    let value: Value = serde_json::from_str(data)
        .map_err(|error| Error::malformed(format!("a stream event is not valid JSON: {error}"), data))?;
    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default();
    let index = value
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(0);
    let message = &value["delta"]["message"];
    let text_at = |pointer: &str| message.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let deltas = match kind {
        "message-start" => vec![ChatDelta::Metadata {
            id: value.get("id").and_then(Value::as_str).map(str::to_owned),
            model: None,
        }],
        "content-delta" => text_at("/content/text")
            .map(|text| vec![ChatDelta::Text { text }])
            .unwrap_or_default(),
        "tool-plan-delta" => text_at("/tool_plan")
            .map(|text| vec![ChatDelta::Text { text }])
            .unwrap_or_default(),
        "tool-call-start" => {
            let mut deltas = vec![ChatDelta::ToolCallStart {
                index,
                id: text_at("/tool_calls/id").unwrap_or_default(),
                name: text_at("/tool_calls/function/name").unwrap_or_default(),
            }];
            if let Some(fragment) = text_at("/tool_calls/function/arguments").filter(|f| !f.is_empty()) {
                deltas.push(ChatDelta::ToolCallArguments { index, fragment });
            }
            deltas
        }
        "tool-call-delta" => text_at("/tool_calls/function/arguments")
            .map(|fragment| vec![ChatDelta::ToolCallArguments { index, fragment }])
            .unwrap_or_default(),
        "message-end" => {
            let delta = &value["delta"];
            if let Some(error) = delta.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
                return Err(Error::Server {
                    status: None,
                    message: crate::http::bounded_message(error),
                });
            }
            let mut deltas = Vec::new();
            if let Some(usage) = delta
                .get("usage")
                .and_then(|u| serde_json::from_value::<WireUsage>(u.clone()).ok())
            {
                deltas.push(ChatDelta::Usage(Usage::from(usage)));
            }
            let reason = delta.get("finish_reason").and_then(Value::as_str);
            deltas.push(ChatDelta::Finish {
                stop_reason: stop_reason(reason.unwrap_or("COMPLETE")),
                provider_reason: reason.map(str::to_owned),
            });
            deltas
        }
        _ => Vec::new(),
    };
    Ok(Decoded::Deltas(deltas))
}
