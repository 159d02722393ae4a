//! Cancellation: a token a caller triggers and a run, its model calls and its tools watch.

use std::future::Future;

/// Cancels a run, or one tool call, when triggered. Cheap to clone; clones share one state.
///
/// A run watches the token given in [`RunOptions`](crate::RunOptions); each tool call gets a
/// [child](Self::child_token) of the run's own token in its [`ToolContext`](crate::ToolContext), which
/// is cancelled when the run is cancelled, when the call times out, and when the run is dropped, so
/// work a tool handed elsewhere (a thread, a foreign runtime) learns that nobody waits for it any more.
///
/// ```
/// use kai_core::CancellationToken;
///
/// let run = CancellationToken::new();
/// let call = run.child_token();
/// run.cancel();
/// assert!(call.is_cancelled());
/// ```
#[derive(Clone, Default)]
pub struct CancellationToken {
    inner: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancellationToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancellationToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled whenever this one is (but cancelling it leaves this one alone).
    pub fn child_token(&self) -> Self {
        Self {
            inner: self.inner.child_token(),
        }
    }

    /// Cancels this token and its children. Cancelling twice does nothing more.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether the token is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Completes when the token is cancelled.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + '_ {
        self.inner.cancelled()
    }

    /// Completes when the token is cancelled; owns a clone of the token, so it can be held anywhere.
    pub fn cancelled_owned(self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.cancelled_owned()
    }

    /// A guard that cancels the token when dropped, unless [disarmed](CancelOnDrop::disarm).
    pub fn cancel_on_drop(self) -> CancelOnDrop {
        CancelOnDrop { token: Some(self) }
    }
}

/// Cancels its token when dropped; made by [`CancellationToken::cancel_on_drop`].
#[derive(Debug)]
#[must_use = "the token is cancelled as soon as the guard is dropped"]
pub struct CancelOnDrop {
    token: Option<CancellationToken>,
}

impl CancelOnDrop {
    /// Gives the token back without cancelling it.
    pub fn disarm(mut self) -> CancellationToken {
        self.token.take().unwrap_or_default()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_cancels_when_dropped_and_not_when_disarmed() {
        let token = CancellationToken::new();
        drop(token.clone().cancel_on_drop());
        assert!(token.is_cancelled());

        let token = CancellationToken::new();
        let back = token.clone().cancel_on_drop().disarm();
        assert!(!token.is_cancelled() && !back.is_cancelled());
    }

    #[tokio::test]
    async fn cancelled_completes_after_cancel() {
        let token = CancellationToken::new();
        let waiting = token.clone().cancelled_owned();
        token.cancel();
        waiting.await;
    }
}
