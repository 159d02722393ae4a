//! Ollama's native `/api/chat` JSON, and the one place it is converted to and from kai's types.

use kai_core::{
    ChatRequest, ChatResponse, ContentPart, Error, ImageSource, Message, ResponseFormat, Role, StopReason, ToolCall,
    ToolChoice, Usage,
};
use serde::Deserialize;

use crate::convert::arguments_object;
use serde_json::{Value, json};

pub(crate) fn request_body(model: &str, request: &ChatRequest, stream: bool) -> Result<Value, Error> {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages(&request.messages)?));
    body.insert("stream".into(), json!(stream));
    // Ollama has no tool_choice: "none" means not offering the tools; a forced tool means offering only it.
    let tools: Vec<_> = match &request.tool_choice {
        Some(ToolChoice::None) => Vec::new(),
        Some(ToolChoice::Tool(name)) => request.tools.iter().filter(|t| &t.name == name).collect(),
        _ => request.tools.iter().collect(),
    };
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert("format".into(), schema.clone());
        }
        Some(ResponseFormat::JsonObject) => {
            body.insert("format".into(), json!("json"));
        }
        _ => {}
    }
    let mut options = serde_json::Map::new();
    if let Some(temperature) = request.temperature {
        options.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        options.insert("num_predict".into(), json!(max_tokens));
    }
    if !request.stop.is_empty() {
        options.insert("stop".into(), json!(request.stop));
    }
    for (key, value) in &request.extra {
        // Extra `options` are merged with the ones above rather than replacing them.
        match (key.as_str(), value) {
            ("options", Value::Object(extra)) => options.extend(extra.clone()),
            _ => {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    Ok(Value::Object(body))
}

fn messages(messages: &[Message]) -> Result<Vec<Value>, Error> {
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        let role = match message.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let text = message.text();
        let mut images = Vec::new();
        for part in &message.content {
            if let ContentPart::Image { source } = part {
                images.push(match source {
                    ImageSource::Bytes { data, .. } => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode(data)
                    }
                    ImageSource::Url { url } => match crate::media::parse_data_url(url) {
                        Some((_, data)) => data.to_owned(),
                        None => {
                            return Err(Error::Unsupported {
                                message: "Ollama takes images as bytes, not URLs".into(),
                            });
                        }
                    },
                });
            }
        }
        let calls: Vec<Value> = message
            .tool_calls()
            .map(|call| json!({"id": call.id, "function": {"name": call.name, "arguments": arguments_object(call)}}))
            .collect();
        if role != "tool" && (!text.is_empty() || !images.is_empty() || !calls.is_empty()) {
            let mut value = json!({"role": role, "content": text});
            if !images.is_empty() {
                value["images"] = json!(images);
            }
            if !calls.is_empty() {
                value["tool_calls"] = Value::Array(calls);
            }
            out.push(value);
        }
        for result in message.tool_results() {
            out.push(json!({
                "role": "tool", "content": result.content, "tool_name": result.name, "tool_call_id": result.call_id
            }));
        }
    }
    Ok(out)
}

/// One `/api/chat` response, or one line of a streamed one.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ChatLine {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<WireMessage>,
    #[serde(default)]
    pub(crate) done: bool,
    #[serde(default)]
    pub(crate) done_reason: Option<String>,
    #[serde(default)]
    pub(crate) prompt_eval_count: Option<u64>,
    #[serde(default)]
    pub(crate) eval_count: Option<u64>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub(crate) content: String,
    #[serde(default)]
    pub(crate) tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireToolCall {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) function: WireFunction,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireFunction {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) arguments: Value,
}

impl ChatLine {
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_eval_count.unwrap_or(0),
            output_tokens: self.eval_count.unwrap_or(0),
            cached_input_tokens: 0,
        }
    }
}

/// Ollama ends a turn that called tools with `stop`, like any other.
pub(crate) fn stop_reason(reason: Option<&str>, has_calls: bool) -> StopReason {
    match reason {
        Some("length") => StopReason::MaxTokens,
        _ if has_calls => StopReason::ToolCalls,
        Some("stop") | None => StopReason::EndTurn,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

/// A tool call; `ordinal` gives ids to calls from servers that send none.
pub(crate) fn tool_call(call: WireToolCall, ordinal: usize) -> ToolCall {
    ToolCall {
        id: call
            .id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("call_{ordinal}")),
        name: call.function.name,
        arguments: match call.function.arguments {
            Value::Null => "{}".to_owned(),
            Value::String(text) => text,
            other => other.to_string(),
        },
        signature: None,
    }
}

pub(crate) fn response(line: ChatLine) -> Result<ChatResponse, Error> {
    if let Some(error) = &line.error {
        return Err(Error::Server {
            status: None,
            message: crate::http::bounded_message(error),
        });
    }
    let usage = line.usage();
    let message = line.message.unwrap_or_default();
    let mut content = Vec::new();
    if !message.content.is_empty() {
        content.push(ContentPart::Text { text: message.content });
    }
    let has_calls = !message.tool_calls.is_empty();
    for (ordinal, call) in message.tool_calls.into_iter().enumerate() {
        content.push(ContentPart::ToolCall(tool_call(call, ordinal)));
    }
    Ok(ChatResponse {
        message: Message::new(Role::Assistant, content),
        usage,
        stop_reason: Some(stop_reason(line.done_reason.as_deref(), has_calls)),
        provider_stop_reason: line.done_reason,
        model: line.model,
        id: None,
    })
}
