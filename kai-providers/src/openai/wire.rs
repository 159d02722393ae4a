//! OpenAI Chat Completions JSON, and the one place it is converted to and from kai's types.

use kai_core::{
    ChatRequest, ChatResponse, ContentPart, Error, Message, ResponseFormat, Role, StopReason, ToolCall, ToolChoice,
    Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::openai::Quirks;

/// Builds the request body.
pub(crate) fn request_body(model: &str, request: &ChatRequest, stream: bool, quirks: &Quirks) -> Result<Value, Error> {
    if !quirks.tools && !request.tools.is_empty() {
        return Err(Error::Unsupported {
            message: format!("this server ({}) does not support tools", quirks.name),
        });
    }
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages(&request.messages, quirks)));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(parallel) = request.parallel_tool_calls.filter(|_| quirks.parallel_tool_calls_param) {
            body.insert("parallel_tool_calls".into(), json!(parallel));
        }
    }
    let choice = match &request.tool_choice {
        None if quirks.needs_explicit_tool_choice && !request.tools.is_empty() => Some(ToolChoice::Auto),
        // Without "required", forcing the only tool is the same thing; with several, the best left is "auto".
        Some(ToolChoice::Required) if !quirks.supports_required_tool_choice => match request.tools.as_slice() {
            [only] => Some(ToolChoice::Tool(only.name.clone())),
            _ => Some(ToolChoice::Auto),
        },
        other => other.clone(),
    };
    if let Some(choice) = choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) if quirks.schema_in_json_object => {
            body.insert(
                "response_format".into(),
                json!({"type": "json_object", "schema": schema}),
            );
        }
        Some(ResponseFormat::JsonSchema { name, schema, strict }) => {
            // Strict mode takes only its subset of JSON Schema; a schema sent as a hint goes as it is,
            // and so does one with a map (keys of the model's choosing), which strict mode cannot
            // express: the agent validates the answer either way.
            let rewritten = strict
                .then(|| crate::json_schema::rewrite(schema, &crate::json_schema::OPENAI_STRICT))
                .filter(|rewritten| !rewritten.has_maps);
            let (schema, strict) = match rewritten {
                Some(rewritten) => (rewritten.schema, true),
                None => (schema.clone(), false),
            };
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}),
            );
        }
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert(quirks.max_tokens_field.into(), json!(max_tokens));
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    if stream {
        body.insert("stream".into(), json!(true));
        if quirks.stream_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    crate::convert::merge_extra(&mut body, request);
    Ok(Value::Object(body))
}

fn messages(messages: &[Message], quirks: &Quirks) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        // Tool results travel as one `tool` message each, whatever message holds them.
        let results: Vec<Value> = message
            .tool_results()
            .map(|result| json!({"role": "tool", "tool_call_id": result.call_id, "content": result.content}))
            .collect();
        let calls: Vec<Value> = message
            .tool_calls()
            .map(|call| {
                json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
            })
            .collect();
        let has_other = message
            .content
            .iter()
            .any(|part| matches!(part, ContentPart::Text { .. } | ContentPart::Image { .. }));
        match message.role {
            Role::Tool => {}
            Role::Assistant => {
                let text = message.text();
                let content = if text.is_empty() && quirks.accepts_null_content {
                    Value::Null
                } else {
                    Value::String(text)
                };
                let mut value = json!({"role": "assistant", "content": content});
                if !calls.is_empty() {
                    value["tool_calls"] = Value::Array(calls);
                }
                out.push(value);
            }
            Role::System => out.push(json!({"role": "system", "content": message.text()})),
            Role::User if has_other => out.push(json!({"role": "user", "content": user_content(message)})),
            Role::User => {}
        }
        out.extend(results);
    }
    out
}

fn user_content(message: &Message) -> Value {
    let only_text = message
        .content
        .iter()
        .all(|part| !matches!(part, ContentPart::Image { .. }));
    if only_text {
        return Value::String(message.text());
    }
    let parts = message
        .content
        .iter()
        .filter_map(|part| match part {
            ContentPart::Text { text } => Some(json!({"type": "text", "text": text})),
            ContentPart::Image { source } => {
                Some(json!({"type": "image_url", "image_url": {"url": crate::media::image_url(source)}}))
            }
            _ => None,
        })
        .collect();
    Value::Array(parts)
}

/// A chat completion, or one streamed chunk of one. Every field is optional: servers that call
/// themselves OpenAI-compatible leave out different ones.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct Completion {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) choices: Vec<Choice>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
    #[serde(default)]
    pub(crate) error: Option<WireError>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Choice {
    #[serde(default)]
    pub(crate) message: Option<WireMessage>,
    #[serde(default)]
    pub(crate) delta: Option<WireMessage>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub(crate) content: Option<String>,
    #[serde(default)]
    pub(crate) refusal: Option<String>,
    #[serde(default)]
    pub(crate) tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireToolCall {
    #[serde(default)]
    pub(crate) index: Option<u32>,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) function: Option<WireFunction>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireFunction {
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// A JSON string per the API; some servers send an object instead.
    #[serde(default)]
    pub(crate) arguments: Option<Value>,
}

impl WireFunction {
    pub(crate) fn arguments_text(&self) -> String {
        match &self.arguments {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Usage {
        Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cached_input_tokens: usage.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireError {
    #[serde(default)]
    pub(crate) message: Option<String>,
}

pub(crate) fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "stop" | "eos" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolCalls,
        "content_filter" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_owned()),
    }
}

/// Converts a complete (non-streamed) completion.
pub(crate) fn response(completion: Completion, raw: &str) -> Result<ChatResponse, Error> {
    if let Some(error) = completion.error {
        return Err(Error::Server {
            status: None,
            message: error.message.unwrap_or_default(),
        });
    }
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(Error::malformed("the completion has no choices", raw));
    };
    let message = choice.message.unwrap_or_default();
    let mut content = Vec::new();
    let mut refused = false;
    match (message.content, message.refusal) {
        (Some(text), _) if !text.is_empty() => content.push(ContentPart::Text { text }),
        (_, Some(refusal)) if !refusal.is_empty() => {
            refused = true;
            content.push(ContentPart::Text { text: refusal });
        }
        _ => {}
    }
    for (index, call) in message.tool_calls.unwrap_or_default().into_iter().enumerate() {
        let function = call.function.unwrap_or_default();
        content.push(ContentPart::ToolCall(ToolCall {
            id: call
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{index}")),
            arguments: function.arguments_text(),
            name: function.name.unwrap_or_default(),
            signature: None,
        }));
    }
    Ok(ChatResponse {
        message: Message::new(Role::Assistant, content),
        usage: completion.usage.map(Usage::from).unwrap_or_default(),
        stop_reason: match refused {
            true => Some(StopReason::Refusal),
            false => choice.finish_reason.as_deref().map(stop_reason),
        },
        provider_stop_reason: choice.finish_reason,
        model: completion.model,
        id: completion.id,
    })
}

/// The error body OpenAI (and most compatible servers) send.
#[derive(Debug, Deserialize, Serialize, Default)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) error: Option<ErrorDetail>,
    /// Some servers put the message at the top level.
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// `error` is an object for OpenAI and a plain string for some compatible servers.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum ErrorDetail {
    Object {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<Value>,
    },
    Text(String),
}
