//! Task groups, in Asynq's layout: tasks added to a group wait in
//! `asynq:{q}:g:<group>` (state `aggregating`) until the group is due
//! (its max size, its oldest task's max delay, or a grace period with no
//! new task), then are taken into an aggregation set and become one task.
//!
//! Aggregating is three steps on the queue's slot, each safe to repeat:
//! [`Broker::take_group`] moves the due tasks into a new set
//! (`group_check.lua`) and reads them; the caller builds the task that
//! aggregates them; [`Broker::finish_group`] writes that task and deletes
//! the set and its tasks in one script (`group_done.lua`). A worker that
//! dies between the first and the last leaves the set behind; once the set
//! is abandoned (after the lease), [`Broker::reclaim_groups`] puts its
//! tasks back into their group (`group_reclaim.lua`), so every task ends in
//! exactly one aggregated task.

use std::time::Duration;

use prost::Message as _;
use redis::AsyncCommands as _;

use super::{Broker, BrokerError, Enqueued, QueueKeys, now_nanos, now_secs, scripts};
use crate::proto::TaskMessage;

/// When a queue's groups are due, with Asynq's meanings and defaults.
///
/// ```
/// use std::time::Duration;
/// use wasq::broker::GroupRules;
/// let rules = GroupRules::default();
/// assert_eq!(rules.grace, Duration::from_secs(60));
/// assert_eq!((rules.max_delay, rules.max_size), (None, None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRules {
    /// A group is due once no task joined it for this long (Asynq's
    /// `GroupGracePeriod`, default 1 minute).
    pub grace: Duration,
    /// A group is due once its oldest task waited this long, whatever the
    /// grace period (`GroupMaxDelay`; none by default).
    pub max_delay: Option<Duration>,
    /// A group is due once it holds this many tasks, and an aggregated task
    /// takes at most this many (`GroupMaxSize`; none by default).
    pub max_size: Option<u64>,
}

impl Default for GroupRules {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(60),
            max_delay: None,
            max_size: None,
        }
    }
}

/// The tasks of a group taken into an aggregation set, to become one task.
#[derive(Debug, Clone)]
pub struct TakenGroup {
    /// The group's name.
    pub group: String,
    /// The set's id (a UUID), which the aggregated task's id derives from.
    pub set_id: String,
    /// The ids in the set, oldest first.
    pub ids: Vec<String>,
    /// The tasks whose `msg` decoded, oldest first (a task deleted by hand
    /// meanwhile is left out).
    pub tasks: Vec<TaskMessage>,
}

impl Broker {
    /// Adds a task to `msg.group_key` of its queue (Asynq's AddToGroup):
    /// it waits, `aggregating`, until its group is aggregated. Unique for
    /// `unique_ttl` seconds when given.
    pub async fn add_to_group(
        &self,
        msg: &TaskMessage,
        unique_ttl: Option<u64>,
    ) -> Result<Enqueued, BrokerError> {
        self.register_queue(&msg.queue).await?;
        let q = QueueKeys::new(&msg.queue);
        let mut inv = scripts::GROUP_ADD.prepare_invoke();
        inv.key(q.task(&msg.id))
            .key(q.group(&msg.group_key))
            .key(q.groups())
            .arg(msg.encode_to_vec())
            .arg(&msg.id)
            .arg(now_secs())
            .arg(&msg.group_key);
        if let Some(ttl) = unique_ttl {
            inv.key(&msg.unique_key).arg(ttl);
        }
        let code: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(match code {
            1 => Enqueued::Ok,
            0 => Enqueued::IdConflict,
            _ => Enqueued::Duplicate,
        })
    }

    /// The groups of `queue` with the tasks waiting in each, by name.
    pub async fn groups(&self, queue: &str) -> Result<Vec<(String, u64)>, BrokerError> {
        let q = QueueKeys::new(queue);
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn.smembers(q.groups()).await?;
        names.sort();
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.zcard(q.group(name));
        }
        let sizes: Vec<u64> = if names.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        Ok(names.into_iter().zip(sizes).collect())
    }

    /// Takes `group` of `queue` into a new aggregation set if it is due by
    /// `rules`, and reads the set. The set counts as abandoned after
    /// `timeout` (then [`reclaim_groups`](Self::reclaim_groups) puts its
    /// tasks back). `None` when the group is not due.
    pub async fn take_group(
        &self,
        queue: &QueueKeys,
        group: &str,
        rules: &GroupRules,
        timeout: Duration,
    ) -> Result<Option<TakenGroup>, BrokerError> {
        let set_id = uuid::Uuid::new_v4().to_string();
        let set = queue.aggregation_set(group, &set_id);
        let now = now_secs();
        let mut conn = self.conn.clone();
        let taken: i64 = scripts::GROUP_CHECK
            .key(queue.group(group))
            .key(&set)
            .key(queue.aggregation_sets())
            .key(queue.groups())
            .arg(rules.max_size.unwrap_or(0))
            .arg(rules.max_delay.map_or(0, |d| d.as_secs().max(1)))
            .arg(rules.grace.as_secs().max(1))
            .arg(now + timeout.as_secs().max(1) as i64)
            .arg(now)
            .arg(group)
            .invoke_async(&mut conn)
            .await?;
        if taken != 1 {
            return Ok(None);
        }
        let ids: Vec<String> = conn.zrange(&set, 0, -1).await?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(queue.task(id), "msg");
        }
        let raw: Vec<Option<Vec<u8>>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        let tasks = raw
            .into_iter()
            .flatten()
            .filter_map(|bytes| TaskMessage::decode(bytes.as_slice()).ok())
            .collect();
        Ok(Some(TakenGroup {
            group: group.to_owned(),
            set_id,
            ids,
            tasks,
        }))
    }

    /// Writes `aggregated` (a pending task of `queue`) in place of the set
    /// `taken`, deleting the set and its tasks, in one script. False when
    /// the set was reclaimed meanwhile (then nothing is written).
    pub async fn finish_group(
        &self,
        queue: &QueueKeys,
        taken: &TakenGroup,
        aggregated: &TaskMessage,
    ) -> Result<bool, BrokerError> {
        let mut inv = scripts::GROUP_DONE.prepare_invoke();
        inv.key(queue.aggregation_set(&taken.group, &taken.set_id))
            .key(queue.aggregation_sets())
            .key(queue.pending())
            .key(queue.wake())
            .key(queue.task(&aggregated.id))
            .arg(aggregated.encode_to_vec())
            .arg(&aggregated.id)
            .arg(now_nanos())
            .arg(taken.ids.len());
        for id in &taken.ids {
            inv.key(queue.task(id));
        }
        let done: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(done == 1)
    }

    /// Puts the tasks of `queue`'s abandoned aggregation sets back into
    /// their groups; returns how many tasks went back.
    pub async fn reclaim_groups(&self, queue: &QueueKeys) -> Result<u64, BrokerError> {
        let now = now_secs();
        let mut conn = self.conn.clone();
        let stale: Vec<String> = conn
            .zrangebyscore(queue.aggregation_sets(), "-inf", now)
            .await?;
        let prefix = format!("{}g:", queue.prefix());
        let mut back = 0;
        for set in stale {
            // asynq:{q}:g:<group>:<set id>; the id is a UUID (no colon).
            let Some((group, _)) = set
                .strip_prefix(&prefix)
                .and_then(|rest| rest.rsplit_once(':'))
            else {
                continue;
            };
            let n: i64 = scripts::GROUP_RECLAIM
                .key(queue.aggregation_sets())
                .key(&set)
                .key(queue.group(group))
                .key(queue.groups())
                .arg(now)
                .arg(group)
                .invoke_async(&mut conn)
                .await?;
            back += n.max(0) as u64;
        }
        Ok(back)
    }
}
