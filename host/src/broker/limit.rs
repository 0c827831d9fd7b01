//! Cluster-wide limits of a queue: a rate (a token bucket) and a cap on the
//! tasks running at once, both decided inside the claim script in the
//! queue's own slot (see `scripts/claim_step.lua`), so no number of workers
//! can overshoot them. A task a limit holds back stays pending: it is not
//! retried, failed or counted as an error.
//!
//! The limit hash `asynq:{q}:limit` holds the bucket, the limits as the
//! workers last published them (for `wasq queue inspect`, which has no
//! config), and how many task claims each limit deferred.

use std::collections::HashMap;
use std::time::Duration;

use super::{Broker, BrokerError, Claimed, QueueKeys};
use crate::units::Rate;

/// The limits of one queue; the default has none.
///
/// ```
/// use wasq::broker::QueueLimits;
/// let limits = QueueLimits {
///     rate: Some("50/s".parse().unwrap()),
///     burst: 5,
///     max_running: Some(10),
/// };
/// assert!(limits.any());
/// assert!(!QueueLimits::default().any());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Task starts per period, across all workers.
    pub rate: Option<Rate>,
    /// Starts the rate allows at once after an idle spell (the bucket's
    /// size); at least 1.
    pub burst: u32,
    /// Tasks running at once, across all workers.
    pub max_running: Option<u64>,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            rate: None,
            burst: 1,
            max_running: None,
        }
    }
}

impl QueueLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rate.is_some() || self.max_running.is_some()
    }

    /// The claim scripts' three limit arguments: rate a second, burst,
    /// max_running (0 for a limit not set).
    pub(super) fn args(&self) -> [String; 3] {
        [
            self.rate
                .map_or_else(|| "0".to_owned(), |r| r.per_second().to_string()),
            self.burst.max(1).to_string(),
            self.max_running.unwrap_or(0).to_string(),
        ]
    }
}

/// Why a claim took fewer tasks than it asked for although more were
/// pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The rate: the next token is due after this long.
    Rate(Duration),
    /// `max_running`: the queue runs as many tasks as it may.
    Running,
}

impl Held {
    /// The claim script's `held` reply (0 none, -1 running, else ms).
    pub(super) fn from_reply(held: i64) -> Option<Held> {
        match held {
            0 => None,
            n if n < 0 => Some(Held::Running),
            ms => Some(Held::Rate(Duration::from_millis(ms as u64))),
        }
    }
}

/// What a claim took, and whether a limit held back more.
#[derive(Debug, Default)]
pub struct Claim {
    /// The tasks claimed.
    pub tasks: Vec<Claimed>,
    /// The limit that stopped the claim short, if one did.
    pub held: Option<Held>,
}

/// A queue's limits and their use, as `wasq queue inspect` shows them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LimitStatus {
    /// The rate the workers last published (`"50/s"`), if any.
    pub rate: Option<String>,
    /// The rate's burst.
    pub burst: Option<u32>,
    /// Tokens in the bucket now (it refills at the rate, up to the burst).
    pub tokens: Option<f64>,
    /// `max_running`, if set.
    pub max_running: Option<u64>,
    /// Tasks running now, across all workers.
    pub running: u64,
    /// Task claims the rate deferred (a task deferred by several claims
    /// counts each time).
    pub deferred_rate: u64,
    /// Task claims `max_running` deferred.
    pub deferred_running: u64,
}

impl Broker {
    /// Writes `limits` into the queue's limit hash for `wasq queue inspect`
    /// and the dashboard. The workers enforce the limits of their own
    /// config; run every worker of a queue with the same limits.
    pub async fn publish_limits(
        &self,
        queue: &QueueKeys,
        limits: &QueueLimits,
    ) -> Result<(), BrokerError> {
        let key = queue.limit();
        let mut pipe = redis::pipe();
        match limits.rate {
            Some(rate) => {
                pipe.hset(&key, "rate", rate.to_string())
                    .hset(&key, "burst", limits.burst.max(1))
            }
            None => pipe.hdel(&key, &["rate", "burst", "tokens", "at"][..]),
        };
        match limits.max_running {
            Some(n) => pipe.hset(&key, "max_running", n),
            None => pipe.hdel(&key, "max_running"),
        };
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// The limits of `queue` and their use.
    pub async fn limit_status(&self, queue: &str) -> Result<LimitStatus, BrokerError> {
        let q = QueueKeys::new(queue);
        let (fields, running): (HashMap<String, String>, u64) = redis::pipe()
            .hgetall(q.limit())
            .llen(q.active())
            .query_async(&mut self.conn.clone())
            .await?;
        let num = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        let float = |name: &str| fields.get(name).and_then(|v| v.parse::<f64>().ok());
        let burst = num("burst").map(|b| b as u32);
        let rate = fields.get("rate").and_then(|r| r.parse::<Rate>().ok());
        // The bucket as of now: what it held at `at` (Redis's clock, in
        // microseconds), refilled since; full when no claim touched it yet.
        let tokens = rate.map(|rate| {
            let cap = f64::from(burst.unwrap_or(1));
            match (float("tokens"), float("at")) {
                (Some(tokens), Some(at)) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_micros() as f64;
                    (tokens + (now - at).max(0.0) * rate.per_second() / 1e6).min(cap)
                }
                _ => cap,
            }
        });
        Ok(LimitStatus {
            rate: fields.get("rate").cloned(),
            burst,
            tokens,
            max_running: num("max_running"),
            running,
            deferred_rate: num("deferred_rate").unwrap_or(0),
            deferred_running: num("deferred_running").unwrap_or(0),
        })
    }
}
