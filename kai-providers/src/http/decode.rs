//! From a provider's stream of events to kai's stream of deltas.

use futures::{Stream, StreamExt as _};
use kai_core::{ChatDelta, ChatStream, Error, boxed_stream};

/// What one event of a provider's stream means.
pub(crate) enum Decoded {
    /// Deltas to pass on (possibly none, for pings and bookkeeping events).
    Deltas(Vec<ChatDelta>),
    /// The provider's end-of-response marker (`[DONE]`, `message_stop`, `done: true`).
    Done,
}

/// Decodes `events` into deltas with `decode`, stopping at [`Decoded::Done`] or the first error.
///
/// A stream that ends before its end marker and without any finish reason was cut off: it ends with
/// [`Error::Transport`], so a truncated answer is never mistaken for a complete one.
pub(crate) fn decode_events<E, S, F>(events: S, decode: F) -> impl Stream<Item = Result<ChatDelta, Error>>
where
    S: Stream<Item = Result<E, Error>>,
    F: FnMut(E) -> Result<Decoded, Error>,
{
    let state = DecodeState {
        events: Box::pin(events),
        decode,
        finished: false,
        stopped: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.stopped {
            return None;
        }
        loop {
            let error = match state.events.next().await {
                Some(Ok(event)) => match (state.decode)(event) {
                    Ok(Decoded::Deltas(deltas)) if deltas.is_empty() => continue,
                    Ok(Decoded::Deltas(deltas)) => {
                        state.finished |= deltas.iter().any(|d| matches!(d, ChatDelta::Finish { .. }));
                        return Some((Ok(deltas), state));
                    }
                    Ok(Decoded::Done) => return None,
                    Err(error) => error,
                },
                Some(Err(error)) => error,
                None if state.finished => return None,
                None => Error::Transport {
                    message: "the stream ended before the response was complete".into(),
                },
            };
            state.stopped = true;
            return Some((Err(error), state));
        }
    })
    .flat_map(|batch| {
        futures::stream::iter(match batch {
            Ok(deltas) => deltas.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => vec![Err(error)],
        })
    })
}

struct DecodeState<S, F> {
    events: std::pin::Pin<Box<S>>,
    decode: F,
    finished: bool,
    stopped: bool,
}

/// Starts a stream with `start` (which sends the request and returns the decoded stream), turning a
/// failure to start into the stream's only item.
pub(crate) fn stream_after<'a, F, S>(start: F) -> ChatStream<'a>
where
    F: std::future::Future<Output = Result<S, Error>> + kai_core::MaybeSend + 'a,
    S: Stream<Item = Result<ChatDelta, Error>> + kai_core::MaybeSend + 'a,
{
    boxed_stream(futures::stream::once(start).flat_map(|started| match started {
        Err(error) => futures::stream::iter([Err(error)]).left_stream(),
        Ok(deltas) => deltas.right_stream(),
    }))
}
