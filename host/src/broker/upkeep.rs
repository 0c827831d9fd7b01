//! Upkeep of a queue: lease renewal (`extend.lua`), due scheduled and retry
//! tasks forwarded to pending (`forward.lua`), completed tasks past their
//! retention deleted (`expire.lua`), the archive trimmed
//! (`trim_archive.lua`), and the reads recovery starts from.

use std::time::Duration;

use redis::AsyncCommands as _;

use super::{Broker, BrokerError, QueueKeys, now_nanos, now_secs, scripts};

/// Ids one forward or expire script call takes.
pub const SCAN_BATCH: usize = 200;

/// Most tasks one forward or expire pass moves, so one queue's backlog
/// does not hold up the others' upkeep.
pub const SCAN_LIMIT: u64 = 20_000;

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

impl Broker {
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
}
