//! Ollama's NDJSON stream → kai deltas.

use kai_core::{ChatDelta, Error};

use crate::http::Decoded;
use crate::ollama::wire::{ChatLine, stop_reason, tool_call};

#[derive(Debug, Default)]
pub(crate) struct LineDecoder {
    calls: u32,
    metadata_sent: bool,
}

impl LineDecoder {
    /// Decodes one line. Errors can arrive mid-stream under HTTP 200, so every line is checked.
    pub(crate) fn decode(&mut self, line: &str) -> Result<Decoded, Error> {
        let chunk: ChatLine = serde_json::from_str(line)
            .map_err(|error| Error::malformed(format!("a stream line is not valid JSON: {error}"), line))?;
        if let Some(error) = &chunk.error {
            return Err(Error::Server {
                status: None,
                message: crate::http::bounded_message(error),
            });
        }
        let mut deltas = Vec::new();
        if !self.metadata_sent && chunk.model.is_some() {
            self.metadata_sent = true;
            deltas.push(ChatDelta::Metadata {
                id: None,
                model: chunk.model.clone(),
            });
        }
        let usage = chunk.usage();
        if let Some(message) = chunk.message {
            if !message.content.is_empty() {
                deltas.push(ChatDelta::Text { text: message.content });
            }
            for call in message.tool_calls {
                let index = self.calls;
                self.calls += 1;
                let call = tool_call(call, index as usize);
                deltas.push(ChatDelta::ToolCallStart {
                    index,
                    id: call.id,
                    name: call.name,
                });
                deltas.push(ChatDelta::ToolCallArguments {
                    index,
                    fragment: call.arguments,
                });
            }
        }
        if chunk.done {
            deltas.push(ChatDelta::Usage(usage));
            deltas.push(ChatDelta::Finish {
                stop_reason: stop_reason(chunk.done_reason.as_deref(), self.calls > 0),
                provider_reason: chunk.done_reason,
            });
        }
        Ok(Decoded::Deltas(deltas))
    }
}
