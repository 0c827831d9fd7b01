//! Tasks as the client sees them: what to enqueue ([`Task`]), how
//! ([`TaskOptions`], Asynq's options), and what came of it ([`TaskInfo`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::proto::TaskMessage;

/// Asynq's default max retry.
pub const DEFAULT_MAX_RETRY: u32 = 25;
/// Asynq's default timeout when a task has neither timeout nor deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The queue used when none is given.
pub const DEFAULT_QUEUE: &str = "default";

/// A task to enqueue: a type and a payload.
///
/// ```
/// let task = wasq::Task::json("notifications:email", &serde_json::json!({"to": 42, "from": 7}))?;
/// assert_eq!(task.task_type, "notifications:email");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task type; picks the handler.
    pub task_type: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Task {
    /// A task with raw payload bytes.
    pub fn new(task_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            task_type: task_type.into(),
            payload: payload.into(),
        }
    }

    /// A task whose payload is `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(
        task_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::new(task_type, serde_json::to_vec(value)?))
    }
}

/// How to enqueue a task (Asynq's options).
///
/// ```
/// use std::time::Duration;
/// let opts = wasq::TaskOptions::default()
///     .queue("images")
///     .max_retry(5)
///     .process_in(Duration::from_secs(60))
///     .unique(Duration::from_secs(3600));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Queue (default `default`).
    pub queue: Option<String>,
    /// Max retries (default 25).
    pub max_retry: Option<u32>,
    /// Timeout per attempt.
    pub timeout: Option<Duration>,
    /// Absolute deadline.
    pub deadline: Option<SystemTime>,
    /// Run no earlier than this.
    pub process_at: Option<SystemTime>,
    /// Reject duplicates (same type, payload and queue) for this long; for
    /// a scheduled task, this long after its process time. The lock is
    /// released early when the task succeeds or is revoked.
    pub unique: Option<Duration>,
    /// Task id (default: a random UUID).
    pub task_id: Option<String>,
    /// Keep the task as completed for this long after success.
    pub retention: Option<Duration>,
    /// Headers.
    pub headers: HashMap<String, String>,
    /// Add the task to this group of its queue, to be aggregated with the
    /// group's other tasks into one task (Asynq's task groups).
    pub group: Option<String>,
}

impl TaskOptions {
    /// Enqueue into `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Allow `n` retries.
    pub fn max_retry(mut self, n: u32) -> Self {
        self.max_retry = Some(n);
        self
    }
    /// Time out each attempt after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Stop at `deadline`.
    pub fn deadline(mut self, deadline: SystemTime) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// Run at `at`.
    pub fn process_at(mut self, at: SystemTime) -> Self {
        self.process_at = Some(at);
        self
    }
    /// Run after `delay`.
    pub fn process_in(mut self, delay: Duration) -> Self {
        self.process_at = Some(SystemTime::now() + delay);
        self
    }
    /// Reject duplicates for `ttl`.
    pub fn unique(mut self, ttl: Duration) -> Self {
        self.unique = Some(ttl);
        self
    }
    /// Use task id `id`.
    pub fn task_id(mut self, id: impl Into<String>) -> Self {
        self.task_id = Some(id.into());
        self
    }
    /// Keep as completed for `retention`.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }
    /// Add the task to group `name` of its queue: it waits, aggregating,
    /// until the group is due (see the queue's `group_*` settings) and then
    /// reaches a handler together with the group's other tasks, as one task.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }
    /// Add a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Ready to run.
    Pending,
    /// Running.
    Active,
    /// Waiting for its process-at time.
    Scheduled,
    /// Waiting to be retried.
    Retry,
    /// Failed for good.
    Archived,
    /// Done and kept for its retention.
    Completed,
    /// Waiting in a group to be aggregated with its other tasks.
    Aggregating,
}

impl std::str::FromStr for TaskState {
    type Err = String;

    /// The names [`Display`](std::fmt::Display) writes, as stored in a task
    /// hash's `state` field.
    ///
    /// ```
    /// use wasq::TaskState;
    /// assert_eq!("retry".parse::<TaskState>(), Ok(TaskState::Retry));
    /// assert!("done".parse::<TaskState>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => TaskState::Pending,
            "active" => TaskState::Active,
            "scheduled" => TaskState::Scheduled,
            "retry" => TaskState::Retry,
            "archived" => TaskState::Archived,
            "completed" => TaskState::Completed,
            "aggregating" => TaskState::Aggregating,
            other => return Err(format!("unknown task state {other:?}")),
        })
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            TaskState::Pending => "pending",
            TaskState::Active => "active",
            TaskState::Scheduled => "scheduled",
            TaskState::Retry => "retry",
            TaskState::Archived => "archived",
            TaskState::Completed => "completed",
            TaskState::Aggregating => "aggregating",
        };
        f.write_str(s)
    }
}

/// What an enqueue produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// Task type.
    pub task_type: String,
    /// State right after the enqueue.
    pub state: TaskState,
    /// When it will be processed, Unix seconds.
    pub next_process_at: i64,
    /// Max retries.
    pub max_retry: u32,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Builds the `TaskMessage` Asynq stores, applying Asynq's defaults.
pub(crate) fn message(task: &Task, opts: &TaskOptions) -> TaskMessage {
    let queue = opts
        .queue
        .clone()
        .unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
    let deadline = opts.deadline.map(unix).unwrap_or(0);
    let timeout = match (opts.timeout, deadline) {
        (Some(t), _) => t.as_secs().max(1) as i64,
        (None, 0) => DEFAULT_TIMEOUT.as_secs() as i64,
        (None, _) => 0,
    };
    let unique_key = if opts.unique.is_some() {
        crate::keys::QueueKeys::new(&queue).unique(&task.task_type, &task.payload)
    } else {
        String::new()
    };
    TaskMessage {
        r#type: task.task_type.clone(),
        payload: task.payload.clone(),
        id: opts
            .task_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        queue,
        retry: opts.max_retry.unwrap_or(DEFAULT_MAX_RETRY) as i32,
        timeout,
        deadline,
        unique_key,
        retention: opts.retention.map(|r| r.as_secs() as i64).unwrap_or(0),
        headers: opts.headers.clone(),
        group_key: opts.group.clone().unwrap_or_default(),
        ..TaskMessage::default()
    }
}

/// The process-at time of options, Unix seconds, if in the future.
pub(crate) fn process_at(opts: &TaskOptions) -> Option<i64> {
    let at = unix(opts.process_at?);
    (at > unix(SystemTime::now())).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_asynqs_defaults() {
        let task = Task::new("notifications:email", b"{}".to_vec());
        let msg = message(&task, &TaskOptions::default());
        assert_eq!(msg.queue, "default");
        assert_eq!(msg.retry, 25);
        assert_eq!(
            msg.timeout,
            30 * 60,
            "30 min when neither timeout nor deadline"
        );
        assert_eq!((msg.deadline, msg.retention), (0, 0));
        assert!(msg.unique_key.is_empty());
        assert_eq!(msg.id.len(), 36, "a UUID: {}", msg.id);
        assert_eq!(process_at(&TaskOptions::default()), None);
    }

    #[test]
    fn options_land_in_the_message() {
        let task = Task::new("images:resize", b"{\"w\": 1}".to_vec());
        let deadline = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let opts = TaskOptions::default()
            .queue("images")
            .max_retry(3)
            .deadline(deadline)
            .unique(Duration::from_secs(60))
            .task_id("resize-1")
            .retention(Duration::from_secs(3600))
            .header("trace", "abc");
        let msg = message(&task, &opts);
        assert_eq!(
            (msg.queue.as_str(), msg.id.as_str()),
            ("images", "resize-1")
        );
        assert_eq!(msg.retry, 3);
        // A deadline alone: no default timeout, as in Asynq.
        assert_eq!((msg.deadline, msg.timeout), (2_000_000_000, 0));
        assert_eq!(msg.retention, 3600);
        assert_eq!(
            msg.unique_key,
            crate::keys::QueueKeys::new("images").unique("images:resize", b"{\"w\": 1}")
        );
        assert_eq!(msg.headers.get("trace").map(String::as_str), Some("abc"));
        let timed = message(
            &task,
            &TaskOptions::default().timeout(Duration::from_secs(90)),
        );
        assert_eq!((timed.timeout, timed.deadline), (90, 0));
        // Only a future process-at schedules.
        let later = SystemTime::now() + Duration::from_secs(600);
        assert_eq!(
            process_at(&TaskOptions::default().process_at(later)),
            Some(unix(later))
        );
        let past = SystemTime::now() - Duration::from_secs(600);
        assert_eq!(process_at(&TaskOptions::default().process_at(past)), None);
    }
}
