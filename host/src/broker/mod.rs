//! The broker: every state change of a task in Redis, in Asynq's layout
//! (see [`keys`] for the full key table).
//!
//! ```text
//! enqueue ──► pending ──claim──► active + lease ──finish──► (deleted) | completed ──expire──► (deleted)
//!   │  ▲                            │   │  └─fail─► retry ──forward──► pending
//!   │  └────────── forward ◄── scheduled   └─fail─► archived
//!   └─ (process_at) ──────────────► scheduled        └ requeue (shutdown) ─► pending
//!                                      abandoned lease ──recover (fail with guard)──► retry | archived
//! add_to_group ──► aggregating (g:<group>) ──take──► aggregation set ──finish──► one pending task
//!                          ▲                                │
//!                          └──────── reclaim (abandoned) ◄──┘
//! ```
//!
//! A claim is also where a queue's limits (rate, `max_running`) are
//! decided: `claim_step.lua` takes only as many tasks as they allow.
//!
//! Each arrow is one Lua script run atomically on the queue's node. Scripts
//! that act on tasks found by a scan (claim, forward, expire) take ids the
//! caller peeked at with a read (or, for a claim, the ids the previous claim
//! returned as next in line), so every key a script touches is declared in
//! KEYS, and they re-check each id inside the script.

mod claim;
mod conn;
mod enqueue;
mod error;
mod groups;
mod inspect;
mod lanes;
mod limit;
mod moves;
mod periodic;
mod scripts;
mod servers;
mod settle;
mod stats;
mod topology;
mod upkeep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands as _;

pub use crate::keys::{self, QueueKeys};
pub use conn::{Conn, ConnectError, RedisConfig};
pub use inspect::{DayStats, StoredTask};
pub use moves::{CANCEL_CHANNEL, Move};
pub use periodic::{HISTORY_MAX, TickEvent, Ticked};
pub use servers::{ClusterInfo, ServerEntry};
pub use topology::{ClusterNode, QueueLocation};

pub use claim::Claimed;
pub use enqueue::{Enqueued, SENT_MARK_TTL};
pub use error::BrokerError;
pub use groups::{GroupRules, TakenGroup};
pub use limit::{Claim, Held, LimitStatus, QueueLimits};
pub use settle::{FailTo, LeaseCleared, LeaseHolder, Refill};
pub use stats::QueueStats;
pub use upkeep::{ArchiveLimits, SCAN_BATCH, SCAN_LIMIT};

/// How often a broker adds a queue it uses to `asynq:queues` again.
const REGISTER_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// How long daily counters are kept.
const STATS_TTL_SECS: i64 = 90 * 24 * 3600;

/// The broker: a connection plus the scripts. Cheap to clone.
///
/// A broker acts for one lease owner (a worker's server id): the leases it
/// takes carry that id in the task hash (`lease_owner`), and it only
/// finishes, fails, requeues or extends tasks whose lease is still its own,
/// so a worker that lost a lease can never acknowledge another worker's run.
#[derive(Clone)]
pub struct Broker {
    conn: Conn,
    config: RedisConfig,
    /// Queues this broker added to `asynq:queues`, and when.
    known_queues: Arc<Mutex<HashMap<String, Instant>>>,
    lanes: Arc<lanes::Lanes>,
    owner: Arc<str>,
}

/// Now as Unix seconds.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// Now as Unix nanoseconds.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64
}

fn stats_expiry() -> i64 {
    now_secs() + STATS_TTL_SECS
}

impl Broker {
    /// Connects to the cluster or single Redis of `config`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, BrokerError> {
        let conn = Conn::connect(config, Duration::from_secs(5)).await?;
        Ok(Self {
            conn,
            config: config.clone(),
            known_queues: Arc::default(),
            lanes: Arc::default(),
            owner: uuid::Uuid::new_v4().to_string().into(),
        })
    }

    /// This broker acting for the lease owner `owner` (a worker's server
    /// id); the connection is shared.
    pub fn with_owner(&self, owner: &str) -> Self {
        Self {
            owner: owner.into(),
            ..self.clone()
        }
    }

    /// The lease owner this broker acts for.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A new connection for blocking waits (BLPOP), so they never hold up
    /// the shared one.
    pub async fn blocking_conn(&self) -> Result<Conn, BrokerError> {
        Ok(Conn::connect(&self.config, Duration::from_secs(30)).await?)
    }

    /// A pub/sub connection (for cancellations).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, BrokerError> {
        Ok(self.config.pubsub().await?)
    }

    /// The shared connection, for commands not covered here.
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Whether this broker talks to a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Adds `queue` to `asynq:queues`: once per broker, and again once a
    /// minute while it is used, so a queue removed by another process
    /// (`wasq queue rm`) and then enqueued into shows up again.
    pub async fn register_queue(&self, queue: &str) -> Result<(), BrokerError> {
        let fresh = self
            .known_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .is_some_and(|at| at.elapsed() < REGISTER_AGAIN_AFTER);
        if fresh {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = conn.sadd(keys::ALL_QUEUES, queue).await?;
        self.known_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned(), Instant::now());
        Ok(())
    }
}
