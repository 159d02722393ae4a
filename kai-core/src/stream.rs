//! Streaming: the deltas a chat model emits and their assembly into a complete response.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::message::{ContentPart, Message, Role, StopReason, ToolCall, Usage};
use crate::request::ChatResponse;

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChatDelta {
    /// More answer text.
    Text {
        /// The new text.
        text: String,
    },
    /// A tool call begins (or its id/name are repeated, as some servers do).
    ToolCallStart {
        /// The call's position in the answer; fragments refer to it.
        index: u32,
        /// The provider's call id; may be empty, in which case one is generated.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallArguments {
        /// The call's position in the answer.
        index: u32,
        /// The next piece of the arguments' JSON text.
        fragment: String,
    },
    /// An opaque token the provider attached to a tool call, to be sent back with it (see
    /// [`ToolCall::signature`]).
    ToolCallSignature {
        /// The call's position in the answer.
        index: u32,
        /// The token.
        signature: String,
    },
    /// More of a reasoning block's text.
    Reasoning {
        /// The block's position among the answer's reasoning blocks.
        index: u32,
        /// The new text.
        text: String,
    },
    /// The signature that closes a reasoning block (see [`ContentPart::Reasoning`]).
    ReasoningSignature {
        /// The block's position.
        index: u32,
        /// The signature.
        signature: String,
    },
    /// A reasoning block the provider encrypted.
    RedactedReasoning {
        /// The block's position.
        index: u32,
        /// The encrypted data.
        data: String,
    },
    /// Token usage so far. Counts are cumulative: each field keeps the largest value seen.
    Usage(Usage),
    /// The provider's response id and model name.
    Metadata {
        /// The response id.
        id: Option<String>,
        /// The model that answered.
        model: Option<String>,
    },
    /// Generation ended.
    Finish {
        /// Why it ended.
        stop_reason: StopReason,
        /// The provider's own word for it (`stop`, `end_turn`, `STOP`, ...), when it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_reason: Option<String>,
    },
}

impl ChatDelta {
    /// A text delta.
    pub fn text(text: impl Into<String>) -> Self {
        ChatDelta::Text { text: text.into() }
    }
}

/// Assembles [`ChatDelta`]s into a [`ChatResponse`].
///
/// Lenient by design, because real servers differ: argument fragments may arrive for a call whose start
/// was never sent, ids may be missing (one is generated from the index), and names or ids may be
/// repeated on every chunk. Nothing here panics or fails; a call left without a name reaches the agent,
/// which reports it to the model as an unknown tool.
#[derive(Debug, Default, Clone)]
pub struct ResponseAccumulator {
    text: String,
    /// By index: a lookup per fragment stays cheap however many calls a hostile stream opens.
    calls: BTreeMap<u32, PartialCall>,
    reasoning: BTreeMap<u32, PartialReasoning>,
    usage: Usage,
    stop_reason: Option<StopReason>,
    provider_stop_reason: Option<String>,
    id: Option<String>,
    model: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct PartialReasoning {
    text: String,
    signature: Option<String>,
    redacted: Option<String>,
}

#[derive(Debug, Clone)]
struct PartialCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
    signature: Option<String>,
}

impl ResponseAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one delta.
    pub fn push(&mut self, delta: ChatDelta) {
        match delta {
            ChatDelta::Text { text } => self.text.push_str(&text),
            ChatDelta::ToolCallStart { index, id, name } => {
                let call = self.call_mut(index);
                if !id.is_empty() {
                    call.id = id;
                }
                if !name.is_empty() {
                    call.name = name;
                }
            }
            ChatDelta::ToolCallArguments { index, fragment } => self.call_mut(index).arguments.push_str(&fragment),
            ChatDelta::ToolCallSignature { index, signature } => self.call_mut(index).signature = Some(signature),
            ChatDelta::Reasoning { index, text } => self.reasoning.entry(index).or_default().text.push_str(&text),
            ChatDelta::ReasoningSignature { index, signature } => {
                self.reasoning.entry(index).or_default().signature = Some(signature);
            }
            ChatDelta::RedactedReasoning { index, data } => {
                self.reasoning.entry(index).or_default().redacted = Some(data)
            }
            ChatDelta::Usage(usage) => {
                self.usage.input_tokens = self.usage.input_tokens.max(usage.input_tokens);
                self.usage.output_tokens = self.usage.output_tokens.max(usage.output_tokens);
                self.usage.cached_input_tokens = self.usage.cached_input_tokens.max(usage.cached_input_tokens);
            }
            ChatDelta::Metadata { id, model } => {
                self.id = id.or(self.id.take());
                self.model = model.or(self.model.take());
            }
            ChatDelta::Finish {
                stop_reason,
                provider_reason,
            } => {
                self.stop_reason = Some(stop_reason);
                self.provider_stop_reason = provider_reason;
            }
        }
    }

    /// The text received so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The complete response: the reasoning first, then the text, then the tool calls in index order.
    pub fn finish(self) -> ChatResponse {
        let mut content = Vec::with_capacity(self.reasoning.len() + self.calls.len() + 1);
        for block in self.reasoning.into_values() {
            content.push(match block.redacted {
                Some(data) => ContentPart::RedactedReasoning { data },
                None => ContentPart::Reasoning {
                    text: block.text,
                    signature: block.signature,
                },
            });
        }
        if !self.text.is_empty() {
            content.push(ContentPart::Text { text: self.text });
        }
        for call in self.calls.into_values() {
            let id = if call.id.is_empty() {
                format!("call_{}", call.index)
            } else {
                call.id
            };
            content.push(ContentPart::ToolCall(ToolCall {
                id,
                name: call.name,
                arguments: call.arguments,
                signature: call.signature,
            }));
        }
        ChatResponse {
            message: Message::new(Role::Assistant, content),
            usage: self.usage,
            stop_reason: self.stop_reason,
            provider_stop_reason: self.provider_stop_reason,
            model: self.model,
            id: self.id,
        }
    }

    fn call_mut(&mut self, index: u32) -> &mut PartialCall {
        self.calls.entry(index).or_insert_with(|| PartialCall {
            index,
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
            signature: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_interleaved_tool_call_fragments() {
        let mut acc = ResponseAccumulator::new();
        for delta in [
            ChatDelta::text("Let me check. "),
            ChatDelta::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "weather".into(),
            },
            ChatDelta::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "time".into(),
            },
            ChatDelta::ToolCallArguments {
                index: 1,
                fragment: "{\"city\":".into(),
            },
            ChatDelta::ToolCallArguments {
                index: 0,
                fragment: "{}".into(),
            },
            ChatDelta::ToolCallArguments {
                index: 1,
                fragment: "\"Oslo\"}".into(),
            },
            ChatDelta::ToolCallStart {
                index: 1,
                id: String::new(),
                name: String::new(),
            },
            ChatDelta::Usage(Usage {
                input_tokens: 10,
                output_tokens: 1,
                cached_input_tokens: 0,
            }),
            ChatDelta::Usage(Usage {
                input_tokens: 0,
                output_tokens: 7,
                cached_input_tokens: 0,
            }),
            ChatDelta::Finish {
                stop_reason: StopReason::ToolCalls,
                provider_reason: Some("tool_calls".into()),
            },
        ] {
            acc.push(delta);
        }
        let response = acc.finish();
        assert_eq!(response.text(), "Let me check. ");
        let calls: Vec<_> = response.tool_calls().cloned().collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (
                calls[0].id.as_str(),
                calls[0].name.as_str(),
                calls[0].arguments.as_str()
            ),
            ("a", "time", "{}")
        );
        assert_eq!(calls[1].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(calls[1].name, "weather");
        assert_eq!(response.usage.input_tokens, 10);
        assert_eq!(response.usage.output_tokens, 7);
        assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
        assert_eq!(response.provider_stop_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn fragments_without_a_start_get_a_generated_id() {
        let mut acc = ResponseAccumulator::new();
        acc.push(ChatDelta::ToolCallArguments {
            index: 3,
            fragment: "{".into(),
        });
        let response = acc.finish();
        let call = response.tool_calls().next().unwrap();
        assert_eq!(call.id, "call_3");
        assert_eq!(call.name, "");
    }

    #[test]
    fn replay_round_trips_a_response() {
        let mut response = ChatResponse::new(Message::new(
            Role::Assistant,
            vec![
                ContentPart::text("ok"),
                ContentPart::ToolCall(ToolCall {
                    signature: Some("sig".into()),
                    ..ToolCall::new("x", "t", &serde_json::json!({"q": 1}))
                }),
            ],
        ));
        response.usage.input_tokens = 4;
        response.stop_reason = Some(StopReason::ToolCalls);
        response.id = Some("r1".into());
        let mut acc = ResponseAccumulator::new();
        for delta in ChatDelta::replay(&response) {
            acc.push(delta);
        }
        assert_eq!(acc.finish(), response);
    }
}
