//! Settling a task this worker holds (or one whose lease expired): done or
//! completed (`finish.lua`, `finish_many.lua` which may also claim the
//! replacements), failed to retry or the archive (`fail.lua`), revoked
//! (`drop.lua`), given back (`requeue.lua`), or an expired lease cleared
//! (`forget.lua`). Every script acts only while the lease is the caller's.

use prost::Message as _;

use super::claim::claimed_tasks;
use super::{
    Broker, BrokerError, Claim, Held, QueueKeys, QueueLimits, keys, now_nanos, now_secs, scripts,
    stats_expiry,
};
use crate::proto::TaskMessage;

/// How [`Broker::forget_lease`] cleared an expired lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCleared {
    /// The task's hash was gone: its id left the lease set and `active`.
    TaskGone,
    /// The hash had no `msg`: it was archived as it is.
    ArchivedWithoutMsg,
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
    /// The queue's limits (see [`Broker::claim_within`]).
    pub limits: QueueLimits,
}

/// Where a failed task goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailTo {
    /// To the retry set, due at `at` (Unix seconds).
    Retry {
        /// When it is due.
        at: i64,
    },
    /// To the archive, now.
    Archive,
}

/// Whose lease a settling script may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseHolder {
    /// This broker's owner (the worker that runs the task).
    ThisWorker,
    /// Whoever held it, provided the lease expired by `by` (Unix seconds):
    /// recovering a task whose worker died.
    ExpiredBy {
        /// The time the lease must have expired by.
        by: i64,
    },
}

/// What `fail.lua` does with a task.
struct Failed<'a> {
    /// To the archive (at `score`), or to retry at `score`.
    archive: bool,
    score: i64,
    holder: LeaseHolder,
    /// Why the task cannot run as it is, stored beside its bytes.
    invalid: Option<&'a str>,
    /// Count it in the processed and failed counters (it failed).
    counted: bool,
    /// The module version it ran on ("" for none).
    module: &'a str,
}

impl Broker {
    /// A task finished well: delete it, or keep it as completed until
    /// `now + retention` with its `result`. False when the lease was lost.
    /// `module` is the SHA-256 of the module version it ran on, kept in the
    /// hash's `module` field with the task ("" for none).
    pub async fn finish(
        &self,
        msg: &TaskMessage,
        result: &[u8],
        module: &str,
    ) -> Result<bool, BrokerError> {
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
        inv.arg(stats_expiry()).arg(&*self.owner).arg(module);
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
    ) -> Result<(Vec<bool>, Claim), BrokerError> {
        let mut inv = scripts::FINISH_MANY.prepare_invoke();
        inv.key(queue.active())
            .key(queue.lease())
            .key(queue.processed_on(&keys::utc_date(now_secs())))
            .key(queue.processed_total())
            .key(queue.pending())
            .key(queue.paused())
            .key(queue.limit())
            .arg(stats_expiry())
            .arg(&*self.owner)
            .arg(tasks.len());
        let (expiry, hint_size, ids, limits) = match &refill {
            Some(r) => {
                let take = r.want.min(r.hint.len());
                (
                    r.lease_expiry,
                    (2 * r.want).clamp(16, 64),
                    &r.hint[..take],
                    r.limits,
                )
            }
            None => (0, 0, &[][..], QueueLimits::default()),
        };
        inv.arg(expiry).arg(hint_size).arg(&limits.args()[..]);
        for (id, lease_expiry) in tasks {
            inv.key(queue.task(id)).arg(id).arg(lease_expiry);
        }
        for id in ids {
            inv.key(queue.task(id)).arg(id);
        }
        let mut conn = self.conn.clone();
        let (done, flat, next, held): (Vec<i64>, Vec<Vec<u8>>, Vec<String>, i64) =
            inv.invoke_async(&mut conn).await?;
        if let Some(r) = refill {
            r.hint.clear();
            // The hint lists the tail newest first; keep it oldest first.
            r.hint.extend(next.into_iter().rev());
        }
        Ok((
            done.into_iter().map(|d| d == 1).collect(),
            Claim {
                tasks: claimed_tasks(flat)?,
                held: Held::from_reply(held),
            },
        ))
    }

    /// A task failed: it goes where `to` says, with the updated `msg`
    /// (retries, error, failure time). False when `holder` no longer holds
    /// the lease (or, recovering, it has not expired).
    ///
    /// ```no_run
    /// # use wasq::broker::{Broker, FailTo, LeaseHolder};
    /// # async fn f(broker: Broker, msg: wasq::proto::TaskMessage) -> Result<(), wasq::broker::BrokerError> {
    /// broker.fail(&msg, FailTo::Archive, LeaseHolder::ThisWorker, "").await?;
    /// # Ok(()) }
    /// ```
    pub async fn fail(
        &self,
        msg: &TaskMessage,
        to: FailTo,
        holder: LeaseHolder,
        module: &str,
    ) -> Result<bool, BrokerError> {
        let queue = QueueKeys::new(&msg.queue);
        let (archive, score) = match to {
            FailTo::Retry { at } => (false, at),
            FailTo::Archive => (true, now_secs()),
        };
        let failed = Failed {
            archive,
            score,
            holder,
            invalid: None,
            counted: true,
            module,
        };
        self.move_failed(&queue, &msg.id, &msg.encode_to_vec(), failed)
            .await
    }

    /// Puts a task this worker holds back in line for `at` (Unix seconds)
    /// without counting a failure or a retry: the host could not run it
    /// (short of descriptors or memory). False when the lease was lost.
    pub async fn requeue_later(
        &self,
        msg: &TaskMessage,
        at: i64,
        module: &str,
    ) -> Result<bool, BrokerError> {
        let failed = Failed {
            archive: false,
            score: at,
            holder: LeaseHolder::ThisWorker,
            invalid: None,
            counted: false,
            module,
        };
        let queue = QueueKeys::new(&msg.queue);
        self.move_failed(&queue, &msg.id, &msg.encode_to_vec(), failed)
            .await
    }

    /// Archives a task that cannot be run as it is (its `msg` does not
    /// decode, or names another queue or id), keeping its bytes as they are
    /// and `reason` in the hash's `invalid` field, if `holder` holds it.
    pub async fn archive_invalid(
        &self,
        queue: &QueueKeys,
        id: &str,
        raw: &[u8],
        reason: &str,
        holder: LeaseHolder,
    ) -> Result<bool, BrokerError> {
        let failed = Failed {
            archive: true,
            score: now_secs(),
            holder,
            invalid: Some(reason),
            counted: true,
            module: "",
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
            holder,
            invalid,
            counted,
            module,
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
            // Recovering an abandoned task acts on whoever's lease expired.
            .arg(match holder {
                LeaseHolder::ThisWorker => String::new(),
                LeaseHolder::ExpiredBy { by } => by.to_string(),
            })
            .arg(match holder {
                LeaseHolder::ThisWorker => &*self.owner,
                LeaseHolder::ExpiredBy { .. } => "",
            })
            .arg(invalid.unwrap_or(""))
            .arg(if counted { "1" } else { "0" })
            .arg(module);
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
}
