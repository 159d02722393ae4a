//! Tool calls that a model wrote as text.
//!
//! Small local models often write a tool call into their answer instead of the structured field their
//! server parses: `<tool_call>{"name": …, "arguments": …}</tool_call>` (Hermes and Qwen templates), a
//! JSON object in a code fence, or `functions.NAME:{…}` (the prefix of llama-cpp-python's
//! function-calling format). [`tool_calls_in_text`] finds such calls, and only calls of tools the
//! request offered, so an answer that merely contains JSON stays an answer. Providers of local servers
//! apply it to answers without structured calls.
//!
//! The text is a model's output and treated as hostile: it is read only up to [`MAX_SCANNED_BYTES`],
//! and at most [`MAX_ATTEMPTS`] places in it are tried as JSON, so no text costs more than linear work.

use serde_json::Value;

use crate::message::{ContentPart, StopReason, ToolCall};
use crate::request::{ChatResponse, ToolDefinition};

/// Answers longer than this are not searched for calls.
pub(crate) const MAX_SCANNED_BYTES: usize = 32 * 1024;

/// The most places in one answer tried as the start of a JSON call.
pub(crate) const MAX_ATTEMPTS: usize = 16;

/// The tool calls written in `text`, if every call found names one of `tools` and nothing but the calls
/// (and whitespace, tags, fences or short prose before them) makes up the text; `None` otherwise.
///
/// Calls get the ids `call_0`, `call_1`, … in order.
///
/// ```
/// use kai_core::{ToolDefinition, tool_calls_in_text};
/// use serde_json::json;
///
/// let tools = [ToolDefinition::new("calculate", "Evaluates arithmetic.", json!({"type": "object"}))];
/// let text = "<tool_call>\n{\"name\": \"calculate\", \"arguments\": {\"expression\": \"17 * 23\"}}\n</tool_call>";
/// let calls = tool_calls_in_text(text, &tools).unwrap();
/// assert_eq!(calls[0].name, "calculate");
/// assert_eq!(calls[0].arguments, r#"{"expression":"17 * 23"}"#);
/// assert!(tool_calls_in_text("The answer is 391.", &tools).is_none());
/// ```
pub fn tool_calls_in_text(text: &str, tools: &[ToolDefinition]) -> Option<Vec<ToolCall>> {
    if tools.is_empty() || text.len() > MAX_SCANNED_BYTES {
        return None;
    }
    let offered = |name: &str| tools.iter().any(|tool| tool.name == name);
    let mut calls = Vec::new();
    let mut attempts = 0;
    let mut rest = text;
    while let Some(start) = next_call_start(rest) {
        if attempts == MAX_ATTEMPTS {
            return None;
        }
        attempts += 1;
        let (prefix_name, json_at) = start;
        let mut values = serde_json::Deserializer::from_str(&rest[json_at..]).into_iter::<Value>();
        let Some(Ok(value)) = values.next() else {
            // Not JSON here: look further on.
            rest = &rest[json_at + 1..];
            continue;
        };
        let consumed = json_at + values.byte_offset();
        let found = match prefix_name.filter(|name| offered(name)) {
            Some(name) => vec![(name.to_owned(), value)],
            None => named_calls(value)?,
        };
        for (name, arguments) in found {
            if !offered(&name) {
                return None;
            }
            calls.push(ToolCall::new(format!("call_{}", calls.len()), name, &arguments));
        }
        rest = &rest[consumed..];
    }
    if calls.is_empty() || !only_wrapping(rest) {
        return None;
    }
    Some(calls)
}

/// Turns an answer that is nothing but tool calls written as text into those calls (see
/// [`tool_calls_in_text`]); returns whether it did. An answer that already has structured calls, or
/// whose text is not a call of one of `tools`, is left as it is.
pub fn recover_tool_calls(response: &mut ChatResponse, tools: &[ToolDefinition]) -> bool {
    if response.tool_calls().next().is_some() {
        return false;
    }
    let Some(calls) = tool_calls_in_text(&response.text(), tools) else {
        return false;
    };
    response
        .message
        .content
        .retain(|part| !matches!(part, ContentPart::Text { .. }));
    response
        .message
        .content
        .extend(calls.into_iter().map(ContentPart::ToolCall));
    response.stop_reason = Some(StopReason::ToolCalls);
    true
}

/// Where the next call may start in `text`: the byte offset of a JSON object or array, with the tool's
/// name when a `functions.NAME:` or `NAME(` prefix gives it.
fn next_call_start(text: &str) -> Option<(Option<&str>, usize)> {
    let brace = text.find(['{', '['])?;
    let before = &text[..brace];
    // `functions.calculate:{…}`, `functions.calculate({…})`, `calculate({…})`.
    let head = before.trim_end();
    let head = head
        .strip_suffix(':')
        .or_else(|| head.strip_suffix('('))
        .map(str::trim_end);
    if let Some(head) = head {
        let name_start = head
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .map_or(0, |at| at + 1);
        let name = &head[name_start..];
        let name = name.strip_prefix("functions.").unwrap_or(name);
        if !name.is_empty() && !name.contains('.') && text[brace..].starts_with('{') {
            return Some((Some(name), brace));
        }
    }
    Some((None, brace))
}

/// The `(name, arguments)` pairs a JSON value describes: one call object or an array of them. Call
/// objects name the tool in `name`, `tool`, `tool_name` or `function` (a string, or an object holding
/// `name` and `arguments`), and give arguments in `arguments`, `parameters`, `args` or `input`, as an
/// object or as JSON text of one.
fn named_calls(value: Value) -> Option<Vec<(String, Value)>> {
    match value {
        Value::Array(items) if !items.is_empty() => items.into_iter().map(named_call).collect(),
        Value::Object(_) => Some(vec![named_call(value)?]),
        _ => None,
    }
}

fn named_call(value: Value) -> Option<(String, Value)> {
    let Value::Object(mut object) = value else {
        return None;
    };
    if let Some(Value::Object(function)) = object.remove("function") {
        return named_call(Value::Object(function));
    }
    let name = ["name", "tool", "tool_name"]
        .into_iter()
        .find_map(|key| match object.remove(key) {
            Some(Value::String(name)) => Some(name),
            _ => None,
        })?;
    let arguments = ["arguments", "parameters", "args", "input"]
        .into_iter()
        .find_map(|key| object.remove(key))
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    let arguments = match arguments {
        Value::String(text) => serde_json::from_str(&text).ok()?,
        other => other,
    };
    arguments.is_object().then_some((name, arguments))
}

/// Whether what is left after the calls is only their wrapping: whitespace, closing tags, fences,
/// parentheses, the closing brace of a doubled `{{…}}`, or the end-of-turn markers small models leave.
fn only_wrapping(rest: &str) -> bool {
    let mut rest = rest.trim();
    for wrapper in ["</tool_call>", "```", ")", "}", "<|im_end|>", "<|eot_id|>"] {
        while let Some(after) = rest.strip_prefix(wrapper) {
            rest = after.trim_start();
        }
    }
    rest.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolDefinition> {
        ["calculate", "list_files", "read_file"]
            .into_iter()
            .map(|name| ToolDefinition::new(name, "", json!({"type": "object"})))
            .collect()
    }

    fn names_and_arguments(text: &str) -> Option<Vec<(String, String)>> {
        tool_calls_in_text(text, &tools()).map(|calls| calls.into_iter().map(|c| (c.name, c.arguments)).collect())
    }

    #[test]
    fn the_forms_small_models_write_are_read() {
        let expected = Some(vec![("calculate".to_owned(), r#"{"expression":"2+2"}"#.to_owned())]);
        for text in [
            r#"<tool_call>{"name": "calculate", "arguments": {"expression": "2+2"}}</tool_call>"#,
            "```json\n{\"name\": \"calculate\", \"arguments\": {\"expression\": \"2+2\"}}\n```",
            r#"{"name": "calculate", "parameters": {"expression": "2+2"}}"#,
            r#"{"tool": "calculate", "args": "{\"expression\": \"2+2\"}"}"#,
            r#"{"type": "function", "function": {"name": "calculate", "arguments": "{\"expression\":\"2+2\"}"}}"#,
            r#"functions.calculate:{"expression": "2+2"}"#,
            r#"functions.calculate({"expression": "2+2"})"#,
            r#"{{"name": "calculate", "arguments": {"expression": "2+2"}}}"#,
            "Sure: {\"name\": \"calculate\", \"arguments\": {\"expression\": \"2+2\"}}",
            "I will use the calculator.\n<tool_call>\n{\"name\": \"calculate\", \"arguments\": {\"expression\": \"2+2\"}}\n</tool_call><|im_end|>",
        ] {
            assert_eq!(names_and_arguments(text), expected, "{text}");
        }
        assert_eq!(
            names_and_arguments(r#"{"name": "list_files"}"#),
            Some(vec![("list_files".to_owned(), "{}".to_owned())])
        );
        let two = names_and_arguments(
            "<tool_call>{\"name\": \"list_files\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.md\"}}</tool_call>",
        )
        .unwrap();
        assert_eq!(two.len(), 2);
        let calls = tool_calls_in_text(
            r#"[{"name": "list_files"}, {"name": "calculate", "arguments": {}}]"#,
            &tools(),
        );
        assert_eq!(
            calls.unwrap().iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["call_0", "call_1"]
        );
    }

    #[test]
    fn a_response_of_written_calls_becomes_one_of_structured_calls() {
        let mut response = ChatResponse::new(crate::Message::assistant(
            r#"<tool_call>{"name": "list_files", "arguments": {}}</tool_call>"#,
        ));
        response.stop_reason = Some(StopReason::EndTurn);
        assert!(recover_tool_calls(&mut response, &tools()));
        assert_eq!(response.text(), "");
        assert_eq!(
            response.tool_calls().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["list_files"]
        );
        assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
        assert!(!recover_tool_calls(&mut response, &tools()), "already structured");
        let mut answer = ChatResponse::new(crate::Message::assistant("391"));
        assert!(!recover_tool_calls(&mut answer, &tools()));
        assert_eq!(answer.text(), "391");
    }

    #[test]
    fn answers_are_left_alone() {
        for text in [
            "The answer is 391.",
            "",
            r#"{"name": "delete_everything", "arguments": {}}"#,
            r#"{"result": 391}"#,
            r#"{"name": "calculate", "arguments": {"expression": "2+2"}} and then the answer is 4."#,
            r#"Here is an example of a call: {"name": "calculate", "arguments": [1, 2]}"#,
            "functions.list_files:",
        ] {
            assert_eq!(names_and_arguments(text), None, "{text}");
        }
    }

    #[test]
    fn hostile_text_costs_bounded_work() {
        let many_braces = "{".repeat(MAX_SCANNED_BYTES);
        assert_eq!(names_and_arguments(&many_braces), None);
        let long_strings = r#"{"a": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"#.repeat(600);
        assert!(long_strings.len() <= MAX_SCANNED_BYTES);
        assert_eq!(names_and_arguments(&long_strings), None);
        assert_eq!(names_and_arguments(&"x".repeat(MAX_SCANNED_BYTES + 1)), None);
    }
}
