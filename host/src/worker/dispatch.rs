//! Fetching: wait for a free slot, pick queues in priority order, claim as
//! many tasks as there are free slots (and the queue's limits allow) in one
//! round trip, hand each to a processor. A queue a limit holds back is left
//! alone until the limit may let a task through. An idle queue costs three commands a second per worker (see
//! [`waker`]). While
//! only one queue has work, its slots rarely come back here: the queue's
//! acker passes them on (see [`super::ack`]).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;

use super::{QueueState, Shared, process};
use crate::backoff::Backoff;
use crate::broker::Broker;

/// Most tasks claimed in one script call.
const MAX_BATCH: usize = 64;
/// How long an idle dispatcher sleeps before looking again without a wake,
/// and the longest a queue's waker waits before probing an idle queue.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How soon a queue's waker probes again while work keeps arriving.
const FAST_POLL: Duration = Duration::from_millis(5);
/// How long a queue's waker waits for a token while the dispatcher has the
/// queue in hand (it claims by itself as slots free up): no probe then, and
/// a pop every 20 ms rather than every 5.
const IN_HAND_POLL: Duration = Duration::from_millis(20);

pub(crate) async fn run(shared: Arc<Shared>) {
    // After a failed claim, wait before the next try, doubling up to 5 s
    // while Redis stays unreachable: no busy loop, no log flood.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        // Register for the stop signal before looking at the flag, so a
        // stop between the two is not missed while waiting for a slot.
        let stop = shared.stop.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        if shared.is_stopping() {
            return;
        }
        let first = tokio::select! {
            permit = shared.global.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = &mut stop => return,
        };
        if shared.is_stopping() {
            return;
        }
        // Under load, slots free up one by one; let the other ready tasks
        // (finishing processors) run first, so one claim takes several
        // tasks instead of one round trip per task. An idle worker has all
        // slots free and claims at once.
        let busy = shared.global.available_permits() + 1 < shared.settings.concurrency / 4;
        if busy {
            tokio::task::yield_now().await;
        }
        let mut claimed_any = false;
        // Whether a claim saw tasks it could not take (other workers won
        // them): then look again at once instead of waiting for a wake.
        let mut more_waiting = false;
        let mut first = Some(first);
        // The soonest a queue held back by a limit may claim again.
        let mut soonest_held: Option<Duration> = None;
        for queue in order(&shared) {
            let held_for = queue.held_for();
            if !held_for.is_zero() {
                soonest_held = Some(soonest_held.map_or(held_for, |s| s.min(held_for)));
                continue;
            }
            let Ok(queue_permit) = queue.slots.clone().try_acquire_owned() else {
                continue;
            };
            let mut global = first.take().expect("one global permit per round");
            let mut local = queue_permit;
            // Take as many extra slots as are free right now, up to a batch.
            let extra = shared
                .global
                .available_permits()
                .min(queue.slots.available_permits())
                .min(MAX_BATCH - 1);
            if extra > 0
                && let (Ok(g), Ok(l)) = (
                    shared.global.clone().try_acquire_many_owned(extra as u32),
                    queue.slots.clone().try_acquire_many_owned(extra as u32),
                )
            {
                global.merge(g);
                local.merge(l);
            }
            let want = global.num_permits();
            let leased_at = std::time::Instant::now();
            let lease_expiry = shared.lease_expiry();
            // One claim at a time per queue (the acker's refills included),
            // so the hint is never stale because of this worker itself.
            let mut hint = queue.hint.lock().await;
            let claimed = shared
                .broker
                .claim_within(&queue.keys, want, lease_expiry, &mut hint, &queue.limits())
                .await;
            if let Ok(c) = &claimed {
                if let Some(held) = c.held {
                    // A limit binds: claim this queue again when it may
                    // take more, not at once.
                    queue.hold(held);
                    shared.metrics.limit_held(queue.keys.name(), held);
                    soonest_held =
                        Some(soonest_held.map_or(queue.held_for(), |s| s.min(queue.held_for())));
                } else {
                    more_waiting |= !hint.is_empty();
                }
                if c.tasks.is_empty() && hint.is_empty() {
                    queue.mark_empty();
                } else {
                    queue.mark_busy();
                }
            }
            drop(hint);
            let claimed = match claimed {
                Ok(c) => {
                    backoff.reset();
                    c.tasks
                }
                Err(e) => {
                    shared.metrics.redis_error();
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        queue = queue.keys.name(),
                        "claiming tasks failed, next try in {delay:?}: {e}"
                    );
                    tokio::time::sleep(delay).await;
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                first = Some(global.split(1).expect("at least one permit"));
                continue;
            }
            claimed_any = true;
            for task in claimed {
                let (Some(g), Some(l)) = (global.split(1), local.split(1)) else {
                    unreachable!("claimed more tasks than permits")
                };
                tokio::spawn(process::run(
                    shared.clone(),
                    queue.clone(),
                    task,
                    (leased_at, lease_expiry),
                    (g, l),
                ));
            }
            break;
        }
        drop(first);
        if !claimed_any && !more_waiting {
            let wait = soonest_held.map_or(IDLE_POLL, |held| held.min(IDLE_POLL));
            let _ = tokio::time::timeout(wait, shared.work.notified()).await;
        }
    }
}

/// Queues in the order to try: by rank with strict priority, else a
/// weighted random order (a queue of weight 6 comes first three times as
/// often as one of weight 2), as Asynq does.
fn order(shared: &Shared) -> Vec<Arc<QueueState>> {
    let mut queues: Vec<Arc<QueueState>> = shared.queues.clone();
    if shared.settings.strict_priority {
        queues.sort_by_key(|q| std::cmp::Reverse(q.priority()));
        return queues;
    }
    let mut rng = rand::rng();
    let mut ordered = Vec::with_capacity(queues.len());
    while !queues.is_empty() {
        let total: u32 = queues.iter().map(|q| q.priority()).sum();
        let mut pick = rng.random_range(0..total);
        let index = queues
            .iter()
            .position(|q| {
                if pick < q.priority() {
                    true
                } else {
                    pick -= q.priority();
                    false
                }
            })
            .unwrap_or(0);
        ordered.push(queues.swap_remove(index));
    }
    ordered
}

/// Watches one queue for new work while it is idle, with a connection of
/// its own, and nudges the dispatcher when work arrives.
///
/// wasq's producers push a wake token, which a blocking pop (`BLPOP
/// asynq:{q}:wake`) sees at once. Producers that write Asynq's layout
/// without one (Asynq's own client) are seen by a probe of the pending list
/// each time the pop times out, while the dispatcher last found the queue
/// empty. The pop's timeout adapts: [`FAST_POLL`] while work keeps coming,
/// doubling on every empty probe up to [`IDLE_POLL`], and [`IN_HAND_POLL`]
/// (no probe) while the dispatcher is draining the queue. A queue that stays
/// idle costs three commands a second per worker (the pop, and the probe's LLEN and EXISTS); one
/// fed without tokens costs about two every [`FAST_POLL`] between tasks; a
/// draining one, a pop every [`IN_HAND_POLL`].
pub(crate) async fn waker(shared: Arc<Shared>, queue: Arc<QueueState>) {
    let mut conn = None;
    // Starts slow: the first probe waits for the dispatcher's first claim.
    let mut poll = Backoff::new(FAST_POLL, IDLE_POLL);
    while poll.peek() < IDLE_POLL {
        poll.next_delay();
    }
    let mut in_hand = false;
    loop {
        if shared.is_stopping() {
            return;
        }
        if conn.is_none() {
            match shared.broker.blocking_conn().await {
                Ok(c) => {
                    shared.metrics.redis_reconnect();
                    conn = Some(c)
                }
                Err(e) => {
                    tracing::debug!(queue = queue.keys.name(), "wake connection failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let wait = if in_hand { IN_HAND_POLL } else { poll.peek() };
        in_hand = false;
        let woken = match Broker::wait_for_work(c, &queue.keys, wait).await {
            Ok(true) => true,
            // No token: look at the list itself, unless the dispatcher has
            // the queue in hand (it claims again as slots free up).
            Ok(false) if queue.was_empty() && queue.slots.available_permits() > 0 => {
                match Broker::has_pending(c, &queue.keys).await {
                    Ok(pending) => pending,
                    Err(e) => {
                        tracing::debug!(queue = queue.keys.name(), "probing for work failed: {e}");
                        conn = None;
                        false
                    }
                }
            }
            Ok(false) => {
                // In the dispatcher's hands: stay quick for when it runs dry.
                in_hand = true;
                poll.reset();
                continue;
            }
            Err(e) => {
                tracing::debug!(queue = queue.keys.name(), "waiting for work failed: {e}");
                conn = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if woken {
            poll.reset();
            queue.mark_busy();
            shared.work.notify_one();
        } else {
            poll.next_delay();
        }
    }
}
