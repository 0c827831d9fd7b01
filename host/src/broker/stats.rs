//! A queue's counts by state, pause and resume, the list of queues, and
//! where a queue lives in the cluster.

use redis::AsyncCommands as _;

use super::{Broker, BrokerError, QueueKeys, QueueLocation, keys, now_secs, topology};

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

impl QueueStats {
    /// The counts by state, in the order listings print them: pending,
    /// active, scheduled, retry, archived, completed.
    pub fn by_state(&self) -> [u64; 6] {
        [
            self.pending,
            self.active,
            self.scheduled,
            self.retry,
            self.archived,
            self.completed,
        ]
    }
}

impl Broker {
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
