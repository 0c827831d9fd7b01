//! The broker: every state change of a task in Redis, in Asynq's layout
//! (see [`keys`] for the full key table).
//!
//! ```text
//! enqueue ──► pending ──claim──► active + lease ──finish──► (deleted) | completed ──expire──► (deleted)
//!   │  ▲                            │   │  └─fail─► retry ──forward──► pending
//!   │  └────────── forward ◄── scheduled   └─fail─► archived
//!   └─ (process_at) ──────────────► scheduled        └ requeue (shutdown) ─► pending
//!                                      abandoned lease ──recover (fail with guard)──► retry | archived
//! ```
//!
//! Each arrow is one Lua script run atomically on the queue's node. Scripts
//! that act on tasks found by a scan (claim, forward, expire) take ids the
//! caller peeked at with a read (or, for a claim, the ids the previous claim
//! returned as next in line), so every key a script touches is declared in
//! KEYS, and they re-check each id inside the script.

mod conn;
mod inspect;
mod lanes;
mod scripts;
mod topology;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use redis::AsyncCommands as _;

pub use crate::keys::{self, QueueKeys};
pub use conn::{Conn, ConnectError, RedisConfig};
pub use inspect::{CANCEL_CHANNEL, ClusterInfo, DayStats, Move, ServerEntry, StoredTask};
pub use topology::{ClusterNode, QueueLocation};

use crate::proto::TaskMessage;

/// Ids one forward or expire script call takes.
pub const SCAN_BATCH: usize = 200;
/// Most tasks one forward or expire pass moves, so one queue's backlog
/// does not hold up the others' upkeep.
pub const SCAN_LIMIT: u64 = 20_000;

/// How often a broker adds a queue it uses to `asynq:queues` again.
const REGISTER_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// How long the mark that a follow-up task was sent outlives a parent that
/// was never acknowledged (see [`Broker::enqueue_follow_up`]).
pub const SENT_MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long daily counters are kept.
const STATS_TTL_SECS: i64 = 90 * 24 * 3600;

/// A broker error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A command or script failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something unexpected.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The operation is not allowed on these tasks.
    #[error("{0}")]
    Refused(String),
    /// A durable write reached fewer replicas than required in time: it is
    /// on the master, but a failover now could lose it.
    #[error(
        "not durable: {acked} of {wanted} replicas of queue {queue}'s master confirmed the write within {timeout:?} (it may be lost if the master fails now; retry with the same task id)"
    )]
    NotReplicated {
        /// Queue.
        queue: String,
        /// Replicas that confirmed.
        acked: u32,
        /// Replicas required (`wait_replicas`).
        wanted: u32,
        /// How long it waited.
        timeout: Duration,
    },
}

impl BrokerError {
    /// The same error for another caller (a shared script call failed for
    /// every task it carried): Redis errors are cloned, the rest carried
    /// as their message.
    pub(crate) fn share(&self) -> BrokerError {
        match self {
            BrokerError::Redis(e) => BrokerError::Redis(e.clone()),
            other => BrokerError::Protocol(other.to_string()),
        }
    }
}

/// How [`Broker::forget_lease`] cleared an expired lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCleared {
    /// The task's hash was gone: its id left the lease set and `active`.
    TaskGone,
    /// The hash had no `msg`: it was archived as it is.
    ArchivedWithoutMsg,
}

/// How an enqueue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored.
    Ok,
    /// A task with that id exists in the queue.
    IdConflict,
    /// A unique lock for the same type and payload is held.
    Duplicate,
}

/// Counts of one queue by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Paused?
    pub paused: bool,
    /// Pending tasks.
    pub pending: u64,
    /// Active tasks.
    pub active: u64,
    /// Scheduled tasks.
    pub scheduled: u64,
    /// Tasks waiting to be retried.
    pub retry: u64,
    /// Archived tasks.
    pub archived: u64,
    /// Completed tasks kept for retention.
    pub completed: u64,
    /// Processed today (UTC).
    pub processed_today: u64,
    /// Failed today (UTC).
    pub failed_today: u64,
    /// Processed in total.
    pub processed_total: u64,
    /// Failed in total.
    pub failed_total: u64,
}

/// A task claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Task id.
    pub id: String,
    /// The raw `msg` bytes (may be invalid if another tool wrote them).
    pub msg: Vec<u8>,
}

/// What [`Broker::finish_many_and_claim`] claims after acknowledging.
#[derive(Debug)]
pub struct Refill<'a> {
    /// At most this many tasks.
    pub want: usize,
    /// Their lease expiry, Unix seconds.
    pub lease_expiry: i64,
    /// The ids expected next in line, oldest first; replaced by the ids
    /// seen behind the claimed ones (see [`Broker::claim`]).
    pub hint: &'a mut Vec<String>,
}

/// How much of a queue's archive is kept (`archive_max` and
/// `archive_max_age` of `[queues.<name>]`; Asynq's limits by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Most archived tasks kept.
    pub max: u64,
    /// Oldest archived task kept.
    pub max_age: Duration,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max: 10_000,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Where a failed task goes (see `fail.lua`).
struct Failed<'a> {
    /// To the archive (at `score`), or to retry at `score`.
    archive: bool,
    score: i64,
    /// Recovering an abandoned task: act only if its lease expired by then.
    recover_at: Option<i64>,
    /// Why the task cannot run as it is, stored beside its bytes.
    invalid: Option<&'a str>,
    /// Count it in the processed and failed counters (it failed).
    counted: bool,
}

/// Pairs a claim script's flat `id, msg, id, msg, ...` reply.
fn claimed_tasks(flat: Vec<Vec<u8>>) -> Result<Vec<Claimed>, BrokerError> {
    let mut claimed = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(id), Some(msg)) = (it.next(), it.next()) {
        let id = String::from_utf8(id)
            .map_err(|_| BrokerError::Protocol("task id is not UTF-8".into()))?;
        claimed.push(Claimed { id, msg });
    }
    Ok(claimed)
}

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

    /// Enqueues one task: pending now, or scheduled for `process_at` (Unix
    /// seconds); unique for `unique_ttl` seconds when given.
    ///
    /// Concurrent calls into one queue share one script call (group commit:
    /// a lone call goes out at once, calls arriving while others are on
    /// the wire ride the next one), and each gets its own outcome.
    pub async fn enqueue(
        &self,
        msg: &TaskMessage,
        process_at: Option<i64>,
        unique_ttl: Option<u64>,
    ) -> Result<Enqueued, BrokerError> {
        self.enqueue_stamped(msg, process_at, unique_ttl, now_nanos())
            .await
    }

    /// [`Broker::enqueue`] with the enqueue's own time, Unix nanoseconds:
    /// the task's `pending_since`, and the mark by which the script knows a
    /// retry of the same enqueue (the same message and time) whose first
    /// try landed. Retries of one enqueue pass the same `since`.
    pub async fn enqueue_stamped(
        &self,
        msg: &TaskMessage,
        process_at: Option<i64>,
        unique_ttl: Option<u64>,
        since: i64,
    ) -> Result<Enqueued, BrokerError> {
        self.enqueue_marked(msg, process_at, unique_ttl, since, false)
            .await
    }

    /// Enqueues a guest's follow-up task, leaving a mark
    /// (`asynq:{q}:sent:<id>`) that it was sent: while the mark lasts, a
    /// second enqueue of the same id is an [`Enqueued::IdConflict`] even
    /// after the task ran and was deleted. The worker deletes the marks
    /// with [`forget_sent_marks`](Self::forget_sent_marks) once the parent
    /// is acknowledged; a mark left behind (the worker died in between)
    /// expires after [`SENT_MARK_TTL`].
    pub async fn enqueue_follow_up(
        &self,
        msg: &TaskMessage,
        process_at: Option<i64>,
        since: i64,
    ) -> Result<Enqueued, BrokerError> {
        self.enqueue_marked(msg, process_at, None, since, true)
            .await
    }

    /// Deletes the sent marks of follow-up tasks `ids` of `queue`.
    pub async fn forget_sent_marks(&self, queue: &str, ids: &[String]) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let q = QueueKeys::new(queue);
        let marks: Vec<String> = ids.iter().map(|id| q.sent(id)).collect();
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(marks).await?;
        Ok(())
    }

    async fn enqueue_marked(
        &self,
        msg: &TaskMessage,
        process_at: Option<i64>,
        unique_ttl: Option<u64>,
        since: i64,
        mark: bool,
    ) -> Result<Enqueued, BrokerError> {
        let q = QueueKeys::new(&msg.queue);
        let ttl = unique_ttl.filter(|ttl| *ttl > 0);
        // The lock must be one of the queue's keys (the script runs in the
        // queue's slot); a message without one gets Asynq's.
        let lock = match ttl {
            None => None,
            Some(_) if msg.unique_key.is_empty() => Some(q.unique(&msg.r#type, &msg.payload)),
            Some(_) if msg.unique_key.starts_with(q.prefix()) => Some(msg.unique_key.clone()),
            Some(_) => {
                return Err(BrokerError::Refused(format!(
                    "unique key {:?} is not a key of queue {}",
                    msg.unique_key, msg.queue
                )));
            }
        };
        // Asynq's lock for an empty, non-nil payload counts too.
        let other_lock = lock
            .as_ref()
            .filter(|lock| **lock == q.unique(&msg.r#type, &msg.payload))
            .and_then(|_| q.unique_other_form(&msg.r#type, &msg.payload));
        self.register_queue(&msg.queue).await?;
        let task = lanes::NewTask {
            key: q.task(&msg.id),
            lock,
            other_lock,
            msg: msg.encode_to_vec(),
            id: msg.id.clone(),
            at: process_at.unwrap_or(0),
            ttl: ttl.unwrap_or(0),
            since,
            mark: mark.then(|| (q.sent(&msg.id), SENT_MARK_TTL.as_secs())),
        };
        lanes::enqueue(self, &msg.queue, task).await
    }

    /// Enqueues `tasks` into `queue` with one script call; one outcome per
    /// task, in order.
    async fn enqueue_many(
        &self,
        queue: &str,
        tasks: &[lanes::NewTask],
    ) -> Result<Vec<Enqueued>, BrokerError> {
        let q = QueueKeys::new(queue);
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        inv.key(q.pending()).key(q.scheduled()).key(q.wake());
        for task in tasks {
            inv.key(&task.key);
            if let Some(lock) = &task.lock {
                inv.key(lock);
            }
            if let Some(other) = &task.other_lock {
                inv.key(other);
            }
            if let Some((mark, _)) = &task.mark {
                inv.key(mark);
            }
            inv.arg(&task.msg)
                .arg(&task.id)
                .arg(task.at)
                .arg(task.ttl)
                .arg(task.since)
                .arg(task.mark.as_ref().map_or(0, |(_, ttl)| *ttl))
                .arg(u8::from(task.other_lock.is_some()));
        }
        let mut conn = self.conn.clone();
        let codes: Vec<i64> = inv.invoke_async(&mut conn).await?;
        if codes.len() != tasks.len() {
            return Err(BrokerError::Protocol(format!(
                "the enqueue script answered {} codes for {} tasks",
                codes.len(),
                tasks.len()
            )));
        }
        Ok(codes
            .into_iter()
            .map(|code| match code {
                1 => Enqueued::Ok,
                0 => Enqueued::IdConflict,
                _ => Enqueued::Duplicate,
            })
            .collect())
    }

    /// Durable mode (`wait_replicas` > 0): waits until that many replicas of
    /// `queue`'s master have every write this connection sent it so far
    /// (Redis `WAIT`, sent to that master). Does nothing when not durable.
    pub async fn wait_replicated(&self, queue: &str) -> Result<(), BrokerError> {
        let wanted = self.config.wait_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let timeout = self.config.wait_timeout();
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wanted).arg(timeout.as_millis() as u64);
        let acked: u32 = match &self.conn {
            Conn::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(QueueKeys::new(queue).pending(), SlotAddr::Master);
                let reply = c
                    .clone()
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                redis::from_redis_value(reply)
                    .map_err(|e| BrokerError::Protocol(format!("WAIT: {e}")))?
            }
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await?,
        };
        if acked < wanted {
            return Err(BrokerError::NotReplicated {
                queue: queue.to_owned(),
                acked,
                wanted,
                timeout,
            });
        }
        Ok(())
    }

    /// Claims up to `n` pending tasks of `queue` with a lease until
    /// `lease_expiry` (Unix seconds). Empty when the queue is empty or
    /// paused.
    ///
    /// `hint` carries the ids expected at the pending list's tail from one
    /// claim to the next (oldest first): each claim returns the ids behind
    /// the ones it took, so a worker draining a queue claims in one round
    /// trip instead of a peek and a claim. An empty hint means peek first.
    /// A stale hint (another worker took those tasks) costs one extra
    /// round trip, never a wrong claim: the script re-checks every id.
    pub async fn claim(
        &self,
        queue: &QueueKeys,
        n: usize,
        lease_expiry: i64,
        hint: &mut Vec<String>,
    ) -> Result<Vec<Claimed>, BrokerError> {
        let mut conn = self.conn.clone();
        // A stale hint comes back fresh with nothing claimed: try again with
        // it, a few times, before calling the queue empty.
        for _ in 0..3 {
            let ids: Vec<String> = if hint.is_empty() {
                let mut peeked: Vec<String> =
                    conn.lrange(queue.pending(), -(n as isize), -1).await?;
                peeked.reverse();
                peeked
            } else {
                let take = n.min(hint.len());
                hint.drain(..take).collect()
            };
            hint.clear();
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut inv = scripts::CLAIM.prepare_invoke();
            inv.key(queue.pending())
                .key(queue.paused())
                .key(queue.active())
                .key(queue.lease())
                .arg(lease_expiry)
                .arg(&*self.owner)
                .arg((2 * n).clamp(16, 64));
            for id in &ids {
                inv.key(queue.task(id)).arg(id);
            }
            let (flat, next): (Vec<Vec<u8>>, Vec<String>) = inv.invoke_async(&mut conn).await?;
            // The hint lists the tail newest first; keep it oldest first.
            hint.extend(next.into_iter().rev());
            let claimed = claimed_tasks(flat)?;
            if !claimed.is_empty() || hint.is_empty() {
                return Ok(claimed);
            }
        }
        Ok(Vec::new())
    }

    /// Blocks up to `timeout` for a wake token of `queue` on `conn` (a
    /// connection from [`blocking_conn`](Self::blocking_conn)). True when
    /// work may be pending.
    pub async fn wait_for_work(
        conn: &mut Conn,
        queue: &QueueKeys,
        timeout: Duration,
    ) -> Result<bool, BrokerError> {
        let popped: Option<(String, String)> =
            conn.blpop(queue.wake(), timeout.as_secs_f64()).await?;
        Ok(popped.is_some())
    }

    /// Whether `queue` has pending tasks and is not paused, on `conn` (the
    /// connection of [`wait_for_work`](Self::wait_for_work)): how a worker
    /// sees tasks that a producer wrote without a wake token.
    pub async fn has_pending(conn: &mut Conn, queue: &QueueKeys) -> Result<bool, BrokerError> {
        let (pending, paused): (u64, bool) = redis::pipe()
            .llen(queue.pending())
            .exists(queue.paused())
            .query_async(conn)
            .await?;
        Ok(pending > 0 && !paused)
    }

    /// A task finished well: delete it, or keep it as completed until
    /// `now + retention` with its `result`. False when the lease was lost.
    pub async fn finish(&self, msg: &TaskMessage, result: &[u8]) -> Result<bool, BrokerError> {
        let q = QueueKeys::new(&msg.queue);
        let now = now_secs();
        let mut inv = scripts::FINISH.prepare_invoke();
        inv.key(q.active())
            .key(q.lease())
            .key(q.task(&msg.id))
            .key(q.completed())
            .key(q.processed_on(&keys::utc_date(now)))
            .key(q.processed_total());
        if !msg.unique_key.is_empty() {
            inv.key(&msg.unique_key);
        }
        inv.arg(&msg.id);
        if msg.retention > 0 {
            let mut kept = msg.clone();
            kept.completed_at = now;
            inv.arg(now + msg.retention)
                .arg(kept.encode_to_vec())
                .arg(result);
        } else {
            inv.arg(0).arg("").arg("");
        }
        inv.arg(stats_expiry()).arg(&*self.owner);
        let mut conn = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(done == 1)
    }

    /// Deletes many finished tasks of one queue in one call (tasks with no
    /// retention and no unique lock), each given with the lease expiry this
    /// worker last wrote for it (at the claim or the last heartbeat that
    /// succeeded). Per task: false when the lease was lost.
    pub async fn finish_many(
        &self,
        queue: &QueueKeys,
        tasks: &[(String, i64)],
    ) -> Result<Vec<bool>, BrokerError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let (done, _) = self.finish_many_and_claim(queue, tasks, None).await?;
        Ok(done)
    }

    /// [`finish_many`](Self::finish_many), then in the same script call
    /// [`claim`](Self::claim) up to `refill.want` tasks to replace them, with
    /// the ids `refill.hint` expects next in line (none are claimed when it is
    /// empty, but a fresh hint comes back). The acknowledgements run first,
    /// so the queue's `active` list never holds more of this worker's tasks
    /// than the slots it had: a worker draining a queue pays one round trip
    /// per batch instead of two.
    pub async fn finish_many_and_claim(
        &self,
        queue: &QueueKeys,
        tasks: &[(String, i64)],
        refill: Option<Refill<'_>>,
    ) -> Result<(Vec<bool>, Vec<Claimed>), BrokerError> {
        let mut inv = scripts::FINISH_MANY.prepare_invoke();
        inv.key(queue.active())
            .key(queue.lease())
            .key(queue.processed_on(&keys::utc_date(now_secs())))
            .key(queue.processed_total())
            .key(queue.pending())
            .key(queue.paused())
            .arg(stats_expiry())
            .arg(&*self.owner)
            .arg(tasks.len());
        let (expiry, hint_size, ids) = match &refill {
            Some(r) => {
                let take = r.want.min(r.hint.len());
                (r.lease_expiry, (2 * r.want).clamp(16, 64), &r.hint[..take])
            }
            None => (0, 0, &[][..]),
        };
        inv.arg(expiry).arg(hint_size);
        for (id, lease_expiry) in tasks {
            inv.key(queue.task(id)).arg(id).arg(lease_expiry);
        }
        for id in ids {
            inv.key(queue.task(id)).arg(id);
        }
        let mut conn = self.conn.clone();
        let (done, flat, next): (Vec<i64>, Vec<Vec<u8>>, Vec<String>) =
            inv.invoke_async(&mut conn).await?;
        if let Some(r) = refill {
            r.hint.clear();
            // The hint lists the tail newest first; keep it oldest first.
            r.hint.extend(next.into_iter().rev());
        }
        Ok((
            done.into_iter().map(|d| d == 1).collect(),
            claimed_tasks(flat)?,
        ))
    }

    /// A task failed: move it to retry (at `score`) or to the archive,
    /// storing the updated `msg`. With `recover_at`, act only if its lease
    /// expired by then (recovering an abandoned task). False when the lease
    /// is gone (or still alive).
    pub async fn fail(
        &self,
        msg: &TaskMessage,
        archive: bool,
        score: i64,
        recover_at: Option<i64>,
    ) -> Result<bool, BrokerError> {
        let queue = QueueKeys::new(&msg.queue);
        let failed = Failed {
            archive,
            score,
            recover_at,
            invalid: None,
            counted: true,
        };
        self.move_failed(&queue, &msg.id, &msg.encode_to_vec(), failed)
            .await
    }

    /// Puts a task this worker holds back in line for `at` (Unix seconds)
    /// without counting a failure or a retry: the host could not run it
    /// (short of descriptors or memory). False when the lease was lost.
    pub async fn requeue_later(&self, msg: &TaskMessage, at: i64) -> Result<bool, BrokerError> {
        let failed = Failed {
            archive: false,
            score: at,
            recover_at: None,
            invalid: None,
            counted: false,
        };
        let queue = QueueKeys::new(&msg.queue);
        self.move_failed(&queue, &msg.id, &msg.encode_to_vec(), failed)
            .await
    }

    /// Archives a task that cannot be run as it is (its `msg` does not
    /// decode, or names another queue or id), keeping its bytes as they are
    /// and `reason` in the hash's `invalid` field. `recover_at` as for
    /// [`Broker::fail`]: given when recovering an abandoned task (whoever
    /// held its lease), `None` for this worker's own.
    pub async fn archive_invalid(
        &self,
        queue: &QueueKeys,
        id: &str,
        raw: &[u8],
        reason: &str,
        recover_at: Option<i64>,
    ) -> Result<bool, BrokerError> {
        let failed = Failed {
            archive: true,
            score: now_secs(),
            recover_at,
            invalid: Some(reason),
            counted: true,
        };
        self.move_failed(queue, id, raw, failed).await
    }

    /// Clears an expired lease whose task hash is gone (deleted by hand) or
    /// has no `msg`: the first leaves the lease set and the active list,
    /// the second is archived as it is. `None` when neither applies (the
    /// lease is gone or alive, or the hash has a `msg`).
    pub async fn forget_lease(
        &self,
        queue: &QueueKeys,
        id: &str,
        now: i64,
    ) -> Result<Option<LeaseCleared>, BrokerError> {
        let mut inv = scripts::FORGET.prepare_invoke();
        inv.key(queue.active())
            .key(queue.lease())
            .key(queue.task(id))
            .key(queue.archived())
            .arg(id)
            .arg(now);
        let mut conn = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(match done {
            1 => Some(LeaseCleared::TaskGone),
            2 => Some(LeaseCleared::ArchivedWithoutMsg),
            _ => None,
        })
    }

    async fn move_failed(
        &self,
        q: &QueueKeys,
        id: &str,
        msg: &[u8],
        Failed {
            archive,
            score,
            recover_at,
            invalid,
            counted,
        }: Failed<'_>,
    ) -> Result<bool, BrokerError> {
        let date = keys::utc_date(now_secs());
        let mut inv = scripts::FAIL.prepare_invoke();
        inv.key(q.active())
            .key(q.lease())
            .key(q.task(id))
            .key(if archive { q.archived() } else { q.retry() })
            .key(q.processed_on(&date))
            .key(q.failed_on(&date))
            .key(q.processed_total())
            .key(q.failed_total())
            .arg(id)
            .arg(msg)
            .arg(score)
            .arg(if archive { "archived" } else { "retry" })
            .arg(stats_expiry())
            .arg(recover_at.map(|t| t.to_string()).unwrap_or_default())
            // Recovering an abandoned task acts on whoever's lease expired.
            .arg(if recover_at.is_some() {
                ""
            } else {
                &*self.owner
            })
            .arg(invalid.unwrap_or(""))
            .arg(if counted { "1" } else { "0" });
        let mut conn = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(done == 1)
    }

    /// Deletes a task its handler revoked, and releases its unique lock
    /// (`unique_key`, empty when the task is not unique) if it holds it.
    pub async fn drop_task(
        &self,
        queue: &QueueKeys,
        id: &str,
        unique_key: &str,
    ) -> Result<bool, BrokerError> {
        let mut inv = scripts::DROP.prepare_invoke();
        inv.key(queue.active())
            .key(queue.lease())
            .key(queue.task(id))
            .key(queue.processed_on(&keys::utc_date(now_secs())))
            .key(queue.processed_total());
        if !unique_key.is_empty() {
            inv.key(unique_key);
        }
        inv.arg(id).arg(stats_expiry()).arg(&*self.owner);
        let mut conn = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(done == 1)
    }

    /// Puts an unfinished task back at the head of the line.
    pub async fn requeue(&self, queue: &QueueKeys, id: &str) -> Result<bool, BrokerError> {
        let mut inv = scripts::REQUEUE.prepare_invoke();
        inv.key(queue.active())
            .key(queue.lease())
            .key(queue.pending())
            .key(queue.task(id))
            .key(queue.wake())
            .arg(id)
            .arg(now_nanos())
            .arg(&*self.owner);
        let mut conn = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(done == 1)
    }

    /// Extends the leases of `ids` to `expiry`. Per id: false when the
    /// lease is no longer this broker's owner's (it expired and was
    /// recovered, or another worker holds it); such leases are left alone.
    pub async fn extend_leases(
        &self,
        queue: &QueueKeys,
        ids: &[String],
        expiry: i64,
    ) -> Result<Vec<bool>, BrokerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = scripts::EXTEND.prepare_invoke();
        inv.key(queue.lease()).arg(expiry).arg(&*self.owner);
        for id in ids {
            inv.key(queue.task(id)).arg(id);
        }
        let mut conn = self.conn.clone();
        let held: Vec<i64> = inv.invoke_async(&mut conn).await?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Moves due scheduled and retry tasks of `queue` to pending, in
    /// batches of [`SCAN_BATCH`] until none is due (or [`SCAN_LIMIT`] moved);
    /// returns how many moved.
    pub async fn forward(&self, queue: &QueueKeys) -> Result<u64, BrokerError> {
        let now = now_secs();
        let mut moved = 0;
        for set in [queue.scheduled(), queue.retry()] {
            let mut conn = self.conn.clone();
            loop {
                let ids: Vec<String> = conn
                    .zrangebyscore_limit(&set, "-inf", now, 0, SCAN_BATCH as isize)
                    .await?;
                if ids.is_empty() {
                    break;
                }
                let mut inv = scripts::FORWARD.prepare_invoke();
                inv.key(&set)
                    .key(queue.pending())
                    .key(queue.wake())
                    .arg(now)
                    .arg(now_nanos());
                for id in &ids {
                    inv.key(queue.task(id)).arg(id);
                }
                let n: u64 = inv.invoke_async(&mut conn).await?;
                moved += n;
                if ids.len() < SCAN_BATCH || n == 0 || moved >= SCAN_LIMIT {
                    break;
                }
            }
        }
        Ok(moved)
    }

    /// Deletes completed tasks of `queue` past their retention, in batches
    /// until none is left (or [`SCAN_LIMIT`] deleted).
    pub async fn expire_completed(&self, queue: &QueueKeys) -> Result<u64, BrokerError> {
        let now = now_secs();
        let mut conn = self.conn.clone();
        let mut deleted = 0;
        loop {
            let ids: Vec<String> = conn
                .zrangebyscore_limit(queue.completed(), "-inf", now, 0, SCAN_BATCH as isize)
                .await?;
            if ids.is_empty() {
                return Ok(deleted);
            }
            let mut inv = scripts::EXPIRE.prepare_invoke();
            inv.key(queue.completed()).arg(now);
            for id in &ids {
                inv.key(queue.task(id)).arg(id);
            }
            let n: u64 = inv.invoke_async(&mut conn).await?;
            deleted += n;
            if ids.len() < SCAN_BATCH || n == 0 || deleted >= SCAN_LIMIT {
                return Ok(deleted);
            }
        }
    }

    /// Trims the archive of `queue` to `limits`, as Asynq does: tasks
    /// archived longer ago than `limits.max_age` and the oldest past
    /// `limits.max` are deleted with their hashes, in batches until none is
    /// left (or [`SCAN_LIMIT`] deleted); returns how many.
    pub async fn trim_archive(
        &self,
        queue: &QueueKeys,
        limits: &ArchiveLimits,
    ) -> Result<u64, BrokerError> {
        let cutoff = now_secs() - limits.max_age.as_secs() as i64;
        let mut conn = self.conn.clone();
        let mut deleted = 0;
        loop {
            let size: u64 = conn.zcard(queue.archived()).await?;
            let over = size.saturating_sub(limits.max).min(SCAN_BATCH as u64) as isize;
            // The oldest first: those past the count, or else those past
            // the age (the oldest is the first to pass it).
            let ids: Vec<String> = if over > 0 {
                conn.zrange(queue.archived(), 0, over - 1).await?
            } else {
                conn.zrangebyscore_limit(
                    queue.archived(),
                    "-inf",
                    format!("({cutoff}"),
                    0,
                    SCAN_BATCH as isize,
                )
                .await?
            };
            if ids.is_empty() {
                return Ok(deleted);
            }
            let mut inv = scripts::TRIM_ARCHIVE.prepare_invoke();
            inv.key(queue.archived()).arg(cutoff).arg(limits.max);
            for id in &ids {
                inv.key(queue.task(id)).arg(id);
            }
            let n: u64 = inv.invoke_async(&mut conn).await?;
            deleted += n;
            if n == 0 || deleted >= SCAN_LIMIT {
                return Ok(deleted);
            }
        }
    }

    /// Ids of `queue` whose lease expired before `now`.
    pub async fn expired_leases(
        &self,
        queue: &QueueKeys,
        now: i64,
    ) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .zrangebyscore_limit(queue.lease(), "-inf", format!("({now}"), 0, 100)
            .await?)
    }

    /// The `msg` of a task, if the task exists.
    pub async fn task_msg(
        &self,
        queue: &QueueKeys,
        id: &str,
    ) -> Result<Option<Vec<u8>>, BrokerError> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(queue.task(id), "msg").await?)
    }

    /// Pauses a queue: workers stop claiming from it.
    pub async fn pause(&self, queue: &str) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(QueueKeys::new(queue).paused(), now_secs()).await?;
        Ok(())
    }

    /// Resumes a paused queue.
    pub async fn resume(&self, queue: &str) -> Result<(), BrokerError> {
        let q = QueueKeys::new(queue);
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(q.paused()).await?;
        let _: i64 = conn.lpush(q.wake(), "1").await?;
        Ok(())
    }

    /// Every queue in `asynq:queues`, sorted.
    pub async fn queues(&self) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn.smembers(keys::ALL_QUEUES).await?;
        names.sort();
        Ok(names)
    }

    /// Counts of `queue` by state (one pipelined round trip to its node).
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        let q = QueueKeys::new(queue);
        let today = keys::utc_date(now_secs());
        let mut conn = self.conn.clone();
        let (paused, pending, active, scheduled, retry, archived, completed): (
            bool,
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
        ) = redis::pipe()
            .exists(q.paused())
            .llen(q.pending())
            .llen(q.active())
            .zcard(q.scheduled())
            .zcard(q.retry())
            .zcard(q.archived())
            .zcard(q.completed())
            .query_async(&mut conn)
            .await?;
        let (processed_today, failed_today, processed_total, failed_total): (
            Option<u64>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
        ) = redis::pipe()
            .get(q.processed_on(&today))
            .get(q.failed_on(&today))
            .get(q.processed_total())
            .get(q.failed_total())
            .query_async(&mut conn)
            .await?;
        Ok(QueueStats {
            queue: queue.to_owned(),
            paused,
            pending,
            active,
            scheduled,
            retry,
            archived,
            completed,
            processed_today: processed_today.unwrap_or(0),
            failed_today: failed_today.unwrap_or(0),
            processed_total: processed_total.unwrap_or(0),
            failed_total: failed_total.unwrap_or(0),
        })
    }

    /// Where `queue` lives in the cluster: its slot and the nodes (master
    /// first, then replicas) that hold it. `None` on a single Redis.
    pub async fn locate(&self, queue: &str) -> Result<Option<QueueLocation>, BrokerError> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let key = QueueKeys::new(queue).pending();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await?;
        Ok(Some(QueueLocation {
            queue: queue.to_owned(),
            slot,
            nodes: topology::nodes_for_slot(&nodes, slot),
        }))
    }
}
