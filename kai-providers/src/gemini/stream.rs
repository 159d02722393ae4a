//! Gemini's streamed responses → kai deltas. Each SSE event is a whole response object holding the
//! new parts; the stream ends at the end of the body (there is no end marker).

use kai_core::{ChatDelta, Error, Usage};

use crate::gemini::wire::{WireResponse, error_of, stop_reason, tool_call};
use crate::http::{Decoded, SseEvent};

#[derive(Debug, Default)]
pub(crate) struct ChunkDecoder {
    calls: u32,
    metadata_sent: bool,
}

impl ChunkDecoder {
    pub(crate) fn decode(&mut self, event: &SseEvent) -> Result<Decoded, Error> {
        let data = event.data.trim();
        let chunk: WireResponse = serde_json::from_str(data)
            .map_err(|error| Error::malformed(format!("a stream chunk is not valid JSON: {error}"), data))?;
        if let Some(error) = chunk.error {
            return Err(error_of(error, None, None));
        }
        let mut deltas = Vec::new();
        if !self.metadata_sent && (chunk.response_id.is_some() || chunk.model_version.is_some()) {
            self.metadata_sent = true;
            deltas.push(ChatDelta::Metadata {
                id: chunk.response_id,
                model: chunk.model_version,
            });
        }
        let blocked = match chunk.candidates.is_empty() {
            true => chunk.prompt_feedback.and_then(|f| f.block_reason),
            false => None,
        };
        for candidate in chunk.candidates.into_iter().take(1) {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(call) = part.function_call {
                    let index = self.calls;
                    self.calls += 1;
                    let call = tool_call(call, part.thought_signature, index as usize);
                    deltas.push(ChatDelta::ToolCallStart {
                        index,
                        id: call.id,
                        name: call.name,
                    });
                    deltas.push(ChatDelta::ToolCallArguments {
                        index,
                        fragment: call.arguments,
                    });
                    if let Some(signature) = call.signature {
                        deltas.push(ChatDelta::ToolCallSignature { index, signature });
                    }
                } else if let Some(text) = part.text.filter(|t| !t.is_empty() && part.thought != Some(true)) {
                    deltas.push(ChatDelta::Text { text });
                }
            }
            if let Some(reason) = candidate.finish_reason {
                deltas.push(ChatDelta::Finish {
                    stop_reason: stop_reason(&reason, self.calls > 0),
                    provider_reason: Some(reason),
                });
            }
        }
        if let Some(usage) = chunk.usage_metadata {
            deltas.push(ChatDelta::Usage(Usage::from(usage)));
        }
        if let Some(reason) = blocked {
            deltas.push(ChatDelta::Finish {
                stop_reason: kai_core::StopReason::ContentFilter,
                provider_reason: Some(reason),
            });
        }
        Ok(Decoded::Deltas(deltas))
    }
}
