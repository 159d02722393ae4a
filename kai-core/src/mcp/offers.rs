//! What MCP servers offer besides tools: resources and prompt templates.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{ContentBlock, PromptMessage};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::message::{ContentPart, ImageSource, Message, Role};

/// A resource an MCP server offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpResource {
    /// Where it is, as the server names it.
    pub uri: String,
    /// Its name.
    pub name: String,
    /// What it holds, when the server says.
    #[serde(default)]
    pub description: Option<String>,
    /// Its media type, when the server says.
    #[serde(default)]
    pub mime_type: Option<String>,
}

/// One part of a resource, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpResourceContents {
    /// The part's URI.
    pub uri: String,
    /// Its media type, when the server says.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Its text, for a text part.
    #[serde(default)]
    pub text: Option<String>,
    /// Its bytes in base64, for a binary part.
    #[serde(default)]
    pub blob: Option<String>,
}

/// A prompt template an MCP server offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpPrompt {
    /// Its name.
    pub name: String,
    /// What it is for, when the server says.
    #[serde(default)]
    pub description: Option<String>,
    /// The arguments it takes.
    #[serde(default)]
    pub arguments: Vec<McpPromptArgument>,
}

/// An argument of an [`McpPrompt`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpPromptArgument {
    /// Its name.
    pub name: String,
    /// What it means, when the server says.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the prompt needs it.
    #[serde(default)]
    pub required: bool,
}

impl McpResource {
    /// A resource at `uri` named `name`.
    pub fn new(uri: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            name: name.into(),
            description: None,
            mime_type: None,
        }
    }

    /// This resource with a description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// This resource with a media type.
    pub fn with_mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }
}

impl McpResourceContents {
    /// Text at `uri`, of media type `mime_type`.
    pub fn text(uri: impl Into<String>, mime_type: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            mime_type: Some(mime_type.into()),
            text: Some(text.into()),
            blob: None,
        }
    }

    /// Bytes at `uri`, of media type `mime_type`.
    pub fn bytes(uri: impl Into<String>, mime_type: impl Into<String>, bytes: &[u8]) -> Self {
        Self {
            uri: uri.into(),
            mime_type: Some(mime_type.into()),
            text: None,
            blob: Some(STANDARD.encode(bytes)),
        }
    }
}

/// Resources whose URIs follow a template (`notes://{day}/summary`): each `{name}` stands for one
/// or more characters other than `/`, `?` and `#`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpResourceTemplate {
    /// The URI template.
    pub uri_template: String,
    /// Its name.
    pub name: String,
    /// What its resources hold, when the server says.
    #[serde(default)]
    pub description: Option<String>,
    /// Its resources' media type, when the server says.
    #[serde(default)]
    pub mime_type: Option<String>,
}

impl McpResourceTemplate {
    /// A template named `name`.
    pub fn new(uri_template: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            uri_template: uri_template.into(),
            name: name.into(),
            description: None,
            mime_type: None,
        }
    }

    /// This template with a description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// This template with its resources' media type.
    pub fn with_mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }
}

impl McpPrompt {
    /// A prompt named `name` for what `description` says, taking no arguments.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: Some(description.into()),
            arguments: Vec::new(),
        }
    }

    /// This prompt with one more argument.
    pub fn with_argument(mut self, name: impl Into<String>, description: impl Into<String>, required: bool) -> Self {
        self.arguments.push(McpPromptArgument {
            name: name.into(),
            description: Some(description.into()),
            required,
        });
        self
    }
}

/// A prompt's message as kAI's: text as text, an image as an image, anything else (an embedded
/// resource, audio) as its JSON in text.
pub(crate) fn message_from_mcp(server: &str, message: &PromptMessage) -> Result<Message, Error> {
    let part = match &message.content {
        ContentBlock::Text(text) => ContentPart::Text {
            text: text.text.clone(),
        },
        ContentBlock::Image(image) => match STANDARD.decode(&image.data) {
            Ok(data) => ContentPart::Image {
                source: ImageSource::Bytes {
                    media_type: image.mime_type.clone(),
                    data,
                },
            },
            Err(error) => {
                return Err(Error::malformed(
                    format!("MCP server {server:?} sent an image that is not base64: {error}"),
                    "",
                ));
            }
        },
        other => ContentPart::Text {
            text: serde_json::to_string(other).unwrap_or_default(),
        },
    };
    let role = match message.role {
        rmcp::model::Role::User => Role::User,
        rmcp::model::Role::Assistant => Role::Assistant,
    };
    Ok(Message {
        role,
        content: vec![part],
    })
}

/// kAI's `message` as MCP prompt messages, one per part: user and assistant messages of text and
/// images (inline, or a `data:` URL).
pub(crate) fn message_to_mcp(message: &Message) -> Result<Vec<PromptMessage>, String> {
    let role = match message.role {
        Role::User => rmcp::model::Role::User,
        Role::Assistant => rmcp::model::Role::Assistant,
        other => {
            return Err(format!(
                "MCP prompts hold user and assistant messages, not {other:?} ones"
            ));
        }
    };
    message
        .content
        .iter()
        .map(|part| {
            let content = match part {
                ContentPart::Text { text } => ContentBlock::text(text.clone()),
                ContentPart::Image {
                    source: ImageSource::Bytes { media_type, data },
                } => ContentBlock::image(STANDARD.encode(data), media_type.clone()),
                ContentPart::Image {
                    source: ImageSource::Url { url },
                } => match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                    Some((media_type, data)) => ContentBlock::image(data, media_type),
                    None => return Err("MCP prompts hold images inline, not by URL".to_owned()),
                },
                _ => return Err("MCP prompts hold text and images only".to_owned()),
            };
            Ok(PromptMessage::new(role.clone(), content))
        })
        .collect()
}

/// `item` (an rmcp model type) as one of ours with the same wire form.
pub(crate) fn convert<T: Serialize, U: serde::de::DeserializeOwned>(server: &str, item: &T) -> Result<U, Error> {
    serde_json::to_value(item)
        .and_then(serde_json::from_value)
        .map_err(|error| {
            Error::malformed(
                format!("MCP server {server:?} sent an item kAI cannot read: {error}"),
                "",
            )
        })
}
