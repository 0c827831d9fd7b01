//! Periodic tasks on Redis: a tick enqueued at most once (`tick.lua`, in the
//! queue's slot, keeping the entry's latest tick beside the queue), and the
//! keys Asynq's tools read schedulers from: each scheduler's entries in
//! `asynq:schedulers:{<id>}` (listed in `asynq:schedulers` with an expiry)
//! and each entry's enqueues in `asynq:scheduler_history:<entry id>`.
//!
//! The history is written after the tick's enqueue, in another slot: a
//! scheduler that dies in between leaves the tick enqueued and the event
//! unrecorded, never the reverse. Events are keyed by the tick's time, so
//! recording one twice leaves one.

use std::time::Duration;

use prost::Message as _;
use redis::AsyncCommands as _;

use super::{Broker, BrokerError, QueueKeys, keys, now_nanos, scripts};
use crate::proto::{SchedulerEnqueueEvent, SchedulerEntry, TaskMessage, Timestamp};

/// Events kept per entry, as Asynq keeps.
pub const HISTORY_MAX: isize = 1000;

/// How a tick's enqueue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticked {
    /// This call enqueued it.
    Enqueued,
    /// It (or a later tick) was enqueued already, by this or another
    /// scheduler.
    AlreadyDone,
    /// A tick missed during downtime, left out by the catch-up policy.
    Skipped,
}

/// One event of an entry's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickEvent {
    /// The task enqueued.
    pub task_id: String,
    /// When, in Unix seconds.
    pub enqueued_at: i64,
}

impl Broker {
    /// Enqueues `msg`, the task of tick `tick` (Unix seconds) of periodic
    /// entry `entry`, unless that tick or a later one was enqueued into the
    /// queue before. A tick that is not `due` (it passed while no scheduler
    /// ran) is enqueued only when `catch_up_last` and the entry has run
    /// before.
    pub async fn enqueue_tick(
        &self,
        msg: &TaskMessage,
        entry: &str,
        tick: i64,
        due: bool,
        catch_up_last: bool,
    ) -> Result<Ticked, BrokerError> {
        let q = QueueKeys::new(&msg.queue);
        self.register_queue(&msg.queue).await?;
        let mut inv = scripts::TICK.prepare_invoke();
        inv.key(q.pending())
            .key(q.wake())
            .key(q.task(&msg.id))
            .key(q.last_tick(entry))
            .arg(msg.encode_to_vec())
            .arg(&msg.id)
            .arg(tick)
            .arg(if due { "1" } else { "0" })
            .arg(if catch_up_last { "last" } else { "skip" })
            .arg(now_nanos());
        let mut conn = self.conn.clone();
        let code: i64 = inv.invoke_async(&mut conn).await?;
        Ok(match code {
            1 => Ticked::Enqueued,
            0 => Ticked::AlreadyDone,
            _ => Ticked::Skipped,
        })
    }

    /// The latest tick of `entry` enqueued into `queue`, Unix seconds.
    pub async fn last_tick(&self, queue: &str, entry: &str) -> Result<Option<i64>, BrokerError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(QueueKeys::new(queue).last_tick(entry)).await?)
    }

    /// Records that tick `tick` of entry `entry_id` enqueued `task_id`
    /// (keeping the newest [`HISTORY_MAX`] events).
    pub async fn record_tick(
        &self,
        entry_id: &str,
        task_id: &str,
        tick: i64,
    ) -> Result<(), BrokerError> {
        let event = SchedulerEnqueueEvent {
            task_id: task_id.to_owned(),
            enqueue_time: Some(Timestamp {
                seconds: tick,
                nanos: 0,
            }),
        };
        let key = keys::scheduler_history(entry_id);
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .zadd(&key, event.encode_to_vec(), tick)
            .zremrangebyrank(&key, 0, -(HISTORY_MAX + 1))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The newest `limit` events of entry `entry_id`, newest first.
    pub async fn tick_history(
        &self,
        entry_id: &str,
        limit: isize,
    ) -> Result<Vec<TickEvent>, BrokerError> {
        let mut conn = self.conn.clone();
        let raw: Vec<(Vec<u8>, f64)> = conn
            .zrevrange_withscores(keys::scheduler_history(entry_id), 0, limit.max(1) - 1)
            .await?;
        raw.into_iter()
            .map(|(bytes, score)| {
                let event = SchedulerEnqueueEvent::decode(bytes.as_slice()).map_err(|e| {
                    BrokerError::Protocol(format!("a scheduler history event: {e}"))
                })?;
                Ok(TickEvent {
                    task_id: event.task_id,
                    enqueued_at: event.enqueue_time.map_or(score as i64, |t| t.seconds),
                })
            })
            .collect()
    }

    /// Registers scheduler `scheduler_id`'s entries for `ttl`, as Asynq's
    /// scheduler does on each heartbeat.
    pub async fn register_scheduler(
        &self,
        scheduler_id: &str,
        entries: &[SchedulerEntry],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let key = keys::scheduler_entries(scheduler_id);
        let expires = super::now_secs() + ttl.as_secs() as i64;
        let mut conn = self.conn.clone();
        let _: i64 = conn.zadd(keys::ALL_SCHEDULERS, &key, expires).await?;
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key);
        for entry in entries {
            pipe.rpush(&key, entry.encode_to_vec());
        }
        pipe.expire(&key, ttl.as_secs() as i64);
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Removes scheduler `scheduler_id`'s registration.
    pub async fn unregister_scheduler(&self, scheduler_id: &str) -> Result<(), BrokerError> {
        let key = keys::scheduler_entries(scheduler_id);
        let mut conn = self.conn.clone();
        let _: i64 = conn.zrem(keys::ALL_SCHEDULERS, &key).await?;
        let _: i64 = conn.del(&key).await?;
        Ok(())
    }

    /// The entries of every live scheduler, by scheduler id.
    pub async fn schedulers(&self) -> Result<Vec<(String, Vec<SchedulerEntry>)>, BrokerError> {
        let mut conn = self.conn.clone();
        let now = super::now_secs();
        let live: Vec<String> = conn
            .zrangebyscore(keys::ALL_SCHEDULERS, now, "+inf")
            .await?;
        let mut out = Vec::new();
        for key in live {
            let raw: Vec<Vec<u8>> = conn.lrange(&key, 0, -1).await?;
            let entries = raw
                .iter()
                .filter_map(|bytes| SchedulerEntry::decode(bytes.as_slice()).ok())
                .collect();
            let id = key
                .strip_prefix("asynq:schedulers:{")
                .and_then(|rest| rest.strip_suffix('}'))
                .unwrap_or(&key)
                .to_owned();
            out.push((id, entries));
        }
        Ok(out)
    }
}
