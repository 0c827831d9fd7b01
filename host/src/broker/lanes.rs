//! Group commit for enqueues: concurrent [`Broker::enqueue`] calls into one
//! queue share one script call.
//!
//! Each queue has a lane. A call puts its task in the lane and waits for its
//! own outcome. When fewer than [`IN_FLIGHT`] script calls of that queue are
//! on the wire, the call also starts a flusher, which sends every task
//! waiting (up to [`MAX_BATCH`]) as one call of the enqueue script, hands
//! each caller its code, and goes again while tasks keep arriving. A lone
//! caller goes straight out (there is no timer, so no added latency); callers
//! that arrive while calls are in flight ride the next one. Each task still
//! succeeds or fails on its own (an id conflict or a unique duplicate is
//! that task's answer); only a failed call (a dropped connection, say) fails
//! every task it carried, and [`Client`](crate::Client) retries those.
//!
//! Many callers enqueuing one task each therefore cost Redis a share of one
//! script call per task instead of a whole one, which is where the
//! one-by-one enqueue rate in the README's benchmark comes from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::{Broker, BrokerError, Enqueued};

/// Script calls of one queue on the wire at once: while one is answered,
/// the next is already being carried out.
const IN_FLIGHT: usize = 2;
/// Most tasks one script call carries.
const MAX_BATCH: usize = 256;

/// One task ready for the enqueue script.
#[derive(Debug)]
pub(crate) struct NewTask {
    /// Its hash, `asynq:{q}:t:<id>`.
    pub key: String,
    /// Its unique lock key, when unique.
    pub lock: Option<String>,
    /// The encoded `TaskMessage`.
    pub msg: Vec<u8>,
    /// Task id.
    pub id: String,
    /// Process at, Unix seconds; 0: now.
    pub at: i64,
    /// Uniqueness TTL in seconds; 0: not unique.
    pub ttl: u64,
}

type Reply = oneshot::Sender<Result<Enqueued, BrokerError>>;

/// The lanes of every queue a broker enqueued into (shared by its clones).
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
}

#[derive(Default)]
struct Lane {
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Tasks not yet sent, in call order.
    waiting: Vec<(NewTask, Reply)>,
    /// Flushers running (each has at most one call in flight).
    flushers: usize,
}

impl Lane {
    fn state(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Lanes {
    fn lane(&self, queue: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get(queue) {
            return lane.clone();
        }
        lanes.entry(queue.to_owned()).or_default().clone()
    }
}

/// Enqueues `task` into `queue` through the queue's lane.
pub(super) async fn enqueue(
    broker: &Broker,
    queue: &str,
    task: NewTask,
) -> Result<Enqueued, BrokerError> {
    let lane = broker.lanes.lane(queue);
    let (reply, outcome) = oneshot::channel();
    let start_flusher = {
        let mut state = lane.state();
        state.waiting.push((task, reply));
        let start = state.flushers < IN_FLIGHT;
        if start {
            state.flushers += 1;
        }
        start
    };
    if start_flusher {
        let flusher = Flusher { lane, armed: true };
        tokio::spawn(flusher.run(broker.clone(), queue.to_owned()));
    }
    outcome
        .await
        .map_err(|_| BrokerError::Protocol("the enqueue's flusher stopped unexpectedly".into()))?
}

/// Sends a lane's waiting tasks until none are left.
struct Flusher {
    lane: Arc<Lane>,
    /// Still counted in `flushers` (cleared when it leaves normally).
    armed: bool,
}

impl Flusher {
    async fn run(mut self, broker: Broker, queue: String) {
        loop {
            let batch: Vec<(NewTask, Reply)> = {
                let mut state = self.lane.state();
                if state.waiting.is_empty() {
                    // Under the lock that callers check, so a task pushed
                    // after this starts a flusher of its own.
                    state.flushers -= 1;
                    self.armed = false;
                    return;
                }
                let n = state.waiting.len().min(MAX_BATCH);
                state.waiting.drain(..n).collect()
            };
            let (tasks, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            match broker.enqueue_many(&queue, &tasks).await {
                Ok(codes) => {
                    for (reply, code) in replies.into_iter().zip(codes) {
                        let _ = reply.send(Ok(code));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.share()));
                    }
                }
            }
        }
    }
}

impl Drop for Flusher {
    /// A flusher that panicked no longer counts, so the next caller starts
    /// another.
    fn drop(&mut self) {
        if self.armed {
            self.lane.state().flushers -= 1;
        }
    }
}
