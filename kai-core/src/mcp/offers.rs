//! What MCP servers offer besides tools: resources and prompt templates.

use serde::{Deserialize, Serialize};

use crate::error::Error;

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
