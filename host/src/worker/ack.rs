//! Batched acknowledgements, with refills.
//!
//! Processors of one queue hand their finished task ids to the queue's
//! acker, together with the slots (permits) their tasks held. The acker
//! deletes whatever has piled up in one script call (up to 128 ids), so
//! Redis runs one script per batch instead of one per task.
//!
//! When the dispatcher would give those slots straight back to this queue
//! (every queue that could come first was found empty a moment ago), the
//! same script call that acknowledges the batch also claims tasks to replace
//! it, and the acker starts them with the slots it holds: a worker draining
//! a queue pays one round trip per batch instead of an acknowledgement and
//! a claim. The acknowledgements run first in the script, so the queue's
//! `active` list never holds more of this worker's tasks than its
//! concurrency. Otherwise the slots go back to the dispatcher, which picks
//! the next queue by priority.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{QueueState, Shared, Slots, process, retry_redis};
use crate::broker::BrokerError;
use crate::broker::Refill;

const MAX_BATCH: usize = 128;
/// How often the acker yields before taking a batch. Measured with
/// queue-bench: 3 took the drain from about 22k to 26-28k tasks/s; 6 and 12
/// did about as well as 3.
const ACK_YIELDS: usize = 6;

/// A finished task: its id, the lease expiry this worker last wrote for it,
/// its slots, and where the answer goes.
struct Request {
    id: String,
    lease_expiry: i64,
    slots: Slots,
    reply: oneshot::Sender<Result<bool, BrokerError>>,
}

/// The sending side, one per queue.
#[derive(Clone)]
pub(crate) struct Acker {
    tx: mpsc::UnboundedSender<Request>,
}

/// The receiving side, handed to [`run`] when the worker starts.
pub(crate) struct Inbox(mpsc::UnboundedReceiver<Request>);

/// A queue's acker and its inbox.
pub(crate) fn channel() -> (Acker, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Acker { tx }, Inbox(rx))
}

impl Acker {
    /// Acknowledges `id`, whose lease this worker last set to expire at
    /// `lease_expiry`, and takes over its slots; false when its lease was
    /// lost, an error when Redis stayed unreachable.
    pub async fn finish(
        &self,
        id: String,
        lease_expiry: i64,
        slots: Slots,
    ) -> Result<bool, BrokerError> {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            id,
            lease_expiry,
            slots,
            reply,
        };
        let stopped = || BrokerError::Protocol("the worker's acker has stopped".into());
        if self.tx.send(request).is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The acker of `queue`, until the worker aborts it.
pub(crate) async fn run(shared: Arc<Shared>, queue: Arc<QueueState>, Inbox(mut rx): Inbox) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Let processors finishing at about the same time join this batch:
        // one script call then acknowledges more tasks.
        for _ in 0..ACK_YIELDS {
            tokio::task::yield_now().await;
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let tasks: Vec<(String, i64)> = batch
            .iter()
            .map(|r| (r.id.clone(), r.lease_expiry))
            .collect();
        let mut slots = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            slots.push(request.slots);
            replies.push(request.reply);
        }

        // Refill only with ids to claim in hand (the hint). A queue that
        // has run dry goes through the dispatcher, which peeks first, and
        // the acker does not hold the claim lock for a call that could
        // claim nothing.
        let mut refilled = None;
        let mut hint = None;
        if may_refill(&shared, &queue) {
            let locked = queue.hint.lock().await;
            if !locked.is_empty() {
                hint = Some(locked);
            }
        }
        if let Some(mut hint) = hint {
            let leased_at = Instant::now();
            let lease_expiry = shared.lease_expiry();
            let refill = Refill {
                want: slots.len(),
                lease_expiry,
                hint: &mut hint,
                limits: queue.limits(),
            };
            match shared
                .broker
                .finish_many_and_claim(&queue.keys, &tasks, Some(refill))
                .await
            {
                Ok((done, claim)) => {
                    if let Some(held) = claim.held {
                        queue.hold(held);
                        shared.metrics.limit_held(queue.keys.name(), held);
                    } else if claim.tasks.is_empty() && hint.is_empty() {
                        queue.mark_empty();
                    }
                    refilled = Some((done, claim.tasks, (leased_at, lease_expiry)));
                }
                Err(e) => {
                    // Tasks it may have claimed before the reply was lost
                    // come back when their lease expires.
                    hint.clear();
                    shared.metrics.redis_error();
                    tracing::warn!(
                        queue = queue.keys.name(),
                        "acknowledging and refilling failed, acknowledging alone: {e}"
                    );
                }
            }
        }
        let done = match refilled {
            Some((done, claimed, lease)) => {
                for task in claimed {
                    let Some(task_slots) = slots.pop() else {
                        unreachable!("claimed more tasks than slots")
                    };
                    tokio::spawn(process::run(
                        shared.clone(),
                        queue.clone(),
                        task,
                        lease,
                        task_slots,
                    ));
                }
                Ok(done)
            }
            None => {
                retry_redis("acknowledging tasks", || {
                    shared.broker.finish_many(&queue.keys, &tasks)
                })
                .await
            }
        };
        match done {
            Ok(done) => {
                for (reply, ok) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(ok));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.share()));
                }
            }
        }
        if !slots.is_empty() {
            for (global, local) in slots {
                // The queue's slot first, as processors release them.
                drop(local);
                drop(global);
            }
            shared.work.notify_one();
        }
    }
}

/// Whether the slots of tasks finished in `queue` may go straight to its
/// next tasks: the dispatcher would give them to this queue anyway, because
/// every queue that could come first (any other, under weighted priority;
/// those of the same or a higher rank, under strict priority) was found
/// empty a moment ago, and no limit holds this queue back. When several queues have work, slots go back to the
/// dispatcher, whose one draw per claim keeps the weights.
fn may_refill(shared: &Shared, queue: &Arc<QueueState>) -> bool {
    if shared.is_stopping() || queue.known_empty() || !queue.held_for().is_zero() {
        return false;
    }
    shared.queues.iter().all(|other| {
        Arc::ptr_eq(other, queue)
            || (shared.settings.strict_priority && other.priority() < queue.priority())
            || other.known_empty()
    })
}
