//! One claimed task: decode, run in the sandbox, write the outcome back.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;

use super::{
    Disposition, Fence, ListedTask, QueueState, Running, Shared, Slots, TaskEvent, retry_redis,
};
use crate::broker::{BrokerError, Claimed, FailTo, LeaseHolder, QueueKeys, now_secs};
use crate::proto::TaskMessage;
use crate::runtime::{Action, CancelToken, Failure, Invocation, Outcome, TrapCause, guest_text};

pub(crate) async fn run(
    shared: Arc<Shared>,
    queue: Arc<QueueState>,
    claimed: Claimed,
    (leased_at, lease_expiry): (Instant, i64),
    slots: Slots,
) {
    // Every log line about the task (retries of Redis writes included)
    // carries its id and queue.
    let span = tracing::info_span!(
        "task",
        task_id = %claimed.id,
        queue = %queue.keys.name(),
        task_type = tracing::field::Empty
    );
    // A task acknowledged in a batch hands its slots to the acker, which
    // may start the next task with them; otherwise they go back here.
    let mut slots = Some(slots);
    tracing::Instrument::instrument(
        process(
            &shared,
            &queue,
            claimed,
            (leased_at, lease_expiry),
            &mut slots,
        ),
        span,
    )
    .await;
    if let Some((global, local)) = slots {
        // The queue's slot goes back before the global one: the other way
        // round, a dispatcher woken in between would find this queue still
        // full and skip it, which skews weighted priorities under load.
        drop(local);
        drop(global);
        shared.work.notify_one();
    }
}

async fn process(
    shared: &Shared,
    queue: &QueueState,
    claimed: Claimed,
    (leased_at, lease_expiry): (Instant, i64),
    slots: &mut Option<Slots>,
) {
    let name = queue.keys.name().to_owned();
    let msg = match decode_claimed(&queue.keys, &claimed.id, &claimed.msg) {
        Ok(msg) => msg,
        Err(error) => {
            tracing::error!(task_id = %claimed.id, queue = %name, "archiving task: {error}");
            let archived = retry_redis("archiving an invalid task", || {
                shared.broker.archive_invalid(
                    &queue.keys,
                    &claimed.id,
                    &claimed.msg,
                    &error,
                    LeaseHolder::ThisWorker,
                )
            })
            .await;
            shared.emit(TaskEvent {
                id: claimed.id,
                task_type: String::new(),
                queue: name,
                disposition: settled(archived, Disposition::Archived),
                result: None,
                error: Some(error),
                fuel: None,
                micros: 0,
                started_at_ms: 0,
                cause: "invalid_msg".into(),
                memory_peak: 0,
                module: String::new(),
            });
            return;
        }
    };

    tracing::Span::current().record("task_type", msg.r#type.as_str());
    let cancel = CancelToken::new();
    let started = SystemTime::now();
    let listed = ListedTask {
        task_type: msg.r#type.clone(),
        payload: if msg.payload.len() <= ListedTask::MAX_PAYLOAD {
            msg.payload.clone()
        } else {
            Vec::new()
        },
        started,
        // The deadline the sandbox enforces: the earliest of the task
        // type's timeout, the task's own and the task's deadline.
        deadline: [
            shared
                .runtime
                .timeout_of(&msg.r#type)
                .and_then(|t| started.checked_add(t)),
            (msg.timeout > 0)
                .then(|| started.checked_add(Duration::from_secs(msg.timeout as u64)))
                .flatten(),
            (msg.deadline > 0)
                .then(|| UNIX_EPOCH.checked_add(Duration::from_secs(msg.deadline as u64)))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .min(),
    };
    shared
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.clone())
        .or_default()
        .insert(
            msg.id.clone(),
            Running {
                cancel: cancel.clone(),
                held_until: leased_at + shared.trusted_lease(),
                lease_expiry,
                fenced: None,
                listed,
            },
        );
    // Asynq's tools list running tasks from `asynq:workers`: show this one
    // now rather than at the next heartbeat.
    shared.running_changed.notify_one();
    let invocation = Invocation {
        id: msg.id.clone(),
        task_type: msg.r#type.clone(),
        queue: name.clone(),
        payload: msg.payload.clone(),
        retried: msg.retried.max(0) as u32,
        max_retry: msg.retry.max(0) as u32,
        timeout: (msg.timeout > 0).then(|| Duration::from_secs(msg.timeout as u64)),
        deadline: (msg.deadline > 0).then(|| UNIX_EPOCH + Duration::from_secs(msg.deadline as u64)),
        headers: msg
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        group: group_of(&msg),
        cancel: Some(cancel),
    };
    let runtime = shared.runtime.clone();
    let started_at_ms = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let execution = shared
        .sandbox
        .spawn(async move { runtime.execute(invocation).await })
        .await;
    let (fenced, lease_expiry) = shared
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&name)
        .and_then(|m| m.remove(&msg.id))
        .map_or((None, lease_expiry), |r| (r.fenced, r.lease_expiry));

    if let Ok(run) = &execution
        && !run.http.is_empty()
    {
        shared.metrics.http(&run.task_type, &run.http);
        shared.usage.http(&run.task_type, &run.http);
    }
    let (mut outcome, fuel, micros, memory_peak, follow_ups, module) = match execution {
        Ok(run) => (
            run.outcome,
            run.fuel_measured.then_some(run.fuel_consumed),
            run.wall_time.as_micros() as u64,
            run.memory_peak,
            run.follow_ups,
            run.module_hash,
        ),
        Err(e) => (
            Outcome::Failed {
                failure: Failure::Host {
                    message: format!("the sandbox task died: {e}"),
                },
            },
            None,
            0,
            0,
            Vec::new(),
            String::new(),
        ),
    };
    // Follow-ups go out before the acknowledgement: a parent acknowledged
    // without them would lose them for good, while a parent run again after
    // they were sent sends the same ids, which is a no-op.
    if outcome.is_success()
        && !follow_ups.is_empty()
        && let Err(message) = super::follow_ups::send(&shared.client, &follow_ups).await
    {
        outcome = Outcome::Failed {
            failure: Failure::Host { message },
        };
    }
    let mut event = TaskEvent {
        id: msg.id.clone(),
        // Names come from whoever enqueued (an Asynq client checks none).
        task_type: crate::runtime::escape_control(&msg.r#type).into_owned(),
        queue: name.clone(),
        disposition: Disposition::Done,
        result: None,
        error: None,
        fuel,
        micros,
        started_at_ms,
        cause: outcome
            .failure()
            .map_or("ok", |f| f.cause_name())
            .to_owned(),
        memory_peak,
        module: module.clone(),
    };

    let cancelled = matches!(
        &outcome,
        Outcome::Failed {
            failure: Failure::Trap {
                cause: TrapCause::Cancelled
            }
        }
    );
    let disposition = match &outcome {
        _ if cancelled && fenced == Some(Fence::Lost) => {
            event.error = Some("stopped: the lease is no longer this worker's".into());
            Disposition::LeaseLost
        }
        _ if cancelled && fenced == Some(Fence::Expiring) => {
            // Give it back now rather than wait for the lease to run out;
            // the script does nothing if another worker recovered it.
            event.error = Some("stopped: the lease could not be renewed in time".into());
            settled(
                retry_redis("requeueing a task", || {
                    shared.broker.requeue(&queue.keys, &msg.id)
                })
                .await,
                Disposition::Requeued,
            )
        }
        _ if cancelled && fenced == Some(Fence::Operator) => {
            // Cancelled by hand: archived, so it does not come back by
            // itself (`wasq task run` brings it back).
            let failure = Failure::Host {
                message: "cancelled by an operator".into(),
            };
            event.error = Some(failure.to_string());
            let now = now_secs();
            let mut updated = msg.clone();
            updated.error_msg = failure.to_string();
            updated.last_failed_at = now;
            settled(
                retry_redis("archiving a cancelled task", || {
                    shared
                        .broker
                        .fail(&updated, FailTo::Archive, LeaseHolder::ThisWorker, &module)
                })
                .await,
                Disposition::Archived,
            )
        }
        _ if cancelled && shared.is_stopping() => {
            event.error = Some("interrupted by shutdown".into());
            settled(
                retry_redis("requeueing a task", || {
                    shared.broker.requeue(&queue.keys, &msg.id)
                })
                .await,
                Disposition::Requeued,
            )
        }
        Outcome::Success { result } => {
            // What the worker prints of it: capped, control characters
            // escaped (the stored result keeps its bytes).
            event.result = Some(guest_text::sanitize(&String::from_utf8_lossy(result)));
            if msg.retention == 0
                && msg.unique_key.is_empty()
                && let Some(slots) = slots.take()
            {
                let written = queue
                    .acker
                    .finish(msg.id.clone(), lease_expiry, slots)
                    .await;
                settled(written, Disposition::Done)
            } else {
                let written = retry_redis("acknowledging a task", || {
                    shared.broker.finish(&msg, result, &module)
                })
                .await;
                settled(
                    written,
                    if msg.retention > 0 {
                        Disposition::Completed
                    } else {
                        Disposition::Done
                    },
                )
            }
        }
        Outcome::Failed { failure } => {
            event.error = Some(guest_text::sanitize(&failure.to_string()));
            fail(shared, queue, &msg, failure, &module).await
        }
    };
    event.disposition = disposition;
    if matches!(disposition, Disposition::Done | Disposition::Completed) && !follow_ups.is_empty() {
        super::follow_ups::forget(&shared.client, &follow_ups).await;
    }
    let module = &module[..module.len().min(12)];
    match disposition {
        Disposition::Done | Disposition::Completed => {
            tracing::info!(task_id = %msg.id, task_type = %msg.r#type, queue = %name, module, fuel, micros, "task done")
        }
        Disposition::LeaseLost => tracing::warn!(
            task_id = %msg.id, task_type = %msg.r#type, queue = %name,
            "the task's lease was lost (recovered by another worker); its outcome was not written"
        ),
        Disposition::WriteFailed => tracing::error!(
            task_id = %msg.id, task_type = %msg.r#type, queue = %name,
            "the task's outcome could not be written: Redis failed for 30 s; its lease will expire and the task will run again"
        ),
        other => tracing::warn!(
            task_id = %msg.id, task_type = %msg.r#type, queue = %name, module, disposition = ?other,
            error = event.error.as_deref().unwrap_or(""), "task failed"
        ),
    }
    shared.emit(event);
}

async fn fail(
    shared: &Shared,
    queue: &QueueState,
    msg: &TaskMessage,
    failure: &Failure,
    module: &str,
) -> Disposition {
    let now = now_secs();
    let mut updated = msg.clone();
    updated.error_msg = failure.to_string();
    updated.last_failed_at = now;
    let to = match failure.action() {
        Action::Drop => {
            return settled(
                retry_redis("dropping a revoked task", || {
                    shared
                        .broker
                        .drop_task(&queue.keys, &msg.id, &msg.unique_key)
                })
                .await,
                Disposition::Dropped,
            );
        }
        Action::Archive => FailTo::Archive,
        // The host could not run it: again later, without using a retry or
        // counting a failure.
        Action::Requeue { delay } => {
            let at = now + delay.as_secs().max(1) as i64;
            return settled(
                retry_redis("requeueing a task the host could not run", || {
                    shared.broker.requeue_later(&updated, at, module)
                })
                .await,
                Disposition::Requeued,
            );
        }
        Action::Retry { .. } if msg.retried >= msg.retry => FailTo::Archive,
        Action::Retry { delay } => {
            let delay = delay.unwrap_or_else(|| {
                shared
                    .retry_delays
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&msg.r#type)
                    .copied()
                    .unwrap_or_default()
                    .delay(msg.retried.max(0) as u32)
            });
            updated.retried += 1;
            let at = SystemTime::now() + delay;
            FailTo::Retry {
                at: at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64,
            }
        }
    };
    let written = retry_redis("recording a failure", || {
        shared
            .broker
            .fail(&updated, to, LeaseHolder::ThisWorker, module)
    })
    .await;
    settled(
        written,
        match to {
            FailTo::Archive => Disposition::Archived,
            FailTo::Retry { .. } => Disposition::Retry,
        },
    )
}

/// The disposition of a settling write: `done` when it was written, lease
/// lost when the script found the lease no longer this worker's, and
/// [`Disposition::WriteFailed`] when Redis failed for as long as
/// [`retry_redis`] tries.
pub(crate) fn settled(written: Result<bool, BrokerError>, done: Disposition) -> Disposition {
    match written {
        Ok(true) => done,
        Ok(false) => Disposition::LeaseLost,
        Err(_) => Disposition::WriteFailed,
    }
}

/// Decodes a claimed task's `msg`, or says why it cannot be run: no `msg`,
/// not a `TaskMessage`, or one that belongs elsewhere (see [`misfiled`]).
pub(crate) fn decode_claimed(
    queue: &QueueKeys,
    id: &str,
    raw: &[u8],
) -> Result<TaskMessage, String> {
    if raw.is_empty() {
        return Err("task hash has no msg field".into());
    }
    let msg = TaskMessage::decode(raw)
        .map_err(|_| "msg is not a valid Asynq TaskMessage (protobuf)".to_owned())?;
    if msg.r#type.is_empty() {
        return Err("msg has no task type".into());
    }
    match misfiled(queue, id, &msg) {
        Some(reason) => Err(reason),
        None => Ok(msg),
    }
}

/// Why a decoded message cannot be settled in the queue it sits in: its id
/// or queue differ from where it was found, or its unique lock is a key of
/// another queue (every script on the task runs in the queue's own slot).
pub(crate) fn misfiled(queue: &QueueKeys, id: &str, msg: &TaskMessage) -> Option<String> {
    if msg.id != id {
        return Some(format!(
            "msg names task id {:?}, but it is stored as {id:?}",
            msg.id
        ));
    }
    if msg.queue != queue.name() {
        return Some(format!(
            "msg names queue {:?}, but the task sits in queue {:?}",
            msg.queue,
            queue.name()
        ));
    }
    if !msg.unique_key.is_empty() && !msg.unique_key.starts_with(queue.prefix()) {
        return Some(format!(
            "msg's unique lock {:?} is not a key of queue {:?}",
            msg.unique_key,
            queue.name()
        ));
    }
    None
}

/// The group a task aggregates: its [`crate::proto::GROUP_HEADER`] names one and its
/// payload is the group's [`crate::proto::TaskGroup`]. Anything else is a task like any
/// other.
fn group_of(msg: &TaskMessage) -> Option<crate::runtime::Group> {
    use prost::Message as _;
    msg.headers.get(crate::proto::GROUP_HEADER)?;
    let group = crate::proto::TaskGroup::decode(msg.payload.as_slice()).ok()?;
    Some(crate::runtime::Group {
        name: group.group,
        members: group
            .tasks
            .into_iter()
            .map(|t| crate::runtime::Member {
                id: t.id,
                task_type: t.r#type,
                payload: t.payload,
                headers: t.headers.into_iter().collect(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_that_failed_is_not_a_lost_lease() {
        let down = BrokerError::Protocol("connection refused".into());
        assert_eq!(settled(Ok(true), Disposition::Retry), Disposition::Retry);
        assert_eq!(
            settled(Ok(false), Disposition::Done),
            Disposition::LeaseLost
        );
        assert_eq!(
            settled(Err(down), Disposition::Done),
            Disposition::WriteFailed
        );
    }

    #[test]
    fn a_message_is_run_only_in_its_own_queue() {
        let keys = QueueKeys::new("mail");
        let msg = TaskMessage {
            r#type: "t".into(),
            id: "1".into(),
            queue: "mail".into(),
            ..Default::default()
        };
        assert!(decode_claimed(&keys, "1", &msg.encode_to_vec()).is_ok());
        assert!(decode_claimed(&keys, "2", &msg.encode_to_vec()).is_err());
        let mut other = msg.clone();
        other.queue = "images".into();
        let why = decode_claimed(&keys, "1", &other.encode_to_vec()).unwrap_err();
        assert!(why.contains("names queue \"images\""), "{why}");
        let mut lock = msg.clone();
        lock.unique_key = "asynq:{images}:unique:t:".into();
        assert!(decode_claimed(&keys, "1", &lock.encode_to_vec()).is_err());
        lock.unique_key = "asynq:{mail}:unique:t:".into();
        assert!(decode_claimed(&keys, "1", &lock.encode_to_vec()).is_ok());
        assert!(decode_claimed(&keys, "1", b"").is_err());
        assert!(decode_claimed(&keys, "1", b"\xff\xff").is_err());
    }
}
