//! OpenAI streamed chunks → kai deltas.

use kai_core::{ChatDelta, Error, StopReason, Usage};

use crate::http::{Decoded, SseEvent};
use crate::openai::wire::{Completion, stop_reason};

/// Decodes SSE events into deltas, remembering what it has seen.
#[derive(Debug, Default)]
pub(crate) struct ChunkDecoder {
    metadata_sent: bool,
    /// Position of each streamed call index among the calls seen so far, for servers that omit `index`.
    calls_seen: u32,
    /// Whether the model refused: its refusal streams as text, and the answer stops as a refusal.
    refused: bool,
}

impl ChunkDecoder {
    pub(crate) fn decode(&mut self, event: &SseEvent) -> Result<Decoded, Error> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(Decoded::Done);
        }
        if data.is_empty() {
            return Ok(Decoded::Deltas(Vec::new()));
        }
        let chunk: Completion = serde_json::from_str(data)
            .map_err(|error| Error::malformed(format!("a stream chunk is not valid JSON: {error}"), data))?;
        if let Some(error) = chunk.error {
            let message = error
                .message
                .unwrap_or_else(|| "the server reported an error in the stream".into());
            return Err(Error::Server { status: None, message });
        }
        let mut deltas = Vec::new();
        if !self.metadata_sent && (chunk.id.is_some() || chunk.model.is_some()) {
            self.metadata_sent = true;
            deltas.push(ChatDelta::Metadata {
                id: chunk.id,
                model: chunk.model,
            });
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta.or(choice.message) {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    deltas.push(ChatDelta::Text { text });
                }
                if let Some(text) = delta.refusal.filter(|t| !t.is_empty()) {
                    self.refused = true;
                    deltas.push(ChatDelta::Text { text });
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    let index = match call.index {
                        Some(index) => index,
                        None => {
                            // No index: each fragment that names a function starts a new call.
                            let starts = call.function.as_ref().and_then(|f| f.name.as_ref()).is_some();
                            if starts {
                                self.calls_seen += 1;
                            }
                            self.calls_seen.saturating_sub(1)
                        }
                    };
                    let function = call.function.unwrap_or_default();
                    let arguments = function.arguments_text();
                    if call.id.is_some() || function.name.is_some() {
                        deltas.push(ChatDelta::ToolCallStart {
                            index,
                            id: call.id.unwrap_or_default(),
                            name: function.name.unwrap_or_default(),
                        });
                    }
                    if !arguments.is_empty() {
                        deltas.push(ChatDelta::ToolCallArguments {
                            index,
                            fragment: arguments,
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                let stop_reason = if self.refused {
                    StopReason::Refusal
                } else {
                    stop_reason(&reason)
                };
                deltas.push(ChatDelta::Finish {
                    stop_reason,
                    provider_reason: Some(reason),
                });
            }
        }
        if let Some(usage) = chunk.usage {
            deltas.push(ChatDelta::Usage(Usage::from(usage)));
        }
        Ok(Decoded::Deltas(deltas))
    }
}
