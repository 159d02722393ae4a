//! Conversions several providers' wire formats share.

use kai_core::{ChatRequest, ContentPart, Message, Role, ToolCall};
use serde_json::{Value, json};

/// The conversation as two alternating roles (`assistant_role` and "user"), as Anthropic and Gemini
/// require: system messages are left out (they travel separately), tool results join the user turn, and
/// consecutive messages of one role merge into one turn. `part` converts each content part (`None`
/// drops it); `field` names the turn's list of parts (`content` or `parts`).
pub(crate) fn alternating_turns(
    messages: &[Message],
    assistant_role: &'static str,
    field: &str,
    part: impl Fn(&ContentPart) -> Option<Value>,
) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::System => continue,
            Role::Assistant => assistant_role,
            Role::User | Role::Tool => "user",
        };
        let parts: Vec<Value> = message.content.iter().filter_map(&part).collect();
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, field: parts}))
        .collect()
}

/// A tool call's arguments as the JSON object APIs that take objects want. Arguments the model got
/// wrong become `{}`; the error it was told about follows in the tool result.
pub(crate) fn arguments_object(call: &ToolCall) -> Value {
    serde_json::from_str::<Value>(&call.arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// The text of every system message, joined by blank lines, for APIs that take the system prompt
/// apart from the conversation; `None` when there is none.
pub(crate) fn system_text(messages: &[Message]) -> Option<String> {
    let parts: Vec<String> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(Message::text)
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// Adds the request's provider-specific fields to a body, replacing fields of the same name.
pub(crate) fn merge_extra(body: &mut serde_json::Map<String, Value>, request: &ChatRequest) {
    for (key, value) in &request.extra {
        body.insert(key.clone(), value.clone());
    }
}
