//! Wall-clock time on every target (`Date.now()` on wasm, where `std`'s clock is missing).

use web_time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is set before it).
pub(crate) fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `work`'s output if it finishes within `limit`, `None` if the time runs out first (on every target:
/// the wait is `kai_core::sleep`).
pub(crate) async fn within<T>(limit: std::time::Duration, work: impl std::future::Future<Output = T>) -> Option<T> {
    let work = std::pin::pin!(work);
    match futures::future::select(work, std::pin::pin!(kai_core::sleep(limit))).await {
        futures::future::Either::Left((output, _)) => Some(output),
        futures::future::Either::Right(_) => None,
    }
}

/// A number larger than every earlier one this process returned: the clock in milliseconds, or one
/// more than the last number if the clock has not moved on (or went back).
pub(crate) fn next_sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_millis();
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    now.max(previous.saturating_add(1))
}
