//! Inspection: a queue's tasks by state, one task in full, a queue's daily
//! history and its latency (operator actions are in `moves`).

use std::collections::HashMap;

use prost::Message as _;
use redis::AsyncCommands as _;
use serde::Serialize;

use super::{Broker, BrokerError, QueueKeys, keys, now_nanos, now_secs};
use crate::proto::TaskMessage;
use crate::task::TaskState;

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
    /// SHA-256 of the module version its last run ran on (completed,
    /// retried, archived or requeued by a worker).
    pub module: Option<String>,
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
pub(super) fn state_key(queue: &QueueKeys, state: TaskState) -> (String, bool) {
    match state {
        TaskState::Pending => (queue.pending(), true),
        TaskState::Active => (queue.active(), true),
        TaskState::Scheduled => (queue.scheduled(), false),
        TaskState::Retry => (queue.retry(), false),
        TaskState::Archived => (queue.archived(), false),
        TaskState::Completed => (queue.completed(), false),
        // Spread over the groups' sets: see `task_ids`.
        TaskState::Aggregating => (queue.groups(), false),
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
            // Every group's tasks, group by group, oldest first in each.
            (TaskState::Aggregating, _) => {
                let mut ids = Vec::new();
                for (group, _) in self.groups(queue).await? {
                    let mut in_group: Vec<String> = conn.zrange(q.group(&group), 0, -1).await?;
                    ids.append(&mut in_group);
                }
                ids.into_iter()
                    .skip(start as usize)
                    .take(size.max(1))
                    .collect()
            }
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
            Option<String>,
        );
        let (msg, state, result, owner, module): Fields = redis::cmd("HMGET")
            .arg(q.task(id))
            .arg(&["msg", "state", "result", "lease_owner", "module"])
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
            module,
        }))
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
