//! Enqueueing: one task or a batch into a queue (`enqueue.lua`, shared by
//! concurrent callers through the queue's lane, see `lanes`), a guest's
//! follow-up with its sent mark, and the `WAIT` of durable enqueues.

use std::time::Duration;

use prost::Message as _;
use redis::AsyncCommands as _;

use super::{Broker, BrokerError, Conn, QueueKeys, lanes, now_nanos, scripts};
use crate::proto::TaskMessage;

/// How long the mark that a follow-up task was sent outlives a parent that
/// was never acknowledged (see [`Broker::enqueue_follow_up`]).
pub const SENT_MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

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

impl Broker {
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
    pub(super) async fn enqueue_many(
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
}
