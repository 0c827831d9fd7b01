//! Background upkeep on the worker's runtime: heartbeats that extend the
//! leases of running tasks and register the server, forwarding due
//! scheduled and retry tasks, recovering tasks whose worker died,
//! aggregating due task groups, and deleting completed tasks past their
//! retention.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use redis::AsyncCommands as _;

use super::{Fence, ListedTask, Shared};
use crate::backoff::Backoff;
use crate::broker::{BrokerError, FailTo, LeaseCleared, LeaseHolder, keys, now_secs};
use crate::proto::{ServerInfo, Timestamp, WorkerInfo};

/// Runs three loops side by side, so none waits on another: a heartbeat
/// held up by a slow Redis does not delay fencing, and a slow upkeep step
/// does not delay heartbeats.
pub(crate) async fn run(shared: Arc<Shared>) {
    tokio::join!(
        heartbeats(&shared),
        upkeeps(&shared),
        fences(&shared),
        usage(&shared),
        show_running(&shared)
    );
}

/// Writes `asynq:workers` soon after tasks start (at most every 500 ms),
/// so Asynq's tools see a running task within a second, not at the next
/// heartbeat.
async fn show_running(shared: &Shared) {
    loop {
        shared.running_changed.notified().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let active = shared
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(HashMap::len)
            .sum();
        if let Err(e) = register(shared, active).await {
            tracing::debug!("registering the running tasks failed: {e}");
        }
    }
}

/// Adds per type usage to Redis every 5 s (for `wasq module ls`).
async fn usage(shared: &Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = shared.usage.flush(&shared.broker).await {
            tracing::debug!("recording task type usage failed: {e}");
        }
    }
}

/// Listens for cancellations (`wasq task cancel`, or Asynq's inspector)
/// and stops the named tasks if they run here; reconnects when the
/// subscription drops.
pub(crate) async fn cancels(shared: Arc<Shared>) {
    use futures::StreamExt as _;
    loop {
        let mut pubsub = match shared.broker.pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("cancel subscription failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(crate::broker::CANCEL_CHANNEL).await {
            tracing::debug!("cancel subscription failed: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        shared.metrics.redis_reconnect();
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(id) = msg.get_payload::<String>() else {
                continue;
            };
            let mut inflight = shared.inflight.lock().unwrap_or_else(|e| e.into_inner());
            for (queue, tasks) in inflight.iter_mut() {
                if let Some(running) = tasks.get_mut(&id) {
                    tracing::warn!(task_id = %id, queue = %queue, "cancelling the task: an operator asked");
                    running.fenced.get_or_insert(Fence::Operator);
                    running.cancel.cancel();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn heartbeats(shared: &Shared) {
    let every = (shared.settings.lease.0 / 3).max(Duration::from_millis(200));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        heartbeat(shared).await;
    }
}

async fn upkeeps(shared: &Shared) {
    let every = shared.settings.maintenance_interval.0;
    // While Redis fails, upkeep backs off (up to 30 s) and logs once per
    // try instead of once per queue and step.
    let mut backoff = Backoff::new(every * 2, Duration::from_secs(30).max(every));
    loop {
        let wait = match upkeep(shared).await {
            Ok(()) => {
                shared.metrics.redis_ok();
                backoff.reset();
                every
            }
            Err(e) => {
                shared.metrics.redis_error();
                let next = backoff.next_delay();
                tracing::warn!("queue upkeep failed, next try in {next:?}: {e}");
                next
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn fences(shared: &Shared) {
    let every = (shared.settings.lease.0 / 10).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        fence(shared);
    }
}

/// Stops the tasks whose lease this worker could not renew in time: once
/// the lease runs out another worker may recover and start the task, and a
/// task must never run on two healthy workers at once.
fn fence(shared: &Shared) {
    let now = Instant::now();
    let mut inflight = shared.inflight.lock().unwrap_or_else(|e| e.into_inner());
    for (queue, tasks) in inflight.iter_mut() {
        for (id, running) in tasks.iter_mut() {
            if running.fenced.is_none() && running.held_until <= now {
                tracing::warn!(
                    task_id = %id, queue = %queue,
                    "stopping the task: its lease could not be renewed in time (Redis slow or unreachable)"
                );
                running.fenced = Some(Fence::Expiring);
                running.cancel.cancel();
            }
        }
    }
}

/// Extends the leases of this worker's running tasks; stops those whose
/// lease Redis says is no longer this worker's.
async fn heartbeat(shared: &Shared) {
    let running: Vec<(String, Vec<String>)> = shared
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(q, ids)| (q.clone(), ids.keys().cloned().collect()))
        .collect();
    let expiry = shared.lease_expiry();
    for (queue, ids) in &running {
        let asked = Instant::now();
        match shared
            .broker
            .extend_leases(&keys::QueueKeys::new(queue), ids, expiry)
            .await
        {
            Ok(held) => {
                let trusted = asked + shared.trusted_lease();
                let mut inflight = shared.inflight.lock().unwrap_or_else(|e| e.into_inner());
                let Some(tasks) = inflight.get_mut(queue) else {
                    continue;
                };
                for (id, held) in ids.iter().zip(held) {
                    let Some(running) = tasks.get_mut(id) else {
                        continue;
                    };
                    if held {
                        running.held_until = running.held_until.max(trusted);
                        running.lease_expiry = expiry;
                    } else if running.fenced.is_none() {
                        tracing::warn!(
                            task_id = %id, queue = %queue,
                            "stopping the task: its lease is no longer this worker's"
                        );
                        running.fenced = Some(Fence::Lost);
                        running.cancel.cancel();
                    }
                }
            }
            Err(e) => {
                shared.metrics.redis_error();
                tracing::warn!(queue, "extending leases failed: {e}")
            }
        }
    }
    if let Err(e) = register(shared, running.iter().map(|(_, ids)| ids.len()).sum()).await {
        tracing::debug!("registering the server failed: {e}");
    }
}

pub(crate) fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Writes this server into `asynq:servers` and its running tasks into
/// `asynq:workers`, as Asynq's tools expect.
async fn register(shared: &Shared, active: usize) -> Result<(), crate::broker::BrokerError> {
    let host = host();
    let pid = std::process::id();
    let ttl = (shared.settings.lease.0.as_secs() * 2).max(10);
    let info = ServerInfo {
        host: host.clone(),
        pid: pid as i32,
        server_id: shared.server_id.clone(),
        concurrency: shared.settings.concurrency as i32,
        queues: shared
            .queues
            .iter()
            .map(|q| (q.keys.name().to_owned(), q.priority() as i32))
            .collect(),
        strict_priority: shared.settings.strict_priority,
        status: if shared.is_stopping() {
            "stopped"
        } else {
            "active"
        }
        .into(),
        start_time: Some(Timestamp::from(shared.started)),
        active_worker_count: active as i32,
    };
    let server_key = keys::server_info(&host, pid, &shared.server_id);
    let workers_key = keys::workers(&host, pid, &shared.server_id);
    let expiry = now_secs() + ttl as i64;
    let mut conn = shared.broker.conn();
    let _: () = conn.set_ex(&server_key, info.encode_to_vec(), ttl).await?;
    let _: i64 = conn.zadd(keys::ALL_SERVERS, &server_key, expiry).await?;
    let running: Vec<(String, String, ListedTask)> = shared
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .flat_map(|(q, tasks)| {
            tasks
                .iter()
                .map(move |(id, run)| (q.clone(), id.clone(), run.listed.clone()))
        })
        .collect();
    let mut pipe = redis::pipe();
    pipe.del(&workers_key).ignore();
    for (queue, id, listed) in running {
        let worker = WorkerInfo {
            host: host.clone(),
            pid: pid as i32,
            server_id: shared.server_id.clone(),
            task_id: id.clone(),
            task_type: listed.task_type,
            task_payload: listed.payload,
            queue,
            start_time: Some(Timestamp::from(listed.started)),
            deadline: listed.deadline.map(Timestamp::from),
        };
        pipe.hset(&workers_key, id, worker.encode_to_vec()).ignore();
    }
    pipe.expire(&workers_key, ttl as i64).ignore();
    let _: () = pipe.query_async(&mut conn).await?;
    let _: i64 = conn.zadd(keys::ALL_WORKERS, &workers_key, expiry).await?;
    Ok(())
}

/// Removes this server from the registry at shutdown.
pub(crate) async fn deregister(shared: &Shared) {
    let host = host();
    let pid = std::process::id();
    let server_key = keys::server_info(&host, pid, &shared.server_id);
    let workers_key = keys::workers(&host, pid, &shared.server_id);
    let mut conn = shared.broker.conn();
    let _: Result<i64, _> = conn.zrem(keys::ALL_SERVERS, &server_key).await;
    let _: Result<i64, _> = conn.zrem(keys::ALL_WORKERS, &workers_key).await;
    let _: Result<i64, _> = conn.del(&server_key).await;
    let _: Result<i64, _> = conn.del(&workers_key).await;
}

/// One pass over every queue: forward due tasks, expire completed ones,
/// recover abandoned ones. A step that fails for one queue (or one task)
/// is logged and the pass goes on with the rest; the pass then reports the
/// first error, so the loop backs off while Redis fails.
async fn upkeep(shared: &Shared) -> Result<(), BrokerError> {
    let mut first_error = None;
    for queue in &shared.queues {
        let keys = &queue.keys;
        let steps = async {
            let moved = shared.broker.forward(keys).await?;
            if moved > 0 {
                tracing::debug!(queue = keys.name(), moved, "forwarded due tasks");
            }
            shared.broker.expire_completed(keys).await?;
            shared.broker.trim_archive(keys, &queue.archive).await?;
            recover(shared, keys).await?;
            super::groups::aggregate(shared, queue).await
        };
        if let Err(e) = steps.await {
            tracing::debug!(queue = keys.name(), "queue upkeep failed: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Tasks whose lease expired belong to a worker that died: retry them (or
/// archive them when out of retries). One task that cannot be settled
/// never holds up the others.
async fn recover(shared: &Shared, queue: &keys::QueueKeys) -> Result<(), BrokerError> {
    let now = now_secs();
    let expired = shared.broker.expired_leases(queue, now).await?;
    let mut first_error = None;
    for id in expired {
        let ours = shared
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue.name())
            .is_some_and(|m| m.contains_key(&id));
        if ours {
            continue;
        }
        if let Err(e) = recover_one(shared, queue, &id, now).await {
            tracing::warn!(task_id = %id, queue = queue.name(), "recovering an abandoned task failed: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn recover_one(
    shared: &Shared,
    queue: &keys::QueueKeys,
    id: &str,
    now: i64,
) -> Result<(), BrokerError> {
    // A lease whose hash is gone or has no `msg` is cleared in one script
    // that checks both, and one whose `msg` cannot be run in this queue (not
    // a TaskMessage, or one naming another queue) is archived as it is:
    // none of them may hold up recovery.
    let Some(raw) = shared.broker.task_msg(queue, id).await? else {
        match shared.broker.forget_lease(queue, id, now).await? {
            Some(LeaseCleared::TaskGone) => {
                tracing::warn!(task_id = %id, queue = queue.name(), "dropped an expired lease whose task no longer exists");
            }
            Some(LeaseCleared::ArchivedWithoutMsg) => {
                tracing::warn!(task_id = %id, queue = queue.name(), "archived an abandoned task without a msg");
            }
            None => {}
        }
        return Ok(());
    };
    let mut msg = match super::process::decode_claimed(queue, id, &raw) {
        Ok(msg) => msg,
        Err(reason) => {
            if shared
                .broker
                .archive_invalid(queue, id, &raw, &reason, LeaseHolder::ExpiredBy { by: now })
                .await?
            {
                tracing::warn!(task_id = %id, queue = queue.name(), "archived an abandoned task: {reason}");
            }
            return Ok(());
        }
    };
    msg.error_msg = "lease expired: the worker running the task stopped (crashed, killed or cut off from Redis)".into();
    msg.last_failed_at = now;
    // Due at once: it has already waited out its lease.
    let to = if msg.retried >= msg.retry {
        FailTo::Archive
    } else {
        msg.retried += 1;
        FailTo::Retry { at: now }
    };
    let archive = to == FailTo::Archive;
    if shared
        .broker
        .fail(&msg, to, LeaseHolder::ExpiredBy { by: now }, "")
        .await?
    {
        tracing::warn!(task_id = %id, queue = queue.name(), archive, "recovered a task whose lease expired");
    }
    Ok(())
}
