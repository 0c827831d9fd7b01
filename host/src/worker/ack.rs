//! Batched acknowledgements: processors of one queue hand their finished
//! task ids to the queue's acker, which deletes whatever has piled up in one
//! script call (up to 128 ids), so Redis runs one script per batch instead
//! of one per task.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::persist;
use crate::broker::{Broker, QueueKeys};

const MAX_BATCH: usize = 128;
/// How often the acker yields before taking a batch. Measured with
/// queue-bench: 3 took the drain from about 22k to 26-28k tasks/s; 6 and 12
/// did about as well as 3.
const ACK_YIELDS: usize = 6;

/// A task id, the lease expiry this worker last wrote for it, and where
/// the answer goes.
type Request = (String, i64, oneshot::Sender<bool>);

/// The sending side, one per queue.
#[derive(Clone)]
pub(crate) struct Acker {
    tx: mpsc::UnboundedSender<Request>,
}

impl Acker {
    /// Starts the acker task of `queue`.
    pub fn start(broker: Broker, queue: QueueKeys) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(run(broker, Arc::new(queue), rx));
        (Self { tx }, handle)
    }

    /// Acknowledges `id`, whose lease this worker last set to expire at
    /// `lease_expiry`; false when its lease was lost or Redis stayed
    /// unreachable.
    pub async fn finish(&self, id: String, lease_expiry: i64) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send((id, lease_expiry, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

async fn run(broker: Broker, queue: Arc<QueueKeys>, mut rx: mpsc::UnboundedReceiver<Request>) {
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
            .map(|(id, expiry, _)| (id.clone(), *expiry))
            .collect();
        let done = persist("acknowledging tasks", || broker.finish_many(&queue, &tasks))
            .await
            .unwrap_or_else(|_| vec![false; tasks.len()]);
        for ((_, _, reply), ok) in batch.drain(..).zip(done) {
            let _ = reply.send(ok);
        }
    }
}
