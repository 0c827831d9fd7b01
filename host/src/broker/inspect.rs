//! Inspection and operator actions: a queue's tasks by state, one task in
//! full, tasks moved by hand (delete, archive, run now) one by one or a whole
//! state at once, running tasks cancelled, and a queue's daily history.
//!
//! Moves go through `transition.lua`, which re-checks each task's state, so
//! a task that moved on meanwhile (a worker claimed it, say) is left alone.

use std::collections::HashMap;

use prost::Message as _;
use redis::AsyncCommands as _;
use serde::Serialize;

use super::{Broker, BrokerError, QueueKeys, keys, now_nanos, now_secs, scripts};
use crate::proto::TaskMessage;
use crate::task::TaskState;

/// The pub/sub channel on which cancellations go out (Asynq's).
pub const CANCEL_CHANNEL: &str = "asynq:cancel";

/// Most ids one script call moves.
const MOVE_BATCH: usize = 500;

/// A task as stored, for listings and `wasq task inspect`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredTask {
    /// Task id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// Task type ("" when `msg` is not a valid TaskMessage).
    pub task_type: String,
    /// Where it is.
    pub state: String,
    /// The payload, as text when it is UTF-8 (lossy otherwise).
    pub payload: String,
    /// Retries allowed.
    pub max_retry: i32,
    /// Retries so far.
    pub retried: i32,
    /// The last error.
    pub error: Option<String>,
    /// When it last failed, Unix seconds.
    pub last_failed_at: Option<i64>,
    /// Timeout per attempt, seconds (0: none).
    pub timeout_secs: i64,
    /// Deadline, Unix seconds (0: none).
    pub deadline: i64,
    /// The score in its state's set: process-at (scheduled, retry),
    /// archived-at, delete-at (completed) or lease expiry (active).
    pub score: Option<i64>,
    /// Completed at, Unix seconds.
    pub completed_at: Option<i64>,
    /// Retention after success, seconds.
    pub retention_secs: i64,
    /// The handler's result (completed tasks), as text.
    pub result: Option<String>,
    /// The worker holding its lease (active tasks).
    pub lease_owner: Option<String>,
    /// Headers.
    pub headers: HashMap<String, String>,
    /// The `msg` field is missing or not a TaskMessage.
    pub invalid_msg: bool,
}

/// What an operator does to tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Delete them (and their unique locks).
    Delete,
    /// Archive them.
    Archive,
    /// Make them pending now.
    Run,
}

impl Move {
    fn verb(self) -> &'static str {
        match self {
            Move::Delete => "delete",
            Move::Archive => "archive",
            Move::Run => "run",
        }
    }
}

/// Processed and failed counts of one day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayStats {
    /// The day, `yyyy-mm-dd` (UTC).
    pub date: String,
    /// Tasks processed.
    pub processed: u64,
    /// Of those, failed.
    pub failed: u64,
}

/// A state's key in `queue` and whether it is a list.
fn state_key(queue: &QueueKeys, state: TaskState) -> (String, bool) {
    match state {
        TaskState::Pending => (queue.pending(), true),
        TaskState::Active => (queue.active(), true),
        TaskState::Scheduled => (queue.scheduled(), false),
        TaskState::Retry => (queue.retry(), false),
        TaskState::Archived => (queue.archived(), false),
        TaskState::Completed => (queue.completed(), false),
    }
}

impl Broker {
    /// Ids of `queue` in `state`, page `page` (from 0) of `size`: pending
    /// ones in the order they will run, sets by score (soonest or oldest
    /// first).
    pub async fn task_ids(
        &self,
        queue: &str,
        state: TaskState,
        page: usize,
        size: usize,
    ) -> Result<Vec<String>, BrokerError> {
        let q = QueueKeys::new(queue);
        let (key, list) = state_key(&q, state);
        let start = (page * size) as isize;
        let stop = start + size.max(1) as isize - 1;
        let mut conn = self.conn.clone();
        Ok(match (state, list) {
            // Pending tasks are taken from the tail: list them tail first.
            (TaskState::Pending, _) => {
                let mut ids: Vec<String> = conn.lrange(&key, -(stop + 1), -(start + 1)).await?;
                ids.reverse();
                ids
            }
            (_, true) => conn.lrange(&key, start, stop).await?,
            (_, false) => conn.zrange(&key, start, stop).await?,
        })
    }

    /// Tasks of `queue` in `state`, page `page` of `size`, in full.
    pub async fn list_tasks(
        &self,
        queue: &str,
        state: TaskState,
        page: usize,
        size: usize,
    ) -> Result<Vec<StoredTask>, BrokerError> {
        let ids = self.task_ids(queue, state, page, size).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(task) = self.task(queue, &id).await? {
                out.push(task);
            }
        }
        Ok(out)
    }

    /// One task of `queue`, in full; `None` when it does not exist.
    pub async fn task(&self, queue: &str, id: &str) -> Result<Option<StoredTask>, BrokerError> {
        let q = QueueKeys::new(queue);
        let mut conn = self.conn.clone();
        type Fields = (
            Option<Vec<u8>>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
        );
        let (msg, state, result, owner): Fields = redis::cmd("HMGET")
            .arg(q.task(id))
            .arg(&["msg", "state", "result", "lease_owner"])
            .query_async(&mut conn)
            .await?;
        let Some(state) = state else {
            return Ok(None);
        };
        let score_key = match state.as_str() {
            "active" => Some(q.lease()),
            "scheduled" => Some(q.scheduled()),
            "retry" => Some(q.retry()),
            "archived" => Some(q.archived()),
            "completed" => Some(q.completed()),
            _ => None,
        };
        let score: Option<f64> = match score_key {
            Some(key) => conn.zscore(key, id).await?,
            None => None,
        };
        let decoded = msg
            .as_deref()
            .and_then(|m| TaskMessage::decode(m).ok())
            .filter(|m| !m.r#type.is_empty());
        let invalid_msg = decoded.is_none();
        let m = decoded.unwrap_or_default();
        Ok(Some(StoredTask {
            id: id.to_owned(),
            queue: queue.to_owned(),
            task_type: m.r#type,
            state,
            payload: String::from_utf8_lossy(&m.payload).into_owned(),
            max_retry: m.retry,
            retried: m.retried,
            error: (!m.error_msg.is_empty()).then_some(m.error_msg),
            last_failed_at: (m.last_failed_at > 0).then_some(m.last_failed_at),
            timeout_secs: m.timeout,
            deadline: m.deadline,
            score: score.map(|s| s as i64),
            completed_at: (m.completed_at > 0).then_some(m.completed_at),
            retention_secs: m.retention,
            result: result.map(|r| String::from_utf8_lossy(&r).into_owned()),
            lease_owner: owner,
            headers: m.headers,
            invalid_msg,
        }))
    }

    /// Moves the tasks `ids` of `queue` that are in `from`; returns how
    /// many moved. Active tasks cannot be moved (cancel them instead);
    /// a move to where a task already is moves nothing.
    pub async fn move_tasks(
        &self,
        queue: &str,
        from: TaskState,
        action: Move,
        ids: &[String],
    ) -> Result<u64, BrokerError> {
        if from == TaskState::Active {
            return Err(BrokerError::Refused(
                "active tasks cannot be deleted, archived or run: cancel them first (wasq task cancel)"
                    .into(),
            ));
        }
        if from == TaskState::Completed && action != Move::Delete {
            return Err(BrokerError::Refused(
                "completed tasks can only be deleted".into(),
            ));
        }
        if (from == TaskState::Pending && action == Move::Run)
            || (from == TaskState::Archived && action == Move::Archive)
        {
            return Ok(0);
        }
        let q = QueueKeys::new(queue);
        let (source, list) = state_key(&q, from);
        let destination = match action {
            Move::Archive => q.archived(),
            Move::Run | Move::Delete => q.pending(),
        };
        let mut moved = 0;
        for chunk in ids.chunks(MOVE_BATCH) {
            // Unique locks are named in the task hash: read them first, so
            // the script can declare them.
            let mut locks: Vec<Option<String>> = Vec::with_capacity(chunk.len());
            if action == Move::Delete {
                let mut pipe = redis::pipe();
                for id in chunk {
                    pipe.hget(q.task(id), "unique_key");
                }
                locks = pipe.query_async(&mut self.conn.clone()).await?;
            } else {
                locks.resize(chunk.len(), None);
            }
            let mut inv = scripts::TRANSITION.prepare_invoke();
            inv.key(&source)
                .key(&destination)
                .key(q.wake())
                .arg(if list { "list" } else { "zset" })
                .arg(action.verb())
                .arg(from.to_string())
                .arg(now_secs())
                .arg(now_nanos());
            for (id, lock) in chunk.iter().zip(&locks) {
                inv.key(q.task(id)).arg(id);
                match lock.as_deref().filter(|l| !l.is_empty()) {
                    Some(lock) => {
                        inv.key(lock).arg("1");
                    }
                    None => {
                        inv.arg("0");
                    }
                }
            }
            let n: u64 = inv.invoke_async(&mut self.conn.clone()).await?;
            moved += n;
        }
        Ok(moved)
    }

    /// Moves every task of `queue` in `from`; returns how many moved.
    pub async fn move_all(
        &self,
        queue: &str,
        from: TaskState,
        action: Move,
    ) -> Result<u64, BrokerError> {
        let mut moved = 0;
        loop {
            let ids = self.task_ids(queue, from, 0, MOVE_BATCH).await?;
            if ids.is_empty() {
                return Ok(moved);
            }
            let n = self.move_tasks(queue, from, action, &ids).await?;
            if n == 0 {
                // What is left moved on by itself meanwhile, or cannot move.
                return Ok(moved);
            }
            moved += n;
        }
    }

    /// Asks every worker to stop the running tasks `ids` (published on
    /// [`CANCEL_CHANNEL`]); returns how many workers heard it.
    pub async fn cancel(&self, ids: &[String]) -> Result<u64, BrokerError> {
        let mut heard = 0;
        for id in ids {
            let n: u64 = self.conn.clone().publish(CANCEL_CHANNEL, id).await?;
            heard += n;
        }
        Ok(heard)
    }

    /// Processed and failed counts of `queue` for the last `days` days
    /// (UTC), today first.
    pub async fn history(&self, queue: &str, days: u32) -> Result<Vec<DayStats>, BrokerError> {
        let q = QueueKeys::new(queue);
        let now = now_secs();
        let mut out = Vec::new();
        for back in 0..days as i64 {
            let date = keys::utc_date(now - back * 86_400);
            let (processed, failed): (Option<u64>, Option<u64>) = redis::pipe()
                .get(q.processed_on(&date))
                .get(q.failed_on(&date))
                .query_async(&mut self.conn.clone())
                .await?;
            out.push(DayStats {
                date,
                processed: processed.unwrap_or(0),
                failed: failed.unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Seconds the oldest pending task of `queue` has waited (0 when none).
    pub async fn latency(&self, queue: &str) -> Result<f64, BrokerError> {
        let q = QueueKeys::new(queue);
        let mut conn = self.conn.clone();
        let oldest: Vec<String> = conn.lrange(q.pending(), -1, -1).await?;
        let Some(id) = oldest.first() else {
            return Ok(0.0);
        };
        let since: Option<i64> = conn.hget(q.task(id), "pending_since").await?;
        Ok(since.map_or(0.0, |ns| ((now_nanos() - ns) as f64 / 1e9).max(0.0)))
    }
}

/// The cluster as one of its nodes sees it (`CLUSTER INFO`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `ok` or `fail`.
    pub state: String,
    /// Nodes known, masters and replicas.
    pub known_nodes: u64,
    /// Masters serving slots.
    pub size: u64,
    /// Slots served and healthy.
    pub slots_ok: u64,
}

/// A registered worker process (Asynq's `ServerInfo`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerEntry {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i32,
    /// Server id.
    pub server_id: String,
    /// "active", or "stopped" while shutting down.
    pub status: String,
    /// Tasks running now.
    pub active_workers: i32,
    /// Concurrency.
    pub concurrency: i32,
    /// Queues and their priorities.
    pub queues: std::collections::BTreeMap<String, i32>,
    /// Strict priority?
    pub strict_priority: bool,
    /// Started at, Unix seconds.
    pub started_at: i64,
}

impl Broker {
    /// The cluster's state; `None` on a single Redis.
    pub async fn cluster_info(&self) -> Result<Option<ClusterInfo>, BrokerError> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let text: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut self.conn.clone())
            .await?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let number = |name: &str| field(name).parse().unwrap_or(0);
        Ok(Some(ClusterInfo {
            state: field("cluster_state"),
            known_nodes: number("cluster_known_nodes"),
            size: number("cluster_size"),
            slots_ok: number("cluster_slots_ok"),
        }))
    }

    /// Registered servers whose registration has not expired, by host and pid.
    pub async fn servers(&self) -> Result<Vec<ServerEntry>, BrokerError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn
            .zrangebyscore(keys::ALL_SERVERS, now_secs(), "+inf")
            .await?;
        let mut out = Vec::new();
        for key in keys {
            let raw: Option<Vec<u8>> = conn.get(&key).await?;
            let Some(info) = raw.and_then(|r| crate::proto::ServerInfo::decode(r.as_slice()).ok())
            else {
                continue;
            };
            out.push(ServerEntry {
                host: info.host,
                pid: info.pid,
                server_id: info.server_id,
                status: info.status,
                active_workers: info.active_worker_count,
                concurrency: info.concurrency,
                queues: info.queues.into_iter().collect(),
                strict_priority: info.strict_priority,
                started_at: info.start_time.map_or(0, |t| t.seconds),
            });
        }
        out.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
        Ok(out)
    }

    /// Removes a queue: all its tasks, counters and locks, and its name
    /// from `asynq:queues`. Without `force`, refuses a queue that still has
    /// tasks; never removes a queue with active tasks. Returns how many
    /// tasks were deleted.
    pub async fn remove_queue(&self, queue: &str, force: bool) -> Result<u64, BrokerError> {
        let q = QueueKeys::new(queue);
        let stats = self.stats(queue).await?;
        if stats.active > 0 {
            return Err(BrokerError::Refused(format!(
                "queue {queue} has {} active task(s); cancel them or wait",
                stats.active
            )));
        }
        let total =
            stats.pending + stats.scheduled + stats.retry + stats.archived + stats.completed;
        if total > 0 && !force {
            return Err(BrokerError::Refused(format!(
                "queue {queue} still has {total} task(s); use --force to delete them too"
            )));
        }
        let mut deleted = 0;
        for state in [
            TaskState::Pending,
            TaskState::Scheduled,
            TaskState::Retry,
            TaskState::Archived,
            TaskState::Completed,
        ] {
            deleted += self.move_all(queue, state, Move::Delete).await?;
        }
        // The lists, sets and counters go in one script that checks the
        // queue is still empty: a task enqueued or claimed since the
        // deletions above makes it refuse rather than orphan the task.
        let mut inv = scripts::REMOVE_QUEUE.prepare_invoke();
        for key in [
            q.active(),
            q.lease(),
            q.pending(),
            q.scheduled(),
            q.retry(),
            q.archived(),
            q.completed(),
            q.paused(),
            q.processed_total(),
            q.failed_total(),
            q.wake(),
        ] {
            inv.key(key);
        }
        let now = now_secs();
        for back in 0..90 {
            let date = keys::utc_date(now - back * 86_400);
            inv.key(q.processed_on(&date)).key(q.failed_on(&date));
        }
        let removed: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        if removed != 1 {
            let what = if removed == -1 {
                "a task started"
            } else {
                "tasks arrived"
            };
            return Err(BrokerError::Refused(format!(
                "queue {queue}: {what} while it was being removed; {deleted} task(s) deleted, run again"
            )));
        }
        let _: i64 = self.conn.clone().srem(keys::ALL_QUEUES, queue).await?;
        self.known_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
        Ok(deleted)
    }
}
