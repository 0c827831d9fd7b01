//! Group commit for enqueues: concurrent [`Broker::enqueue`] calls into one
//! queue share one script call.
//!
//! Each queue has a lane. A call puts its task in the lane and waits for its
//! own outcome. When fewer than [`IN_FLIGHT`] script calls of that queue are
//! on the wire, the call also starts a flusher, which sends every task
//! waiting (up to [`MAX_BATCH`] tasks and [`MAX_BATCH_BYTES`] of messages)
//! as one call of the enqueue script, hands
//! each caller its code, and goes again while tasks keep arriving. A lone
//! caller goes straight out (there is no timer, so no added latency); callers
//! that arrive while calls are in flight ride the next one. Each task still
//! succeeds or fails on its own (an id conflict or a unique duplicate is
//! that task's answer); only a failed call (a dropped connection, say) fails
//! every task it carried, and [`Client`](crate::Client) retries those. The
//! script knows a retry of a call that did land (each task carries its
//! enqueue's own time), so a retry never turns into a false id conflict. A
//! task whose caller stopped waiting before it was sent is not sent.
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
/// Most message bytes one script call carries (beyond its first task), so
/// big payloads never make one call hold Redis up for long.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One task ready for the enqueue script.
#[derive(Debug)]
pub(crate) struct NewTask {
    /// Its hash, `asynq:{q}:t:<id>`.
    pub key: String,
    /// Its unique lock key, when unique.
    pub lock: Option<String>,
    /// The lock's other form, for a unique task with an empty payload (see
    /// [`QueueKeys::unique_other_form`](super::QueueKeys::unique_other_form)).
    pub other_lock: Option<String>,
    /// The encoded `TaskMessage`.
    pub msg: Vec<u8>,
    /// Task id.
    pub id: String,
    /// Process at, Unix seconds; 0: now.
    pub at: i64,
    /// Uniqueness TTL in seconds; 0: not unique.
    pub ttl: u64,
    /// The enqueue's own time, Unix nanoseconds (`pending_since`).
    pub since: i64,
    /// A follow-up's sent mark and its TTL in seconds (see
    /// [`Broker::enqueue_follow_up`](super::Broker::enqueue_follow_up)).
    pub mark: Option<(String, u64)>,
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

/// Takes the next batch from `waiting`: the oldest tasks, up to
/// [`MAX_BATCH`] of them and [`MAX_BATCH_BYTES`] of messages (at least one).
/// Tasks whose caller stopped waiting (its future was dropped) are left
/// out, never sent.
fn next_batch(waiting: &mut Vec<(NewTask, Reply)>) -> Vec<(NewTask, Reply)> {
    waiting.retain(|(_, reply)| !reply.is_closed());
    let mut bytes = 0;
    let n = waiting
        .iter()
        .take(MAX_BATCH)
        .take_while(|(task, _)| {
            bytes += task.msg.len();
            bytes <= MAX_BATCH_BYTES
        })
        .count()
        .max(1)
        .min(waiting.len());
    waiting.drain(..n).collect()
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
                let batch = next_batch(&mut state.waiting);
                if batch.is_empty() {
                    // Under the lock that callers check, so a task pushed
                    // after this starts a flusher of its own.
                    state.flushers -= 1;
                    self.armed = false;
                    return;
                }
                batch
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
    /// A flusher that panicked (or whose runtime shut down) no longer
    /// counts, so the next caller starts another; if it was the last one,
    /// the tasks still waiting fail (their callers get an error) rather than
    /// wait for a caller that may never come.
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.lane.state();
            state.flushers -= 1;
            if state.flushers == 0 {
                state.waiting.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(
        bytes: usize,
    ) -> (
        NewTask,
        Reply,
        oneshot::Receiver<Result<Enqueued, BrokerError>>,
    ) {
        let (reply, outcome) = oneshot::channel();
        let task = NewTask {
            key: "asynq:{q}:t:x".into(),
            lock: None,
            other_lock: None,
            msg: vec![0; bytes],
            id: "x".into(),
            at: 0,
            ttl: 0,
            since: 0,
            mark: None,
        };
        (task, reply, outcome)
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes_and_skip_callers_gone() {
        let mut waiting = Vec::new();
        let mut outcomes = Vec::new();
        for _ in 0..300 {
            let (t, r, o) = task(10);
            waiting.push((t, r));
            outcomes.push(o);
        }
        assert_eq!(next_batch(&mut waiting).len(), MAX_BATCH);
        assert_eq!(next_batch(&mut waiting).len(), 300 - MAX_BATCH);
        assert!(next_batch(&mut waiting).is_empty());

        // Big messages: as many as fit in the byte budget, and a lone task
        // bigger than the budget still goes.
        let big = MAX_BATCH_BYTES / 3;
        for bytes in [big, big, big, big, MAX_BATCH_BYTES * 2] {
            let (t, r, o) = task(bytes);
            waiting.push((t, r));
            outcomes.push(o);
        }
        assert_eq!(next_batch(&mut waiting).len(), 3);
        assert_eq!(next_batch(&mut waiting).len(), 1);
        assert_eq!(next_batch(&mut waiting).len(), 1);

        // A caller that stopped waiting is not sent.
        let (t, r, o) = task(10);
        waiting.push((t, r));
        drop(o);
        let (t, r, o) = task(10);
        waiting.push((t, r));
        let batch = next_batch(&mut waiting);
        assert_eq!(batch.len(), 1);
        drop(o);
    }
}
