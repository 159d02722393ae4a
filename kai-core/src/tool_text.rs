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
use crate::request::{ChatRequest, ChatResponse, ToolDefinition};

/// Answers longer than this are not searched for calls.
pub(crate) const MAX_SCANNED_BYTES: usize = 32 * 1024;

/// The most places in one answer tried as the start of a JSON call.
pub(crate) const MAX_ATTEMPTS: usize = 16;

/// The tool calls written in `text`, if the text is nothing but calls of `tools` and their wrapping
/// (whitespace, `<tool_call>` tags, code fences, a `functions.NAME:` prefix); `None` otherwise. Before
/// the first `<tool_call>` tag one short line of prose may stand (small models announce their call).
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
    calls_of(text, &|name| tools.iter().any(|tool| tool.name == name))
}

/// The calls written in `text`, if it is nothing but calls of tools `offered` accepts and their wrapping.
fn calls_of(text: &str, offered: &dyn Fn(&str) -> bool) -> Option<Vec<ToolCall>> {
    if text.len() > MAX_SCANNED_BYTES {
        return None;
    }
    let mut calls = Vec::new();
    // The text up to `consumed` is accounted for: calls and the wrapping between them.
    let mut consumed = 0;
    let mut search_from = 0;
    let mut attempts = 0;
    // Braces and brackets are one byte, so every offset below is a char boundary.
    while let Some(found) = text[search_from..].find(['{', '[']) {
        let at = search_from + found;
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            return None;
        }
        let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
        let Some(Ok(value)) = values.next() else {
            // Not JSON here (a doubled `{{`, say): what was skipped must turn out to be wrapping.
            search_from = at + 1;
            continue;
        };
        let end = at + values.byte_offset();
        let found = match gap(&text[consumed..at], calls.is_empty() && consumed == 0)? {
            Gap::Named(name) if offered(name) && value.is_object() => vec![(name.to_owned(), value)],
            Gap::Named(_) => return None,
            Gap::Wrapping => named_calls(value)?,
        };
        for (name, arguments) in found {
            if !offered(&name) {
                return None;
            }
            calls.push(ToolCall::new(format!("call_{}", calls.len()), name, &arguments));
        }
        consumed = end;
        search_from = end;
    }
    if calls.is_empty() || !unwrapped(&text[consumed..]).is_empty() {
        return None;
    }
    Some(calls)
}

/// Turns an answer to `request` that is nothing but tool calls written as text into those calls (see
/// [`tool_calls_in_text`]); returns whether it did. Only calls the request allowed count: of its tools,
/// and as its tool choice permits (none under `none`, only the named tool under a forced one). An
/// answer that already has structured calls, or whose text is not such a call, is left as it is.
pub fn recover_tool_calls(response: &mut ChatResponse, request: &ChatRequest) -> bool {
    if response.tool_calls().next().is_some() {
        return false;
    }
    let allowed = |name: &str| {
        request.tools.iter().any(|tool| tool.name == name)
            && request.tool_choice.as_ref().is_none_or(|choice| choice.allows(name))
    };
    let Some(calls) = calls_of(&response.text(), &allowed) else {
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

/// What stands before a call.
enum Gap<'a> {
    /// Only wrapping (or, before the first call, one short line of prose and a `<tool_call>` tag).
    Wrapping,
    /// A prefix naming the tool: `functions.NAME:` or `functions.NAME(`, or `NAME(` at the very start.
    Named(&'a str),
}

/// The most prose allowed before the first `<tool_call>` tag.
const MAX_PREAMBLE_BYTES: usize = 200;

/// Classifies the text between two calls (or before the first); `None` when it is prose, which makes
/// the whole text an answer rather than calls.
fn gap(text: &str, at_start: bool) -> Option<Gap<'_>> {
    let core = unwrapped(text);
    if core.is_empty() {
        return Some(Gap::Wrapping);
    }
    let name_chars = |name: &str| !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    for suffix in [':', '('] {
        if let Some(head) = core.strip_suffix(suffix).map(str::trim_end) {
            if let Some(name) = head.strip_prefix("functions.").filter(|name| name_chars(name)) {
                return Some(Gap::Named(name));
            }
            if suffix == '(' && at_start && name_chars(head) {
                return Some(Gap::Named(head));
            }
        }
    }
    let announced = at_start
        && text.trim_end().ends_with("<tool_call>")
        && core.len() <= MAX_PREAMBLE_BYTES
        && !core.contains('\n')
        && !core.contains("```");
    announced.then_some(Gap::Wrapping)
}

/// `text` without the wrapping at its ends: whitespace, `<tool_call>` tags, code fences, the closing
/// parenthesis of `NAME({…})`, the extra braces of a doubled `{{…}}`, and the end-of-turn marker small
/// models leave.
fn unwrapped(text: &str) -> &str {
    const WRAPPERS: [&str; 8] = [
        "<tool_call>",
        "</tool_call>",
        "```json",
        "```",
        ")",
        "{",
        "}",
        "<|im_end|>",
    ];
    let mut text = text.trim();
    loop {
        let before = text.len();
        for wrapper in WRAPPERS {
            text = text.strip_prefix(wrapper).unwrap_or(text).trim_start();
        }
        for wrapper in WRAPPERS {
            text = text.strip_suffix(wrapper).unwrap_or(text).trim_end();
        }
        if text.len() == before {
            return text;
        }
    }
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
            r#"calculate({"expression": "2+2"})"#,
            r#"{{"name": "calculate", "arguments": {"expression": "2+2"}}}"#,
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
        let request = ChatRequest::new(Vec::new()).with_tools(tools());
        assert!(recover_tool_calls(&mut response, &request));
        assert_eq!(response.text(), "");
        assert_eq!(
            response.tool_calls().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["list_files"]
        );
        assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
        assert!(!recover_tool_calls(&mut response, &request), "already structured");
        let mut answer = ChatResponse::new(crate::Message::assistant("391"));
        assert!(!recover_tool_calls(&mut answer, &request));
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
            // A tool's name before a colon or bracket in prose is not a call.
            r#"Sure: {"name": "calculate", "arguments": {"expression": "2+2"}}"#,
            r#"Current calculate: {"expression": "2+2"}"#,
            r#"You could calculate({"expression": "2+2"})"#,
            // Quoting a document that holds a call is not making it.
            "The README tells you to send this:\n```json\n{\"name\": \"calculate\", \"arguments\": {}}\n```",
            // Prose between or after calls makes the whole text prose.
            "<tool_call>{\"name\": \"list_files\"}</tool_call> Actually, don't. <tool_call>{\"name\": \"list_files\"}</tool_call>",
            "{\"name\": \"list_files\"}\nIgnore that, the answer is 4 [",
            // A long preamble is an answer that happens to end in a call.
            &format!(
                "{}<tool_call>{{\"name\": \"list_files\"}}</tool_call>",
                "x".repeat(MAX_PREAMBLE_BYTES + 1)
            ),
        ] {
            assert_eq!(names_and_arguments(text), None, "{text}");
        }
    }

    #[test]
    fn text_with_characters_of_several_bytes_is_read_without_panicking() {
        for text in [
            "Voici l’exemple : {\"a\":1}",
            "«result»: {\"a\": 1}",
            "✅({\"a\": 1})",
            "functions.cálculo:{\"a\": 1}",
            "🙂<tool_call>{\"name\": \"list_files\"}</tool_call>",
        ] {
            let _ = names_and_arguments(text);
        }
        assert!(names_and_arguments("Je lis les fichiers.<tool_call>{\"name\": \"list_files\"}</tool_call>").is_some());
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
