//! Operator actions: tasks moved by hand (delete, archive, run now) one by
//! one or a whole state at once, running tasks cancelled, and a queue
//! removed. Moves go through `transition.lua`, which re-checks each task's
//! state, so a task that moved on meanwhile (a worker claimed it, say) is
//! left alone.

use redis::AsyncCommands as _;

use super::inspect::state_key;
use super::{Broker, BrokerError, QueueKeys, keys, now_nanos, now_secs, scripts};
use crate::task::TaskState;

/// The pub/sub channel on which cancellations go out (Asynq's).
pub const CANCEL_CHANNEL: &str = "asynq:cancel";

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

/// Most ids one script call moves.
const MOVE_BATCH: usize = 500;

impl Broker {
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
            q.limit(),
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
