//! A2A's JSON-RPC wire: requests read tolerantly, errors and results written, SSE frames, and what a
//! message asks of the agent.

use a2a_lf::{A2AError, JsonRpcError, JsonRpcId, JsonRpcResponse, Message, PartContent};
use serde_json::Value;

/// The most parts a message may have.
pub(crate) const MAX_PARTS: usize = 64;

/// Where an A2A server serves its Agent Card.
pub(crate) const CARD_PATH: &str = "/.well-known/agent-card.json";

/// A JSON-RPC call as read from a request body.
pub(crate) struct Call {
    pub(crate) id: JsonRpcId,
    pub(crate) method: String,
    pub(crate) params: Value,
}

/// Reads a JSON-RPC request. A body that is not JSON is a parse error; one that is not a single
/// request object (a batch, a notification without an id) is an invalid request.
pub(crate) fn read_call(body: &[u8]) -> Result<Call, (JsonRpcId, A2AError)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| (JsonRpcId::Null, A2AError::parse_error("the body is not JSON")))?;
    let Value::Object(mut object) = value else {
        return Err((
            JsonRpcId::Null,
            A2AError::invalid_request("a request is one JSON-RPC object (batches are not served)"),
        ));
    };
    let id = match object.remove("id") {
        Some(Value::String(id)) => JsonRpcId::String(id),
        Some(Value::Number(number)) if number.is_i64() => JsonRpcId::Number(number.as_i64().unwrap_or_default()),
        _ => {
            return Err((
                JsonRpcId::Null,
                A2AError::invalid_request("a request needs a string or integer id"),
            ));
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, A2AError::invalid_request("not JSON-RPC 2.0")));
    }
    let Some(Value::String(method)) = object.remove("method") else {
        return Err((id, A2AError::invalid_request("a request needs a method")));
    };
    let params = object.remove("params").unwrap_or(Value::Null);
    Ok(Call { id, method, params })
}

/// `params` as `T`, or an invalid-params error.
pub(crate) fn params<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, A2AError> {
    serde_json::from_value(params).map_err(|error| A2AError::invalid_params(format!("invalid params: {error}")))
}

/// The JSON-RPC response carrying `result`.
pub(crate) fn success(id: JsonRpcId, result: &impl serde::Serialize) -> Vec<u8> {
    let result = serde_json::to_value(result).unwrap_or(Value::Null);
    serde_json::to_vec(&JsonRpcResponse::success(id, result)).unwrap_or_default()
}

/// The JSON-RPC response carrying `error`.
pub(crate) fn failure(id: JsonRpcId, error: &A2AError) -> Vec<u8> {
    let error: JsonRpcError = error.to_jsonrpc_error();
    serde_json::to_vec(&JsonRpcResponse::error(id, error)).unwrap_or_default()
}

/// One Server-Sent Events frame holding `json`.
pub(crate) fn sse_frame(json: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(json.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(json);
    frame.extend_from_slice(b"\n\n");
    frame
}

/// What a message says, as the agent's input: its text parts, and its data parts as JSON, one per
/// line. Files (raw bytes or URLs) are not taken.
pub(crate) fn input_text(message: &Message) -> Result<String, A2AError> {
    if message.parts.is_empty() || message.parts.len() > MAX_PARTS {
        return Err(A2AError::invalid_params(format!(
            "a message has 1 to {MAX_PARTS} parts"
        )));
    }
    let mut lines = Vec::with_capacity(message.parts.len());
    for part in &message.parts {
        match &part.content {
            PartContent::Text(text) => lines.push(text.clone()),
            PartContent::Data(value) => lines.push(value.to_string()),
            PartContent::Raw(_) | PartContent::Url(_) => return Err(A2AError::content_type_not_supported()),
        }
    }
    let text = lines.join("\n");
    if text.trim().is_empty() {
        return Err(A2AError::invalid_params("the message has no text"));
    }
    Ok(text)
}

/// A decision on the tool calls waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run them.
    Approve,
    /// Do not; the model is told why.
    Reject(String),
}

/// The decision a message on a task waiting for approval carries: a data part
/// `{"approve": bool, "reason": "..."}`, or a text that is just "approve", "approved" or "yes" (in
/// any case, with a full stop or exclamation mark or not) to approve, or anything else to reject,
/// with the text as the reason.
pub(crate) fn decision(message: &Message) -> Result<Decision, A2AError> {
    for part in &message.parts {
        if let PartContent::Data(value) = &part.content
            && let Some(approve) = value.get("approve").and_then(Value::as_bool)
        {
            let reason = value
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("rejected by the caller");
            return Ok(if approve {
                Decision::Approve
            } else {
                Decision::Reject(reason.to_owned())
            });
        }
    }
    let text = input_text(message)?;
    let word = text.trim().trim_end_matches(['.', '!']).to_lowercase();
    if matches!(word.as_str(), "approve" | "approved" | "yes") {
        Ok(Decision::Approve)
    } else {
        Ok(Decision::Reject(text))
    }
}

/// The `data` of each Server-Sent Event in `bytes` (lines joined with `\n`; comments, `event`,
/// `id` and `retry` fields skipped; events with no data not dispatched; a leading byte-order mark
/// dropped), each at most `limit` bytes: a longer event, or a line that never ends within it, ends
/// the stream with an error. Each byte is looked at a bounded number of times, whatever the split.
pub(crate) fn sse_events<S, E>(
    bytes: S,
    limit: usize,
) -> impl futures::Stream<Item = Result<Vec<u8>, crate::Error>> + Send + use<S, E>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    struct State<S> {
        bytes: S,
        buffer: Vec<u8>,
        /// Where the next line starts in `buffer`.
        start: usize,
        /// How far `buffer` was searched for a line break.
        searched: usize,
        data: Vec<u8>,
        has_data: bool,
        /// The bytes ended; what is buffered is still read.
        ended: bool,
        first: bool,
        done: bool,
    }
    let error = |message: String| crate::Error::A2aTransport { message };
    futures::stream::unfold(
        State {
            bytes,
            buffer: Vec::new(),
            start: 0,
            searched: 0,
            data: Vec::new(),
            has_data: false,
            ended: false,
            first: true,
            done: false,
        },
        move |mut state| async move {
            use futures::StreamExt as _;
            if state.done {
                return None;
            }
            loop {
                // Whole lines first.
                if let Some(offset) = state.buffer[state.searched..].iter().position(|&b| b == b'\n') {
                    let end = state.searched + offset;
                    let mut line = &state.buffer[state.start..end];
                    state.start = end + 1;
                    state.searched = state.start;
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    if line.is_empty() {
                        let data = std::mem::take(&mut state.data);
                        if std::mem::take(&mut state.has_data) && !data.is_empty() {
                            return Some((Ok(data), state));
                        }
                        continue;
                    }
                    let field = line.strip_prefix(b"data:").or((line == b"data").then_some(&b""[..]));
                    if let Some(value) = field {
                        let value = value.strip_prefix(b" ").unwrap_or(value);
                        if state.has_data {
                            state.data.push(b'\n');
                        }
                        state.data.extend_from_slice(value);
                        state.has_data = true;
                        if state.data.len() > limit {
                            state.done = true;
                            return Some((Err(error(format!("an event is over {limit} bytes"))), state));
                        }
                    }
                    continue;
                }
                state.searched = state.buffer.len();
                if state.buffer.len() - state.start > limit {
                    state.done = true;
                    return Some((Err(error(format!("a line is over {limit} bytes"))), state));
                }
                // Only what is not read yet is kept.
                state.buffer.drain(..state.start);
                state.searched -= state.start;
                state.start = 0;
                let next = if state.ended { None } else { state.bytes.next().await };
                match next {
                    Some(Ok(chunk)) => {
                        state.buffer.extend_from_slice(&chunk);
                        if state.first && state.buffer.len() >= 3 {
                            state.first = false;
                            if state.buffer.starts_with("\u{feff}".as_bytes()) {
                                state.buffer.drain(..3);
                                state.searched = 0;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        state.done = true;
                        return Some((Err(error(format!("reading events: {e}"))), state));
                    }
                    // A last line without its line break still counts.
                    None if !state.ended && !state.buffer.is_empty() => {
                        state.ended = true;
                        state.buffer.push(b'\n');
                    }
                    None => {
                        state.done = true;
                        // An event not closed by a blank line still counts.
                        let data = std::mem::take(&mut state.data);
                        return (state.has_data && !data.is_empty()).then_some((Ok(data), state));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use a2a_lf::{Part, Role};
    use futures::StreamExt as _;

    #[test]
    fn requests_are_read_and_refused_with_their_codes() {
        let call = read_call(br#"{"jsonrpc":"2.0","id":"1","method":"GetTask","params":{"id":"t"}}"#).unwrap();
        assert_eq!(
            (call.method.as_str(), &call.params["id"]),
            ("GetTask", &Value::from("t"))
        );
        for (body, code) in [
            (&b"not json"[..], a2a_lf::error_code::PARSE_ERROR),
            (b"[{}]", a2a_lf::error_code::INVALID_REQUEST),
            (
                br#"{"jsonrpc":"2.0","method":"GetTask"}"#,
                a2a_lf::error_code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#,
                a2a_lf::error_code::INVALID_REQUEST,
            ),
            (br#"{"jsonrpc":"2.0","id":1}"#, a2a_lf::error_code::INVALID_REQUEST),
        ] {
            let Err((_, error)) = read_call(body) else {
                panic!("{body:?} was taken");
            };
            assert_eq!(error.code, code, "{body:?}");
        }
    }

    #[test]
    fn events_are_read_from_any_split_and_bounded() {
        let text =
            "\u{feff}: ping\n\ndata: {\"a\":1}\r\n\ndata:\n\nevent: error\ndata: x\ndata: y\n\ndata: tail".as_bytes();
        for split in 1..text.len() {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = text
                .chunks(split)
                .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
                .collect();
            let events: Vec<Vec<u8>> =
                futures::executor::block_on(sse_events(futures::stream::iter(chunks), 64).collect::<Vec<_>>())
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
            assert_eq!(events, [&b"{\"a\":1}"[..], b"x\ny", b"tail"], "split {split}");
        }
        // A BOM before a data line; a flood of blank lines is read in linear time.
        let bom = "\u{feff}data: 1\n\n".as_bytes();
        for split in 1..bom.len() {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = bom
                .chunks(split)
                .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
                .collect();
            let events = futures::executor::block_on(sse_events(futures::stream::iter(chunks), 64).collect::<Vec<_>>());
            assert_eq!(
                events.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
                [b"1".to_vec()],
                "split {split}"
            );
        }
        let started = std::time::Instant::now();
        let flood: Vec<Result<bytes::Bytes, std::io::Error>> =
            (0..64).map(|_| Ok(bytes::Bytes::from(vec![b'\n'; 400_000]))).collect();
        let events = futures::executor::block_on(sse_events(futures::stream::iter(flood), 1 << 20).collect::<Vec<_>>());
        assert!(events.is_empty() && started.elapsed() < std::time::Duration::from_secs(5));
        let endless: Vec<Result<bytes::Bytes, std::io::Error>> = vec![Ok(bytes::Bytes::from(vec![b'a'; 100]))];
        let events = futures::executor::block_on(sse_events(futures::stream::iter(endless), 64).collect::<Vec<_>>());
        assert!(
            matches!(events.as_slice(), [Err(crate::Error::A2aTransport { .. })]),
            "{events:?}"
        );
    }

    #[test]
    fn messages_become_input_and_decisions() {
        let message = |parts: Vec<Part>| Message::new(Role::User, parts);
        assert_eq!(
            input_text(&message(vec![
                Part::text("hi"),
                Part::data(serde_json::json!({"n": 1}))
            ]))
            .unwrap(),
            "hi\n{\"n\":1}"
        );
        assert!(input_text(&message(vec![])).is_err());
        assert_eq!(
            input_text(&message(vec![Part::raw(vec![1, 2])])).unwrap_err().code,
            a2a_lf::error_code::CONTENT_TYPE_NOT_SUPPORTED
        );
        assert!(input_text(&message(vec![Part::text("x"); MAX_PARTS + 1])).is_err());
        assert_eq!(
            decision(&message(vec![Part::text(" Approve. ")])).unwrap(),
            Decision::Approve
        );
        for sneaky in [
            "yesterday's file, not this one",
            "yes-but no",
            "approved? no",
            "Approve it",
        ] {
            assert_eq!(
                decision(&message(vec![Part::text(sneaky)])).unwrap(),
                Decision::Reject(sneaky.into()),
                "{sneaky}"
            );
        }
        assert_eq!(
            decision(&message(vec![Part::text("not now")])).unwrap(),
            Decision::Reject("not now".into())
        );
        assert_eq!(
            decision(&message(vec![Part::data(
                serde_json::json!({"approve": false, "reason": "no"})
            )]))
            .unwrap(),
            Decision::Reject("no".into())
        );
    }
}
