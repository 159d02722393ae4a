//! What an [`McpServer`](crate::mcp::McpServer) offers besides tools: resources, resource
//! templates and prompts.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::ErrorData;
use rmcp::model::{GetPromptResult, ReadResourceResult};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::mcp::offers::{McpPrompt, McpResource, McpResourceContents, McpResourceTemplate, convert, message_to_mcp};
use crate::message::Message;
use crate::tool::ToolError;

/// Reads the resource at a URI a template matched, given the template's variables.
pub(crate) type Reader = Arc<
    dyn Fn(String, HashMap<String, String>) -> BoxFuture<'static, Result<Vec<McpResourceContents>, ToolError>>
        + Send
        + Sync,
>;

/// Fills a prompt in with its arguments.
pub(crate) type Renderer =
    Arc<dyn Fn(Map<String, Value>) -> BoxFuture<'static, Result<Vec<Message>, ToolError>> + Send + Sync>;

/// The longest URI matched against templates, in bytes.
const MAX_URI: usize = 8192;

/// A server's resources, templates and prompts.
#[derive(Clone, Default)]
pub(crate) struct Catalog {
    resources: Vec<(McpResource, McpResourceContents)>,
    templates: Vec<(McpResourceTemplate, UriTemplate, Reader)>,
    prompts: Vec<(McpPrompt, Renderer)>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field(
                "resources",
                &self.resources.iter().map(|(r, _)| &r.uri).collect::<Vec<_>>(),
            )
            .field(
                "templates",
                &self
                    .templates
                    .iter()
                    .map(|(t, _, _)| &t.uri_template)
                    .collect::<Vec<_>>(),
            )
            .field(
                "prompts",
                &self.prompts.iter().map(|(p, _)| &p.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Catalog {
    /// Whether there are resources or templates to offer.
    pub(crate) fn has_resources(&self) -> bool {
        !self.resources.is_empty() || !self.templates.is_empty()
    }

    /// Whether there are prompts to offer.
    pub(crate) fn has_prompts(&self) -> bool {
        !self.prompts.is_empty()
    }

    pub(crate) fn add_resource(&mut self, resource: McpResource, contents: McpResourceContents) {
        self.resources.push((resource, contents));
    }

    /// Adds a template; fails with [`Error::Config`] when it does not parse.
    pub(crate) fn add_template(&mut self, template: McpResourceTemplate, reader: Reader) -> Result<(), Error> {
        let parsed = UriTemplate::parse(&template.uri_template).map_err(|problem| Error::Config {
            message: format!("resource template {:?}: {problem}", template.uri_template),
        })?;
        self.templates.push((template, parsed, reader));
        Ok(())
    }

    pub(crate) fn add_prompt(&mut self, prompt: McpPrompt, renderer: Renderer) {
        self.prompts.push((prompt, renderer));
    }

    /// The resources, in MCP's terms.
    pub(crate) fn resources(&self) -> Vec<rmcp::model::Resource> {
        self.resources
            .iter()
            .filter_map(|(resource, _)| convert("kai", resource).ok())
            .collect()
    }

    /// The templates, in MCP's terms.
    pub(crate) fn templates(&self) -> Vec<rmcp::model::ResourceTemplate> {
        self.templates
            .iter()
            .filter_map(|(template, _, _)| convert("kai", template).ok())
            .collect()
    }

    /// The prompts, in MCP's terms.
    pub(crate) fn prompts(&self) -> Vec<rmcp::model::Prompt> {
        self.prompts
            .iter()
            .filter_map(|(prompt, _)| convert("kai", prompt).ok())
            .collect()
    }

    /// The resource at `uri`: a resource of that URI, or what the first template it matches reads.
    pub(crate) async fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let contents = if let Some((_, contents)) = self.resources.iter().find(|(resource, _)| resource.uri == uri) {
            vec![contents.clone()]
        } else {
            let matched = (uri.len() <= MAX_URI)
                .then(|| {
                    self.templates
                        .iter()
                        .find_map(|(_, template, reader)| Some((template.matches(uri)?, reader)))
                })
                .flatten();
            let Some((variables, reader)) = matched else {
                let mut shown = uri.to_owned();
                shown.truncate(shown.floor_char_boundary(200));
                return Err(ErrorData::resource_not_found(format!("no resource at {shown:?}"), None));
            };
            reader(uri.to_owned(), variables)
                .await
                .map_err(|error| ErrorData::internal_error(error.to_string(), None))?
        };
        let contents = contents
            .iter()
            .map(|contents| convert("kai", contents))
            .collect::<Result<_, _>>()
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        Ok(ReadResourceResult::new(contents))
    }

    /// The prompt `name` filled in with `arguments`, every required one present.
    pub(crate) async fn prompt(&self, name: &str, arguments: Map<String, Value>) -> Result<GetPromptResult, ErrorData> {
        let Some((prompt, renderer)) = self.prompts.iter().find(|(prompt, _)| prompt.name == name) else {
            return Err(ErrorData::invalid_params(format!("no prompt is named {name:?}"), None));
        };
        // Prompt arguments are strings (the specification's `{ [key: string]: string }`), and only
        // those the prompt declares.
        if let Some((unknown, _)) = arguments
            .iter()
            .find(|(key, _)| !prompt.arguments.iter().any(|argument| &argument.name == *key))
        {
            let mut unknown = unknown.clone();
            unknown.truncate(unknown.floor_char_boundary(200));
            return Err(ErrorData::invalid_params(
                format!("prompt {name:?} takes no argument {unknown:?}"),
                None,
            ));
        }
        if let Some((key, _)) = arguments.iter().find(|(_, value)| !value.is_string()) {
            return Err(ErrorData::invalid_params(
                format!("argument {key:?} of prompt {name:?} is not a string"),
                None,
            ));
        }
        if let Some(missing) = prompt
            .arguments
            .iter()
            .find(|argument| argument.required && !arguments.contains_key(&argument.name))
        {
            return Err(ErrorData::invalid_params(
                format!("prompt {name:?} needs argument {:?}", missing.name),
                None,
            ));
        }
        let messages = renderer(arguments)
            .await
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        let mut mcp = Vec::new();
        for message in &messages {
            mcp.extend(message_to_mcp(message).map_err(|problem| ErrorData::internal_error(problem, None))?);
        }
        let mut result = GetPromptResult::new(mcp);
        result.description = prompt.description.clone();
        Ok(result)
    }
}

/// A URI template of RFC 6570's first level: literal text and `{name}` variables, none adjacent,
/// each standing for one or more characters other than `/`, `?` and `#`. Values are given as they
/// are in the URI, not percent-decoded (a reader that decodes them and joins them to paths must
/// check what it gets).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UriTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl UriTemplate {
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or("a `{` is not closed")?;
                    let name = &rest[1..end];
                    let fit = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !fit {
                        return Err(format!("variable {name:?}: use letters, digits and `_`"));
                    }
                    if matches!(parts.last(), Some(Part::Variable(_))) {
                        return Err("two variables meet: put text between them".to_owned());
                    }
                    parts.push(Part::Variable(name.to_owned()));
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    if rest[..end].contains('}') {
                        return Err("a `}` closes nothing".to_owned());
                    }
                    parts.push(Part::Literal(rest[..end].to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        Ok(Self { parts })
    }

    /// The variables, if `uri` matches; each takes the shortest run that lets the literal after it
    /// follow.
    pub(crate) fn matches(&self, uri: &str) -> Option<HashMap<String, String>> {
        let mut variables = HashMap::new();
        let mut rest = uri;
        let mut parts = self.parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(literal) => rest = rest.strip_prefix(literal.as_str())?,
                Part::Variable(name) => {
                    let end = match parts.peek() {
                        Some(Part::Literal(next)) => {
                            // At least one character: search past the first, whatever its width.
                            let first = rest.chars().next()?.len_utf8();
                            rest[first..].find(next.as_str())? + first
                        }
                        _ => rest.len(),
                    };
                    let value = &rest[..end];
                    if value.is_empty() || value.contains(['/', '?', '#']) {
                        return None;
                    }
                    variables.insert(name.clone(), value.to_owned());
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(variables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_uris_and_no_others() {
        let template = UriTemplate::parse("test://template/{id}/data").unwrap();
        let variables = template.matches("test://template/123/data").unwrap();
        assert_eq!(variables["id"], "123");
        assert_eq!(template.matches("test://template//data"), None);
        assert_eq!(template.matches("test://template/1/2/data"), None);
        assert_eq!(template.matches("test://template/123/data/more"), None);
        assert_eq!(template.matches("other://template/123/data"), None);
        let tail = UriTemplate::parse("notes://{day}").unwrap();
        assert_eq!(tail.matches("notes://monday").unwrap()["day"], "monday");
        assert_eq!(tail.matches("notes://"), None);
        let two = UriTemplate::parse("x://{a}-{b}").unwrap();
        assert_eq!(tail.matches("notes://ünï").unwrap()["day"], "ünï");
        let variables = two.matches("x://1-2-3").unwrap();
        assert_eq!((variables["a"].as_str(), variables["b"].as_str()), ("1", "2-3"));
        for bad in ["x://{a", "x://{a}{b}", "x://{}", "x://{a b}", "x://a}"] {
            assert!(UriTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
