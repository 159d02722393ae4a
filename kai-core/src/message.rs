//! Messages: what a conversation with a model is made of.
//!
//! These are kAI's own types. Every provider converts between them and its wire format in exactly one
//! place, so no provider's field names leak in here. All types round-trip losslessly through serde.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The human, or the application speaking for them.
    User,
    /// The model.
    Assistant,
    /// Results of tool calls, sent back to the model.
    Tool,
}

/// One message of a conversation: a role and an ordered list of content parts.
///
/// ```
/// use kai_core::{Message, Role};
///
/// let msg = Message::user("What is 2 + 2?");
/// assert_eq!(msg.role, Role::User);
/// assert_eq!(msg.text(), "What is 2 + 2?");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it contains, in order.
    pub content: Vec<ContentPart>,
}

impl Message {
    /// A message with the given role and parts.
    pub fn new(role: Role, content: Vec<ContentPart>) -> Self {
        Self { role, content }
    }

    /// A system message holding one text part.
    pub fn system(text: impl Into<String>) -> Self {
        Self::new(Role::System, vec![ContentPart::text(text)])
    }

    /// A user message holding one text part.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(Role::User, vec![ContentPart::text(text)])
    }

    /// An assistant message holding one text part.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant, vec![ContentPart::text(text)])
    }

    /// A tool message carrying one tool result.
    pub fn tool_result(result: ToolResult) -> Self {
        Self::new(Role::Tool, vec![ContentPart::ToolResult(result)])
    }

    /// The text parts joined together (images, tool calls and tool results are skipped).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let ContentPart::Text { text } = part {
                out.push_str(text);
            }
        }
        out
    }

    /// The tool calls this message asks for, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.content.iter().filter_map(|part| match part {
            ContentPart::ToolCall(call) => Some(call),
            _ => None,
        })
    }

    /// The tool results this message carries, in order.
    pub fn tool_results(&self) -> impl Iterator<Item = &ToolResult> {
        self.content.iter().filter_map(|part| match part {
            ContentPart::ToolResult(result) => Some(result),
            _ => None,
        })
    }
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by URL or inline bytes.
    Image {
        /// Where the image comes from.
        source: ImageSource,
    },
    /// A request from the model to call a tool.
    ToolCall(ToolCall),
    /// The result of a tool call, sent back to the model.
    ToolResult(ToolResult),
    /// The model's visible reasoning before it answered (Anthropic's extended thinking). Providers that
    /// need it back (to continue a turn with tool calls) get it exactly as received; the others ignore it.
    Reasoning {
        /// The reasoning text.
        text: String,
        /// The provider's signature over it, which must come back unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the provider encrypted; opaque, sent back unchanged.
    RedactedReasoning {
        /// The provider's encrypted data.
        data: String,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// An image part referring to a URL.
    pub fn image_url(url: impl Into<String>) -> Self {
        Self::Image {
            source: ImageSource::Url { url: url.into() },
        }
    }

    /// An image part holding the encoded image bytes (PNG, JPEG, …) and their media type.
    pub fn image_bytes(media_type: impl Into<String>, data: Vec<u8>) -> Self {
        Self::Image {
            source: ImageSource::Bytes {
                media_type: media_type.into(),
                data,
            },
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// A URL the provider fetches (`https:` or `data:`).
    Url {
        /// The URL.
        url: String,
    },
    /// The encoded image itself. Serialized as standard base64.
    Bytes {
        /// The media type, such as `image/png`.
        media_type: String,
        /// The encoded image.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(data))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        STANDARD.decode(encoded.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// A model's request to call a tool.
///
/// `arguments` holds the JSON text exactly as the model produced it. Models produce invalid JSON often
/// enough that parsing is left to the moment of the call, where a failure becomes an error the model can
/// read and recover from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for this call; tool results refer to it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as JSON text, unparsed.
    pub arguments: String,
    /// An opaque token some providers attach to a call and require back with it in later requests
    /// (Gemini's thought signatures). Kept as is; never interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl ToolCall {
    /// A tool call with arguments given as a JSON value.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: &serde_json::Value) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.to_string(),
            signature: None,
        }
    }
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The id of the call this answers.
    pub call_id: String,
    /// The name of the tool that was called.
    pub name: String,
    /// The output: JSON text for structured output, or plain text.
    pub content: String,
    /// Whether `content` describes a failure (unknown tool, bad arguments, the tool's own error, timeout,
    /// or a hook's denial).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl ToolResult {
    /// A successful result.
    pub fn success(call: &ToolCall, content: impl Into<String>) -> Self {
        Self {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed result whose content explains the failure to the model.
    pub fn error(call: &ToolCall, content: impl Into<String>) -> Self {
        Self {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: content.into(),
            is_error: true,
        }
    }
}

/// Tokens a model call consumed. Adds up across calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
}

impl Usage {
    /// This usage less `earlier`, field by field, stopping at zero.
    pub fn saturating_sub(self, earlier: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            cached_input_tokens: self.cached_input_tokens.saturating_sub(earlier.cached_input_tokens),
        }
    }

    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

impl Add for Usage {
    type Output = Usage;

    fn add(self, rhs: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(rhs.input_tokens),
            output_tokens: self.output_tokens.saturating_add(rhs.output_tokens),
            cached_input_tokens: self.cached_input_tokens.saturating_add(rhs.cached_input_tokens),
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        *self = *self + rhs;
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), Add::add)
    }
}

/// Why the model stopped generating.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its turn.
    EndTurn,
    /// It asked for tool calls.
    ToolCalls,
    /// It hit the `max_tokens` limit.
    MaxTokens,
    /// It produced one of the stop sequences.
    StopSequence,
    /// The provider's content filter stopped it.
    ContentFilter,
    /// The model declined to answer; the text holds its explanation.
    Refusal,
    /// A provider-specific reason, as the provider named it.
    Other(String),
}

impl StopReason {
    /// The reason as a snake_case string: its serde name, or the provider's own for
    /// [`Other`](StopReason::Other). Traces record it as `gen_ai.response.finish_reasons` when the
    /// provider gave no word of its own ([`ChatResponse::provider_stop_reason`](crate::ChatResponse)).
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolCalls => "tool_calls",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ContentFilter => "content_filter",
            StopReason::Refusal => "refusal",
            StopReason::Other(reason) => reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_round_trips_through_json() {
        let call = ToolCall::new("c1", "add", &serde_json::json!({"a": 1, "b": 2}));
        let msg = Message::new(
            Role::Assistant,
            vec![
                ContentPart::text("hi"),
                ContentPart::image_url("https://example.com/a.png"),
                ContentPart::image_bytes("image/png", vec![0, 1, 2, 255]),
                ContentPart::ToolCall(call.clone()),
                ContentPart::ToolResult(ToolResult::error(&call, "boom")),
                ContentPart::Reasoning {
                    text: "thinking".into(),
                    signature: Some("sig".into()),
                },
                ContentPart::RedactedReasoning { data: "opaque".into() },
            ],
        );
        let json = serde_json::to_string(&msg).unwrap();
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn invalid_tool_arguments_are_kept_verbatim() {
        let call = ToolCall {
            id: "1".into(),
            name: "x".into(),
            arguments: "{\"a\": 1,".into(),
            signature: Some("opaque".into()),
        };
        let back: ToolCall = serde_json::from_str(&serde_json::to_string(&call).unwrap()).unwrap();
        assert_eq!(back.arguments, "{\"a\": 1,");
    }

    #[test]
    fn usage_adds_and_saturates() {
        let a = Usage {
            input_tokens: 3,
            output_tokens: 4,
            cached_input_tokens: 1,
        };
        let total: Usage = [a, a].into_iter().sum();
        assert_eq!(total.total_tokens(), 14);
        let big = Usage {
            input_tokens: u64::MAX,
            ..Usage::default()
        };
        assert_eq!((big + a).input_tokens, u64::MAX);
    }

    #[test]
    fn stop_reason_other_keeps_the_provider_name() {
        let json = serde_json::to_string(&StopReason::Other("recitation".into())).unwrap();
        assert_eq!(
            serde_json::from_str::<StopReason>(&json).unwrap(),
            StopReason::Other("recitation".into())
        );
    }
}
