//! Sends the follow-up tasks of a run that succeeded, before the worker
//! acknowledges it.
//!
//! Each step is safe to repeat. A follow-up's id is derived from its
//! parent's id and its place among the run's calls, and sending it leaves
//! a mark in its queue's slot (`asynq:{q}:sent:<id>`, written by the same
//! script that stores it). When a worker dies after sending some follow-ups
//! and before the acknowledgement, the parent's next run asks for the same
//! ids, and each one already sent is a no-op, even if it has run and been
//! deleted since. Once the parent is acknowledged, the marks are deleted;
//! a worker that dies between the two leaves marks that expire after a
//! week ([`SENT_MARK_TTL`](crate::broker::SENT_MARK_TTL)).
//!
//! | the worker dies | the parent's next run |
//! | --- | --- |
//! | before the first follow-up is sent | sends them all |
//! | after some were sent | skips those (their marks), sends the rest |
//! | after all were sent, before the ack | skips them all, acknowledges |
//! | after the ack, before the marks are deleted | never comes: the marks expire |

use crate::client::{Client, EnqueueError};
use crate::runtime::FollowUp;
use crate::task::{Task, TaskOptions};

/// Sends `follow_ups` in order. An error means some may not be stored: the
/// parent must not be acknowledged.
pub(crate) async fn send(client: &Client, follow_ups: &[FollowUp]) -> Result<(), String> {
    for follow_up in follow_ups {
        send_one(client, follow_up).await?;
    }
    Ok(())
}

async fn send_one(client: &Client, f: &FollowUp) -> Result<(), String> {
    let mut options = TaskOptions::default().queue(&f.queue).task_id(&f.id);
    options.max_retry = f.max_retry;
    options.timeout = f.timeout;
    options.retention = f.retention;
    if let Some(delay) = f.process_in {
        options = options.process_in(delay);
    }
    for (k, v) in &f.headers {
        options = options.header(k, v);
    }
    // As long as an acknowledgement is retried; then the parent fails (and
    // is retried) instead.
    let started = std::time::Instant::now();
    let mut backoff = super::redis_backoff();
    loop {
        let task = Task::new(f.task_type.clone(), f.payload.clone());
        match client.enqueue_follow_up(task, options.clone()).await {
            Ok(_) => return Ok(()),
            Err(EnqueueError::IdConflict { .. }) => {
                tracing::debug!(
                    follow_up = %f.id, queue = %f.queue,
                    "follow-up task already enqueued (an earlier run of its parent sent it)"
                );
                return Ok(());
            }
            Err(e @ (EnqueueError::Broker(_) | EnqueueError::NotDurable { .. }))
                if started.elapsed() < super::REDIS_RETRY_FOR =>
            {
                let delay = backoff.next_delay();
                tracing::warn!(
                    follow_up = %f.id, queue = %f.queue,
                    "enqueueing a follow-up task failed, retrying in {delay:?}: {e}"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                return Err(format!(
                    "follow-up task {} ({}) into queue {} could not be enqueued: {e}",
                    f.id, f.task_type, f.queue
                ));
            }
        }
    }
}

/// Deletes the sent marks of `follow_ups` once their parent is
/// acknowledged (best effort: a mark left behind expires by itself).
pub(crate) async fn forget(client: &Client, follow_ups: &[FollowUp]) {
    let mut by_queue: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for f in follow_ups {
        by_queue.entry(&f.queue).or_default().push(f.id.clone());
    }
    for (queue, ids) in by_queue {
        if let Err(e) = client.broker().forget_sent_marks(queue, &ids).await {
            tracing::debug!(
                queue,
                "deleting follow-up sent marks failed (they expire): {e}"
            );
        }
    }
}
