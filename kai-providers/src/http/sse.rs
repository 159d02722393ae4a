//! A Server-Sent Events parser, following the WHATWG event-stream rules.
//!
//! Bytes may be split anywhere, lines may end in CRLF, LF or CR, `data:` may span several lines, and
//! comments (`:`), `event:`, `id:` and `retry:` fields are understood. An event is dispatched at a blank
//! line; an unfinished event at the end of the stream is dropped, as the standard says, so a cut stream
//! never yields a half-received event. Lines and events are bounded in size.

use std::collections::VecDeque;

use futures::{Stream, StreamExt as _};
use kai_core::Error;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty means the default type, `message`.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last `id:` field seen.
    pub id: Option<String>,
    /// The `retry:` field, in milliseconds, when this event carried one.
    pub retry: Option<u64>,
}

/// Incremental parser: feed it chunks, collect events.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
    max_event_bytes: usize,
    ready: VecDeque<SseEvent>,
}

/// The default bound on one line or one event's data: 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that fails on lines or events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
            max_event_bytes,
            ready: VecDeque::new(),
        }
    }

    /// Feeds a chunk of bytes.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), Error> {
        if self.at_start && !chunk.is_empty() {
            // A UTF-8 byte order mark may open the stream; it may itself be split across chunks.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let have = self.line.len();
            let take = (BOM.len() - have).min(chunk.len());
            if BOM[have..have + take] == chunk[..take] {
                self.line.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.line.len() < BOM.len() {
                    return Ok(());
                }
                self.line.clear();
            }
            // Otherwise it was not a BOM: any bytes held back stay in the line as ordinary data.
            self.at_start = false;
        }
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    self.end_line()?;
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.max_event_bytes {
                        return Err(too_large(self.max_event_bytes));
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn end_line(&mut self) -> Result<(), Error> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.find(':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    return Err(too_large(self.max_event_bytes));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        let retry = self.retry.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        self.ready.push_back(SseEvent {
            event,
            data,
            id: self.last_id.clone(),
            retry,
        });
    }
}

fn too_large(limit: usize) -> Error {
    Error::malformed(format!("a server-sent event is larger than {limit} bytes"), "")
}

/// Turns a byte stream into a stream of events. A transport error ends the stream with that error.
pub fn sse_events<S, B, E>(bytes: S, max_event_bytes: usize) -> impl Stream<Item = Result<SseEvent, Error>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: Into<Error>,
{
    let state = (bytes, SseParser::new(max_event_bytes), false);
    futures::stream::unfold(state, |(mut bytes, mut parser, mut done)| async move {
        loop {
            if let Some(event) = parser.next_event() {
                return Some((Ok(event), (bytes, parser, done)));
            }
            if done {
                return None;
            }
            match bytes.next().await {
                Some(Ok(chunk)) => {
                    if let Err(error) = parser.push(chunk.as_ref()) {
                        done = true;
                        return Some((Err(error), (bytes, parser, done)));
                    }
                }
                Some(Err(error)) => {
                    done = true;
                    return Some((Err(error.into()), (bytes, parser, done)));
                }
                None => done = true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            parser.push(chunk).unwrap();
            while let Some(event) = parser.next_event() {
                events.push(event);
            }
        }
        events
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: comment\r\nevent: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nid: 7\ndata:x\n\ndata: [DONE]\r\r";

    #[test]
    fn chunk_boundaries_anywhere_give_the_same_events() {
        let whole = parse_in_pieces(STREAM, STREAM.len());
        assert_eq!(
            whole,
            [
                SseEvent {
                    event: "message_start".into(),
                    data: "{\"a\":\n1}".into(),
                    id: None,
                    retry: None
                },
                SseEvent {
                    event: String::new(),
                    data: "x".into(),
                    id: Some("7".into()),
                    retry: None
                },
                SseEvent {
                    event: String::new(),
                    data: "[DONE]".into(),
                    id: Some("7".into()),
                    retry: None
                },
            ]
        );
        for piece in 1..STREAM.len() {
            assert_eq!(parse_in_pieces(STREAM, piece), whole, "piece size {piece}");
        }
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_end() {
        let mut parser = SseParser::default();
        parser.push(b"data: a\r").unwrap();
        parser.push(b"\ndata: b\r").unwrap();
        parser.push(b"\n\r\n").unwrap();
        assert_eq!(parser.next_event().unwrap().data, "a\nb");
        assert!(parser.next_event().is_none());
    }

    #[test]
    fn field_rules() {
        let events = parse_in_pieces(b"data\n\ndata:  two spaces\nretry: 300\nunknown: x\n\nevent: e\n\n", 3);
        assert_eq!(events.len(), 2, "an event with no data is not dispatched");
        assert_eq!(events[0].data, "");
        assert_eq!(events[1].data, " two spaces");
        assert_eq!(events[1].retry, Some(300));
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_dropped() {
        let events = parse_in_pieces(b"data: complete\n\ndata: {\"partial\":", 5);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn oversized_lines_and_events_are_errors() {
        let mut parser = SseParser::new(16);
        assert!(parser.push(&[b'x'; 17]).is_err());
        let mut parser = SseParser::new(16);
        assert!(parser.push(b"data: 0123456789\ndata: 0123456789\n").is_err());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let events = parse_in_pieces(b"data: \xFF\xFE ok\n\n", 2);
        assert_eq!(events[0].data, "\u{FFFD}\u{FFFD} ok");
    }

    #[test]
    fn a_lone_partial_bom_is_data() {
        let events = parse_in_pieces(b"\xEFdata: x\n\n", 1);
        assert!(
            events.is_empty(),
            "the line starts with a stray byte, so its field is unknown"
        );
        let events = parse_in_pieces(b"data: \xEF\xBB\xBFx\n\n", 1);
        assert_eq!(events[0].data, "\u{FEFF}x", "a BOM inside the stream is kept");
    }
}
