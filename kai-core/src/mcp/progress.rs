//! Progress a server reports while a tool call runs: rmcp sends each request with a progress token,
//! and the client routes the server's notifications for the token of a call someone watches to the
//! call's [`ToolContext`], which passes them on (as [`AgentEvent::ToolProgress`](crate::AgentEvent::ToolProgress)
//! in a streamed run).

use std::collections::HashMap;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::model::{NumberOrString, ProgressNotificationParam, ProgressToken};

use crate::tool::{ToolContext, ToolProgress};

/// A server's reports on one call closer together than this are dropped: a server flooding
/// notifications costs the watcher no more than 20 events a second.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The longest progress message passed on, in bytes; longer ones are cut.
const MAX_MESSAGE: usize = 1024;

/// The calls in flight whose progress someone hears, by the token each was sent with.
#[derive(Default)]
pub(crate) struct ProgressRoutes {
    routes: Mutex<HashMap<i64, Route>>,
}

struct Route {
    context: ToolContext,
    /// When the last report was passed on, and how far it said the call had come.
    last: Option<(Instant, f64)>,
}

/// Removes a call's route when the call ends, however it ends.
pub(crate) struct RouteGuard {
    routes: Arc<ProgressRoutes>,
    token: i64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.token);
    }
}

impl ProgressRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Routes reports with `token`, the one a call was sent with, to `context` while the guard lives;
    /// `None` when no one hears the call's progress.
    pub(crate) fn route(self: &Arc<Self>, token: ProgressToken, context: &ToolContext) -> Option<RouteGuard> {
        if !context.progress_is_heard() {
            return None;
        }
        let token = number(&token)?;
        self.lock().insert(
            token,
            Route {
                context: context.clone(),
                last: None,
            },
        );
        Some(RouteGuard {
            routes: Arc::clone(self),
            token,
        })
    }

    /// Passes a server's notification on to the call it names, best effort. Dropped: reports for
    /// unknown tokens (a call that ended, or one the server made up), numbers that are not finite,
    /// reports that do not go forward (rmcp handles each notification in a task of its own, so two can
    /// arrive out of order), and reports closer than [`MIN_INTERVAL`] to the last one unless they say
    /// the work is done. A report racing the call's result may come too late and be dropped.
    pub(crate) fn deliver(&self, notification: ProgressNotificationParam) {
        let Some(token) = number(&notification.progress_token) else {
            return;
        };
        let (progress, total) = (notification.progress, notification.total);
        if !(ToolProgress {
            progress,
            total,
            message: None,
        })
        .is_finite()
        {
            return;
        }
        let mut routes = self.lock();
        let Some(route) = routes.get_mut(&token) else {
            return;
        };
        let now = Instant::now();
        let done = total.is_some_and(|total| progress >= total);
        if let Some((when, last)) = route.last
            && (progress <= last || (!done && now.duration_since(when) < MIN_INTERVAL))
        {
            return;
        }
        route.last = Some((now, progress));
        let message = notification.message.map(|mut message| {
            message.truncate(message.floor_char_boundary(MAX_MESSAGE));
            message
        });
        // Under the lock, so reports reach the listener in the order they were let through.
        route.context.report_progress(ToolProgress {
            progress,
            total,
            message,
        });
    }
}

/// Sends a call's progress reports to the client as `notifications/progress` for `token`: the latest
/// report each time the forwarder gets to send (a slow client skips some), until the reports end.
pub(crate) async fn forward_progress(
    token: ProgressToken,
    mut latest: tokio::sync::watch::Receiver<Option<ToolProgress>>,
    peer: rmcp::service::Peer<rmcp::service::RoleServer>,
) {
    while latest.changed().await.is_ok() {
        let Some(progress) = latest.borrow_and_update().clone() else {
            continue;
        };
        let mut notification = ProgressNotificationParam::new(token.clone(), progress.progress);
        notification.total = progress.total;
        notification.message = progress.message;
        if peer.notify_progress(notification).await.is_err() {
            break;
        }
    }
}

/// A token as the number kai's client sends; a server may echo it back as a string of digits.
fn number(token: &ProgressToken) -> Option<i64> {
    match &token.0 {
        NumberOrString::Number(number) => Some(*number),
        NumberOrString::String(text) => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(token: i64, progress: f64) -> ProgressNotificationParam {
        ProgressNotificationParam::new(ProgressToken(NumberOrString::Number(token)), progress)
    }

    #[test]
    fn reports_reach_the_call_they_name_bounded() {
        let routes = Arc::new(ProgressRoutes::default());
        let token = |number: i64| ProgressToken(NumberOrString::Number(number));
        assert!(routes.route(token(7), &ToolContext::new("unheard")).is_none());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        let context = ToolContext::new("call")
            .with_progress_listener(move |progress| sink.lock().unwrap_or_else(PoisonError::into_inner).push(progress));
        let number = 7;
        let guard = routes.route(token(number), &context).unwrap();
        routes.deliver(notification(number, 1.0).with_total(4.0).with_message("é".repeat(1000)));
        // Too soon after the last, a made-up token, numbers that are not numbers: dropped.
        routes.deliver(notification(number, 2.0));
        routes.deliver(notification(number + 1, 3.0));
        std::thread::sleep(MIN_INTERVAL);
        routes.deliver(notification(number, f64::NAN));
        routes.deliver(notification(number, 3.0).with_total(f64::INFINITY));
        routes.deliver(ProgressNotificationParam::new(
            ProgressToken(NumberOrString::String("x".into())),
            1.0,
        ));
        routes.deliver(notification(number, 3.0));
        // Going back is dropped; the final report passes however soon it comes, and a token echoed
        // as a string of digits is the same token.
        std::thread::sleep(MIN_INTERVAL);
        routes.deliver(notification(number, 2.5));
        routes.deliver(ProgressNotificationParam::new(
            ProgressToken(NumberOrString::String(number.to_string().into())),
            3.5,
        ));
        routes.deliver(notification(number, 4.0).with_total(4.0));
        drop(guard);
        routes.deliver(notification(number, 5.0));
        let heard = heard.lock().unwrap_or_else(PoisonError::into_inner);
        let progress: Vec<f64> = heard.iter().map(|report| report.progress).collect();
        assert_eq!(progress, [1.0, 3.0, 3.5, 4.0], "{heard:?}");
        assert_eq!(heard[0].total, Some(4.0));
        assert_eq!(heard[0].message.as_ref().map(String::len), Some(1024));
    }
}
