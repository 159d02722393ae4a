//! Gemini `generateContent` JSON, and the one place it is converted to and from kai's types.

use std::time::Duration;

use base64::Engine as _;
use kai_core::{
    ChatRequest, ChatResponse, ContentPart, Error, ImageSource, Message, ResponseFormat, Role, StopReason, ToolCall,
    ToolChoice, Usage,
};
use serde::Deserialize;

use crate::convert::{alternating_turns, arguments_object, system_text};
use serde_json::{Value, json};

/// Ids kai makes up for calls Gemini sent without one; they are not sent back.
pub(crate) const LOCAL_ID_PREFIX: &str = "kai_gemini_";

pub(crate) fn request_body(request: &ChatRequest) -> Value {
    let mut body = serde_json::Map::new();
    if let Some(system) = system_text(&request.messages) {
        body.insert("systemInstruction".into(), json!({"parts": [{"text": system}]}));
    }
    let contents = alternating_turns(&request.messages, "model", "parts", part);
    body.insert("contents".into(), Value::Array(contents));
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": gemini_schema(&t.parameters)}))
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
    }
    if let Some(choice) = &request.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
    }
    let mut generation = serde_json::Map::new();
    if let Some(temperature) = request.temperature {
        generation.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        generation.insert("maxOutputTokens".into(), json!(max_tokens));
    }
    if !request.stop.is_empty() {
        generation.insert("stopSequences".into(), json!(request.stop));
    }
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            generation.insert("responseMimeType".into(), json!("application/json"));
            generation.insert("responseJsonSchema".into(), gemini_schema(schema));
        }
        Some(ResponseFormat::JsonObject) => {
            generation.insert("responseMimeType".into(), json!("application/json"));
        }
        _ => {}
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    crate::convert::merge_extra(&mut body, request);
    Value::Object(body)
}

/// A schema in the subset Gemini's `responseJsonSchema` and `parametersJsonSchema` take.
fn gemini_schema(schema: &Value) -> Value {
    crate::json_schema::rewrite(schema, &crate::json_schema::GEMINI).schema
}

fn part(content: &ContentPart) -> Option<Value> {
    Some(match content {
        ContentPart::Text { text } if text.is_empty() => return None,
        ContentPart::Text { text } => json!({"text": text}),
        ContentPart::Image { source } => match source {
            ImageSource::Bytes { media_type, data } => {
                json!({"inlineData": {"mimeType": media_type, "data": base64::engine::general_purpose::STANDARD.encode(data)}})
            }
            ImageSource::Url { url } => match crate::media::parse_data_url(url) {
                Some((media_type, data)) => json!({"inlineData": {"mimeType": media_type, "data": data}}),
                None => json!({"fileData": {"mimeType": crate::media::image_type_of(url), "fileUri": url}}),
            },
        },
        ContentPart::ToolCall(call) => {
            let mut function_call = json!({"name": call.name, "args": arguments_object(call)});
            if !call.id.starts_with(LOCAL_ID_PREFIX) {
                function_call["id"] = json!(call.id);
            }
            let mut value = json!({"functionCall": function_call});
            if let Some(signature) = &call.signature {
                value["thoughtSignature"] = json!(signature);
            }
            value
        }
        ContentPart::ToolResult(result) => {
            let output = serde_json::from_str::<Value>(&result.content).unwrap_or_else(|_| json!(result.content));
            let key = if result.is_error { "error" } else { "output" };
            let mut response = json!({"name": result.name, "response": {key: output}});
            if !result.call_id.starts_with(LOCAL_ID_PREFIX) {
                response["id"] = json!(result.call_id);
            }
            json!({"functionResponse": response})
        }
        _ => return None,
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireResponse {
    #[serde(default)]
    pub(crate) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<WireUsage>,
    #[serde(default)]
    pub(crate) model_version: Option<String>,
    #[serde(default)]
    pub(crate) response_id: Option<String>,
    #[serde(default)]
    pub(crate) prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub(crate) error: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback {
    #[serde(default)]
    pub(crate) block_reason: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate {
    #[serde(default)]
    pub(crate) content: Option<Content>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Content {
    #[serde(default)]
    pub(crate) parts: Vec<Part>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part {
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) thought: Option<bool>,
    #[serde(default)]
    pub(crate) function_call: Option<FunctionCall>,
    #[serde(default)]
    pub(crate) thought_signature: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct FunctionCall {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) args: Option<Value>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl From<WireUsage> for Usage {
    /// Thinking tokens are billed as output but not counted in `candidatesTokenCount`.
    fn from(usage: WireUsage) -> Usage {
        Usage {
            input_tokens: usage.prompt_token_count,
            output_tokens: usage.candidates_token_count.saturating_add(usage.thoughts_token_count),
            cached_input_tokens: usage.cached_content_token_count,
        }
    }
}

/// Gemini has no "tool calls" finish reason: a turn that calls functions ends with `STOP`.
pub(crate) fn stop_reason(reason: &str, has_calls: bool) -> StopReason {
    match reason {
        "STOP" if has_calls => StopReason::ToolCalls,
        "STOP" => StopReason::EndTurn,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            StopReason::ContentFilter
        }
        other => StopReason::Other(other.to_owned()),
    }
}

/// Turns one function-call part into a tool call; `ordinal` numbers calls without ids.
pub(crate) fn tool_call(call: FunctionCall, signature: Option<String>, ordinal: usize) -> ToolCall {
    ToolCall {
        id: call
            .id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("{LOCAL_ID_PREFIX}{ordinal}")),
        name: call.name,
        arguments: call.args.map_or_else(|| "{}".to_owned(), |args| args.to_string()),
        signature,
    }
}

pub(crate) fn response(wire: WireResponse) -> Result<ChatResponse, Error> {
    if let Some(error) = wire.error {
        return Err(error_of(error, None, None));
    }
    let usage = wire.usage_metadata.map(Usage::from).unwrap_or_default();
    let Some(candidate) = wire.candidates.into_iter().next() else {
        let reason = wire.prompt_feedback.and_then(|f| f.block_reason);
        if reason.is_some() {
            let mut response = ChatResponse::new(Message::new(Role::Assistant, Vec::new()));
            response.stop_reason = Some(StopReason::ContentFilter);
            response.provider_stop_reason = reason;
            response.usage = usage;
            return Ok(response);
        }
        return Err(Error::malformed("the response has no candidates", ""));
    };
    let mut content = Vec::new();
    let mut calls = 0;
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(call) = part.function_call {
            content.push(ContentPart::ToolCall(tool_call(call, part.thought_signature, calls)));
            calls += 1;
        } else if let Some(text) = part.text.filter(|t| !t.is_empty() && part.thought != Some(true)) {
            content.push(ContentPart::Text { text });
        }
    }
    Ok(ChatResponse {
        message: Message::new(Role::Assistant, content),
        usage,
        stop_reason: candidate.finish_reason.as_deref().map(|r| stop_reason(r, calls > 0)),
        provider_stop_reason: candidate.finish_reason,
        model: wire.model_version,
        id: wire.response_id,
    })
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) error: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ErrorDetail {
    #[serde(default)]
    pub(crate) code: Option<u16>,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) details: Vec<Value>,
}

/// An error by its Google RPC status (an invalid key is a 400 `INVALID_ARGUMENT` here, not a 401).
pub(crate) fn error_of(detail: ErrorDetail, status: Option<u16>, retry_after: Option<Duration>) -> Error {
    let message = crate::http::bounded_message(&detail.message);
    let reason_is = |wanted: &str| {
        detail
            .details
            .iter()
            .any(|d| d.get("reason").and_then(Value::as_str) == Some(wanted))
    };
    let retry_delay = detail.details.iter().find_map(|d| {
        let delay = d.get("retryDelay")?.as_str()?;
        let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
    });
    let lower = message.to_ascii_lowercase();
    match detail.status.as_str() {
        _ if reason_is("API_KEY_INVALID") || lower.contains("api key not valid") => Error::Authentication { message },
        "UNAUTHENTICATED" => Error::Authentication { message },
        "PERMISSION_DENIED" => Error::PermissionDenied { message },
        "RESOURCE_EXHAUSTED" => Error::RateLimited {
            message,
            retry_after: retry_after.or(retry_delay),
        },
        "INVALID_ARGUMENT" if lower.contains("token count") && lower.contains("exceeds") => {
            Error::ContextTooLong { message }
        }
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "NOT_FOUND" => Error::InvalidRequest { message },
        "DEADLINE_EXCEEDED" => Error::Timeout,
        _ => Error::Server {
            status: status.or(detail.code),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_that_would_overflow_saturate() {
        let usage: WireUsage = serde_json::from_value(serde_json::json!({
            "candidatesTokenCount": u64::MAX, "thoughtsTokenCount": 7
        }))
        .unwrap();
        assert_eq!(Usage::from(usage).output_tokens, u64::MAX);
    }

    #[test]
    fn a_retry_delay_too_long_to_represent_is_not_a_panic() {
        let detail: ErrorDetail = serde_json::from_value(serde_json::json!({
            "code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1e20s"}]
        }))
        .unwrap();
        assert_eq!(error_of(detail, Some(429), None).retry_after(), Some(Duration::MAX));
    }
}
