//! A newline-delimited JSON reader (Ollama's streaming format).

use futures::{Stream, StreamExt as _};
use kai_core::Error;

/// Splits a byte stream into lines (LF or CRLF), skipping blank ones. A last line without a newline
/// is still yielded. Lines longer than `max_line_bytes` end the stream with an error.
pub fn ndjson_lines<S, B, E>(bytes: S, max_line_bytes: usize) -> impl Stream<Item = Result<String, Error>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: Into<Error>,
{
    let state = (
        bytes,
        Vec::<u8>::new(),
        std::collections::VecDeque::<String>::new(),
        false,
    );
    futures::stream::unfold(state, move |(mut bytes, mut buffer, mut lines, mut done)| async move {
        loop {
            if let Some(line) = lines.pop_front() {
                return Some((Ok(line), (bytes, buffer, lines, done)));
            }
            if done {
                return None;
            }
            match bytes.next().await {
                Some(Ok(chunk)) => {
                    for &byte in chunk.as_ref() {
                        if byte == b'\n' {
                            push_line(&mut lines, std::mem::take(&mut buffer));
                        } else if buffer.len() >= max_line_bytes {
                            done = true;
                            let error = Error::malformed(format!("a line is longer than {max_line_bytes} bytes"), "");
                            return Some((Err(error), (bytes, Vec::new(), lines, done)));
                        } else {
                            buffer.push(byte);
                        }
                    }
                }
                Some(Err(error)) => {
                    done = true;
                    return Some((Err(error.into()), (bytes, buffer, lines, done)));
                }
                None => {
                    done = true;
                    push_line(&mut lines, std::mem::take(&mut buffer));
                }
            }
        }
    })
}

fn push_line(lines: &mut std::collections::VecDeque<String>, mut line: Vec<u8>) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let line = String::from_utf8_lossy(&line);
    if !line.trim().is_empty() {
        lines.push_back(line.into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: Vec<&'static [u8]>) -> Vec<Result<String, Error>> {
        let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, Error>));
        futures::executor::block_on(ndjson_lines(stream, 32).collect())
    }

    #[test]
    fn splits_anywhere_and_keeps_the_last_line() {
        let got = lines(vec![b"{\"a\":", b"1}\r\n\n{\"b\"", b":2}\n{\"c\":3}"]);
        let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn overlong_lines_are_an_error() {
        let got = lines(vec![&[b'x'; 40]]);
        assert!(got[0].is_err());
        assert_eq!(got.len(), 1);
    }
}
