//! Client-side rate limiting: requests and tokens per minute, shared by every clone of a client.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use web_time::Instant;

/// Limits per minute; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (estimated from the request before sending).
    pub tokens_per_minute: Option<u32>,
}

/// Two token buckets (requests, tokens) refilled continuously. Clones share the buckets.
#[derive(Debug, Clone, Default)]
pub(super) struct RateLimiter {
    buckets: Option<Arc<Mutex<Buckets>>>,
}

#[derive(Debug)]
struct Buckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    available: f64,
    per_second: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: u32, now: Instant) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self {
            capacity,
            available: capacity,
            per_second: capacity / 60.0,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.available = (self.available + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// How long until `amount` is available (amounts above capacity wait for a full bucket).
    fn wait_for(&self, amount: f64) -> Duration {
        let amount = amount.min(self.capacity);
        if self.available >= amount {
            Duration::ZERO
        } else {
            // A bucket that refills very slowly (or never) is checked again every minute.
            let seconds = (amount - self.available) / self.per_second;
            Duration::try_from_secs_f64(seconds)
                .unwrap_or(Duration::MAX)
                .min(Duration::from_secs(60))
        }
    }
}

impl RateLimiter {
    /// A limiter enforcing `limit`.
    pub(super) fn new(limit: RateLimit) -> Self {
        if limit.requests_per_minute.is_none() && limit.tokens_per_minute.is_none() {
            return Self::default();
        }
        let now = Instant::now();
        Self {
            buckets: Some(Arc::new(Mutex::new(Buckets {
                requests: limit.requests_per_minute.map(|n| Bucket::new(n, now)),
                tokens: limit.tokens_per_minute.map(|n| Bucket::new(n, now)),
            }))),
        }
    }

    /// Waits until one request of about `tokens` tokens may be sent, then takes them.
    pub(super) async fn acquire(&self, tokens: u64) {
        let Some(buckets) = &self.buckets else { return };
        let tokens = tokens as f64;
        loop {
            let wait = {
                let mut guard = buckets.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let Buckets {
                    requests,
                    tokens: token_bucket,
                } = &mut *guard;
                let mut wait = Duration::ZERO;
                if let Some(bucket) = requests {
                    bucket.refill(now);
                    wait = wait.max(bucket.wait_for(1.0));
                }
                if let Some(bucket) = token_bucket {
                    bucket.refill(now);
                    wait = wait.max(bucket.wait_for(tokens));
                }
                if wait.is_zero() {
                    if let Some(bucket) = requests {
                        bucket.available -= 1.0;
                    }
                    if let Some(bucket) = token_bucket {
                        bucket.available -= tokens.min(bucket.capacity);
                    }
                    return;
                }
                wait
            };
            kai_core::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(RateLimit::default());
        futures::executor::block_on(async {
            for _ in 0..1000 {
                limiter.acquire(1_000_000).await;
            }
        });
    }

    #[test]
    fn buckets_refill_over_time() {
        let start = Instant::now();
        let mut bucket = Bucket::new(60, start);
        bucket.available = 0.0;
        assert!(bucket.wait_for(1.0) > Duration::from_millis(900));
        bucket.refill(start + Duration::from_secs(2));
        assert!((bucket.available - 2.0).abs() < 1e-6);
        assert_eq!(bucket.wait_for(1.0), Duration::ZERO);
        assert!(
            bucket.wait_for(1e9) <= Duration::from_secs(60),
            "amounts above capacity wait for a full bucket"
        );
    }

    #[test]
    fn a_bucket_that_never_refills_waits_a_minute_at_a_time_instead_of_panicking() {
        let start = Instant::now();
        let mut bucket = Bucket::new(0, start);
        bucket.available = 0.0;
        assert_eq!(bucket.wait_for(1.0), Duration::from_secs(60));
    }

    #[test]
    fn clones_share_the_budget() {
        let limiter = RateLimiter::new(RateLimit {
            requests_per_minute: Some(600),
            tokens_per_minute: None,
        });
        let clone = limiter.clone();
        let started = std::time::Instant::now();
        futures::executor::block_on(async {
            for _ in 0..300 {
                limiter.acquire(0).await;
                clone.acquire(0).await;
            }
            // The bucket (600) is now empty: the next request waits about 0.1 s for a refill.
            limiter.acquire(0).await;
        });
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }
}
