//! Timers that work on every target (a helper thread on native targets, `setTimeout` on wasm).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::future::Either;

use crate::CancellationToken;
use crate::error::Error;

pub(crate) use web_time::Instant;

/// Now, in milliseconds since the Unix epoch (0 before it, `u64::MAX` far after it).
#[cfg(any(feature = "prompts", feature = "artifacts"))]
pub(crate) fn now_ms() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// The longest single timer: browsers' `setTimeout` takes a signed 32-bit count of milliseconds, and a
/// longer delay there fires at once.
const LONGEST_TIMER: Duration = Duration::from_millis(i32::MAX as u64);

/// Waits for `duration` on every target: a helper thread's timer on native targets, `setTimeout` on
/// wasm. A wait longer than one timer can hold (about 24.8 days) is a chain of timers, so it never
/// fires early; `Duration::MAX` waits for ever.
pub async fn sleep(duration: Duration) {
    let mut left = duration;
    while !left.is_zero() {
        let step = left.min(LONGEST_TIMER);
        futures_timer::Delay::new(step).await;
        left -= step;
    }
}

/// Runs `future` unless `cancel` fires first (→ [`Error::Cancelled`]) or the instant in `limit` passes
/// first (→ the error paired with it). Dropping the losing future drops everything it was doing.
pub(crate) async fn guarded<F: Future>(
    future: F,
    cancel: Option<&CancellationToken>,
    limit: Option<(Instant, Error)>,
) -> Result<F::Output, Error> {
    if cancel.is_none() && limit.is_none() {
        return Ok(future.await);
    }
    // A run cancelled already starts nothing, even work that would finish at its first poll.
    if cancel.is_some_and(CancellationToken::is_cancelled) {
        return Err(Error::Cancelled);
    }
    let cancelled = async {
        match cancel {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
        Error::Cancelled
    };
    let expired = async {
        match limit {
            Some((at, error)) => {
                sleep(at.saturating_duration_since(Instant::now())).await;
                error
            }
            None => std::future::pending().await,
        }
    };
    let stop = async {
        match futures::future::select(pin!(cancelled), pin!(expired)).await {
            Either::Left((error, _)) | Either::Right((error, _)) => error,
        }
    };
    match futures::future::select(pin!(future), pin!(stop)).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right((error, _)) => Err(error),
    }
}
