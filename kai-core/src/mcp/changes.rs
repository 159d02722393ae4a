//! Lists an MCP server announces as changed.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ServerNotification, SubscriptionFilter};
use rmcp::service::{Peer, RoleClient, Subscription};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A list an MCP server announced as changed: list it again to see the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum McpChange {
    /// Its tools ([`McpClient::tools`](crate::mcp::McpClient::tools)).
    Tools,
    /// Its resources ([`McpClient::resources`](crate::mcp::McpClient::resources)).
    Resources,
    /// Its prompts ([`McpClient::prompts`](crate::mcp::McpClient::prompts)).
    Prompts,
}

/// Every kind, in the order counted.
const KINDS: [McpChange; 3] = [McpChange::Tools, McpChange::Resources, McpChange::Prompts];

impl McpChange {
    /// Its place among the counts.
    fn index(self) -> usize {
        match self {
            McpChange::Tools => 0,
            McpChange::Resources => 1,
            McpChange::Prompts => 2,
        }
    }

    /// The change a server notification announces, if it announces one.
    pub(crate) fn announced_by(notification: &ServerNotification) -> Option<Self> {
        match notification {
            ServerNotification::ToolListChangedNotification(_) => Some(McpChange::Tools),
            ServerNotification::ResourceListChangedNotification(_) => Some(McpChange::Resources),
            ServerNotification::PromptListChangedNotification(_) => Some(McpChange::Prompts),
            _ => None,
        }
    }
}

/// How many times the server announced each list as changed. Counts rather than a queue, so a
/// server that announces without end fills no memory.
pub(crate) type Announcements = watch::Sender<[u64; 3]>;

/// Counts one announcement of `change`.
pub(crate) fn announce(announcements: &Announcements, change: McpChange) {
    announcements.send_modify(|counts| counts[change.index()] += 1);
}

/// Forwards what `subscription` (a `subscriptions/listen` stream of the 2026-07-28 revision, asking
/// for `filter`) announces while the connection lasts. When the server ends the stream (it may, when
/// announcements come faster than they are sent), it is opened again a second later and every list
/// is announced, since what changed meanwhile is unknown.
pub(crate) async fn forward(
    peer: Peer<RoleClient>,
    filter: SubscriptionFilter,
    mut subscription: Subscription,
    announcements: Arc<Announcements>,
) {
    loop {
        while let Ok(Some(notification)) = subscription.next().await {
            if let Some(change) = McpChange::announced_by(&notification) {
                announce(&announcements, change);
            }
        }
        if peer.is_transport_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        subscription = match tokio::time::timeout(Duration::from_secs(10), peer.listen(filter.clone())).await {
            Ok(Ok(subscription)) => subscription,
            _ => return,
        };
        for kind in KINDS {
            announce(&announcements, kind);
        }
    }
}

/// The lists a server announces as changed from some moment on; made by
/// [`McpClient::changes`](crate::mcp::McpClient::changes).
///
/// Announcements that come faster than they are read merge: a list is reported once however many
/// times it was announced meanwhile.
#[derive(Debug)]
pub struct McpChanges {
    counts: watch::Receiver<[u64; 3]>,
    seen: [u64; 3],
}

impl McpChanges {
    /// Changes announced after now.
    pub(crate) fn from_now(mut counts: watch::Receiver<[u64; 3]>) -> Self {
        let seen = *counts.borrow_and_update();
        Self { counts, seen }
    }

    /// The next list announced as changed; `None` once the connection has ended.
    pub async fn next(&mut self) -> Option<McpChange> {
        loop {
            let counts = *self.counts.borrow_and_update();
            for kind in KINDS {
                let index = kind.index();
                if counts[index] > self.seen[index] {
                    self.seen[index] = counts[index];
                    return Some(kind);
                }
            }
            self.counts.changed().await.ok()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn announcements_merge_and_end_with_their_senders() {
        let announcements = Announcements::new([0; 3]);
        announce(&announcements, McpChange::Tools);
        let mut changes = McpChanges::from_now(announcements.subscribe());
        for _ in 0..1_000 {
            announce(&announcements, McpChange::Prompts);
        }
        announce(&announcements, McpChange::Tools);
        assert_eq!(changes.next().await, Some(McpChange::Tools));
        assert_eq!(changes.next().await, Some(McpChange::Prompts));
        drop(announcements);
        assert_eq!(changes.next().await, None);
    }
}
