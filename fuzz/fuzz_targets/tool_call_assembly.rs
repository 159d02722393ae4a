//! Assembling streamed tool calls from any sequence of deltas never panics, keeps every fragment, and
//! replaying the result gives the same response.
#![no_main]

use arbitrary::Arbitrary;
use kai_core::{ChatDelta, ResponseAccumulator, StopReason};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Text(String),
    // Indices across the whole u32 range: a hostile stream may open a call at any of them.
    Start { index: u32, id: String, name: String },
    Arguments { index: u32, fragment: String },
    Signature { index: u32, signature: String },
    Reasoning { index: u32, text: String },
    Finish,
}

fuzz_target!(|ops: Vec<Op>| {
    let mut accumulator = ResponseAccumulator::new();
    let mut fragments = std::collections::BTreeMap::<u32, String>::new();
    for op in ops {
        let delta = match op {
            Op::Text(text) => ChatDelta::Text { text },
            Op::Start { index, id, name } => ChatDelta::ToolCallStart { index, id, name },
            Op::Arguments { index, fragment } => {
                fragments.entry(index).or_default().push_str(&fragment);
                ChatDelta::ToolCallArguments { index, fragment }
            }
            Op::Signature { index, signature } => ChatDelta::ToolCallSignature { index, signature },
            Op::Reasoning { index, text } => ChatDelta::Reasoning { index, text },
            Op::Finish => ChatDelta::Finish {
                stop_reason: StopReason::ToolCalls,
                provider_reason: None,
            },
        };
        accumulator.push(delta);
    }
    let response = accumulator.finish();
    for call in response.tool_calls() {
        // Whatever the model sent, parsing its arguments is an error value, never a panic.
        let _ = serde_json::from_str::<serde_json::Value>(&call.arguments);
        assert!(!call.id.is_empty());
    }
    let assembled: String = response.tool_calls().map(|c| c.arguments.as_str()).collect();
    let expected: String = fragments.values().map(String::as_str).collect();
    assert_eq!(assembled, expected);
    let mut again = ResponseAccumulator::new();
    for delta in ChatDelta::replay(&response) {
        again.push(delta);
    }
    let replayed = again.finish();
    assert_eq!(replayed.message, response.message);
});
