//! Aggregating a queue's task groups, on every maintenance pass of every
//! worker (see [`crate::broker::Broker::take_group`] for the steps and why
//! any number of workers may run them at once): each due group becomes one
//! pending task of the queue's `group_task_type`, whose payload is a
//! [`TaskGroup`] with the group's tasks and whose [`GROUP_HEADER`] names
//! the group. The handler sees them as the task's group and members.

use prost::Message as _;

use super::{QueueState, Shared};
use crate::broker::{BrokerError, TakenGroup};
use crate::proto::{GROUP_HEADER, TaskGroup, TaskMessage};

/// Puts back the tasks of abandoned aggregation sets, then aggregates
/// every due group of `queue`.
pub(crate) async fn aggregate(shared: &Shared, queue: &QueueState) -> Result<(), BrokerError> {
    let keys = &queue.keys;
    let back = shared.broker.reclaim_groups(keys).await?;
    if back > 0 {
        tracing::warn!(
            queue = keys.name(),
            tasks = back,
            "put the tasks of an abandoned aggregation back into their groups"
        );
    }
    for (group, _) in shared.broker.groups(keys.name()).await? {
        let Some(taken) = shared
            .broker
            .take_group(keys, &group, &queue.groups, shared.settings.lease.0)
            .await?
        else {
            continue;
        };
        let aggregated = aggregated_task(&taken, keys.name(), queue.group_task_type.as_deref());
        if shared
            .broker
            .finish_group(keys, &taken, &aggregated)
            .await?
        {
            tracing::info!(
                queue = keys.name(),
                group = %group,
                task_id = %aggregated.id,
                tasks = taken.tasks.len(),
                "aggregated a group into one task"
            );
        }
    }
    Ok(())
}

/// The task that aggregates `taken`: of type `task_type` (else its oldest
/// task's), with the oldest task's retries, timeout and retention, an id
/// made from the set's (so a repeat of the last step writes the same task),
/// and the group's tasks as its payload.
fn aggregated_task(taken: &TakenGroup, queue: &str, task_type: Option<&str>) -> TaskMessage {
    let first = taken.tasks.first();
    let payload = TaskGroup {
        group: taken.group.clone(),
        tasks: taken.tasks.clone(),
    };
    TaskMessage {
        r#type: task_type
            .map(str::to_owned)
            .or_else(|| first.map(|t| t.r#type.clone()))
            .unwrap_or_else(|| "group".to_owned()),
        payload: payload.encode_to_vec(),
        id: format!("group-{}", taken.set_id),
        queue: queue.to_owned(),
        retry: first.map_or(crate::task::DEFAULT_MAX_RETRY as i32, |t| t.retry),
        timeout: first
            .map(|t| t.timeout)
            .filter(|t| *t > 0)
            .unwrap_or(crate::task::DEFAULT_TIMEOUT.as_secs() as i64),
        retention: first.map_or(0, |t| t.retention),
        headers: [(GROUP_HEADER.to_owned(), taken.group.clone())].into(),
        ..TaskMessage::default()
    }
}
