//! [`Task`], and what a running handler may ask of the host.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::__bindings::Task as RawTask;
use crate::__bindings::wasq::task::types::Member as RawMember;
use crate::__bindings::wasq::task::{context, enqueue as raw};
use crate::TaskError;

/// The task being handled.
#[derive(Debug, Clone)]
pub struct Task {
    raw: RawTask,
    /// The group's tasks, taken out of `raw`.
    members: Vec<Member>,
}

impl Task {
    pub(crate) fn from_raw(mut raw: RawTask) -> Self {
        let members = std::mem::take(&mut raw.members)
            .into_iter()
            .map(|raw| Member { raw })
            .collect();
        Self { raw, members }
    }

    /// Builds a task by hand, e.g. to unit-test a handler natively.
    ///
    /// ```
    /// let task = wasq_guest::Task::new("webhooks:sync", br#"{"data": 7}"#.to_vec());
    /// assert_eq!(task.queue(), "default");
    /// ```
    pub fn new(task_type: &str, payload: Vec<u8>) -> Self {
        Self::from_raw(RawTask {
            id: String::new(),
            task_type: task_type.to_owned(),
            queue: "default".to_owned(),
            payload,
            retried: 0,
            max_retry: 0,
            deadline_ms: None,
            headers: Vec::new(),
            group: None,
            members: Vec::new(),
        })
    }

    /// The same task as one that aggregates group `name` of `members`
    /// (each a task type and payload), e.g. to unit-test a group handler.
    ///
    /// ```
    /// let digest = wasq_guest::Task::new("email:digest", Vec::new())
    ///     .with_group("user:42", [("email:notify", br#"{"n": 1}"#.to_vec())]);
    /// assert_eq!(digest.group(), Some("user:42"));
    /// assert_eq!(digest.members()[0].task_type(), "email:notify");
    /// ```
    pub fn with_group(
        mut self,
        name: &str,
        members: impl IntoIterator<Item = (&'static str, Vec<u8>)>,
    ) -> Self {
        self.raw.group = Some(name.to_owned());
        self.members = members
            .into_iter()
            .enumerate()
            .map(|(i, (task_type, payload))| Member {
                raw: RawMember {
                    id: format!("member-{i}"),
                    task_type: task_type.to_owned(),
                    payload,
                    headers: Vec::new(),
                },
            })
            .collect();
        self
    }

    /// The task's id.
    pub fn id(&self) -> &str {
        &self.raw.id
    }

    /// The task type, e.g. `images:resize`.
    pub fn task_type(&self) -> &str {
        &self.raw.task_type
    }

    /// The queue the task came from.
    pub fn queue(&self) -> &str {
        &self.raw.queue
    }

    /// The raw payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.raw.payload
    }

    /// Decodes the payload as JSON into `T`.
    ///
    /// A payload that does not decode is a [`TaskError::skip_retry`]: the
    /// same bytes would fail again, so the task is archived at once.
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Hook { data: i64 }
    ///
    /// let task = wasq_guest::Task::new("webhooks:sync", br#"{"data": 7}"#.to_vec());
    /// assert_eq!(task.json::<Hook>().unwrap().data, 7);
    /// let bad = wasq_guest::Task::new("webhooks:sync", b"{}".to_vec());
    /// assert!(bad.json::<Hook>().unwrap_err().message().contains("missing field `data`"));
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        parse_json(&self.raw.payload, || self.raw.task_type.clone())
    }

    /// How many times this task was retried before this attempt.
    pub fn retried(&self) -> u32 {
        self.raw.retried
    }

    /// How many retries the task allows.
    pub fn max_retry(&self) -> u32 {
        self.raw.max_retry
    }

    /// The deadline, in milliseconds since the Unix epoch, if any.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.raw.deadline_ms
    }

    /// A header set by the enqueuer.
    pub fn header(&self, key: &str) -> Option<&str> {
        find_header(&self.raw.headers, key)
    }

    /// All headers.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// For a task that aggregates a group (enqueued with a group, see the
    /// queue's `group_*` settings): the group's name.
    pub fn group(&self) -> Option<&str> {
        self.raw.group.as_deref()
    }

    /// The tasks of the group this task aggregates, oldest first (empty for
    /// any other task).
    pub fn members(&self) -> &[Member] {
        &self.members
    }
}

/// One task of an aggregated group (see [`Task::members`]).
#[derive(Debug, Clone)]
pub struct Member {
    raw: RawMember,
}

impl Member {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.raw.id
    }

    /// Its task type.
    pub fn task_type(&self) -> &str {
        &self.raw.task_type
    }

    /// Its payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.raw.payload
    }

    /// Its payload parsed as JSON; a payload that does not parse is a
    /// [`TaskError::skip_retry`], as for [`Task::json`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        parse_json(&self.raw.payload, || {
            format!("group member {} ({})", self.raw.id, self.raw.task_type)
        })
    }

    /// A header set by its enqueuer.
    pub fn header(&self, key: &str) -> Option<&str> {
        find_header(&self.raw.headers, key)
    }
}

/// A payload decoded as JSON; one that does not decode is a
/// [`TaskError::skip_retry`] naming `what` it belongs to.
fn parse_json<T: DeserializeOwned>(
    payload: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, TaskError> {
    serde_json::from_slice(payload).map_err(|error| {
        TaskError::skip_retry(format!(
            "payload of {} is not the expected JSON: {error}",
            what()
        ))
    })
}

/// The value of the first header called `key`.
fn find_header<'a>(headers: &'a [(String, String)], key: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Options of a follow-up task for [`enqueue`].
///
/// ```
/// use std::time::Duration;
/// let opts = wasq_guest::EnqueueOptions::default()
///     .queue("webhooks")
///     .process_in(Duration::from_secs(60))
///     .max_retry(3);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    raw: Option<raw::Options>,
}

impl EnqueueOptions {
    fn raw(&mut self) -> &mut raw::Options {
        self.raw.get_or_insert_with(|| raw::Options {
            queue: None,
            max_retry: None,
            process_in_ms: None,
            timeout_ms: None,
            task_id: None,
            retention_ms: None,
            headers: Vec::new(),
        })
    }

    /// Enqueue into `queue` (it must be granted to the task type).
    pub fn queue(mut self, queue: &str) -> Self {
        self.raw().queue = Some(queue.to_owned());
        self
    }

    /// Allow at most `n` retries.
    pub fn max_retry(mut self, n: u32) -> Self {
        self.raw().max_retry = Some(n);
        self
    }

    /// Run no earlier than `delay` from now.
    pub fn process_in(mut self, delay: Duration) -> Self {
        self.raw().process_in_ms = Some(millis(delay));
        self
    }

    /// Give the follow-up task this timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.raw().timeout_ms = Some(millis(timeout));
        self
    }

    /// Use this task id; an existing id is a conflict.
    pub fn task_id(mut self, id: &str) -> Self {
        self.raw().task_id = Some(id.to_owned());
        self
    }

    /// Keep the task as completed for `retention` after it succeeds.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.raw().retention_ms = Some(millis(retention));
        self
    }

    /// Add a header.
    pub fn header(mut self, key: &str, value: &str) -> Self {
        self.raw().headers.push((key.to_owned(), value.to_owned()));
        self
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Why the host refused an [`enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueError {
    /// The task type is not granted that queue.
    Denied(String),
    /// The request is malformed or over a limit.
    Invalid(String),
    /// A task with that id exists.
    Conflict(String),
    /// The broker is unreachable; retrying the handler may help.
    Unavailable(String),
}

impl std::fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "enqueue denied: {m}"),
            Self::Invalid(m) => write!(f, "invalid enqueue: {m}"),
            Self::Conflict(m) => write!(f, "task id conflict: {m}"),
            Self::Unavailable(m) => write!(f, "broker unavailable: {m}"),
        }
    }
}

impl std::error::Error for EnqueueError {}

/// Enqueues a follow-up task of `task_type`; returns its id.
///
/// The host checks at once that the task type is granted the queue (an
/// [`EnqueueError`] says why not) and sends the task when the handler
/// returns `Ok`, before this task is acknowledged; a failed run sends
/// nothing. Without a chosen id, the id is derived from this task's id and
/// the call's place, so a run repeated after a crash sends nothing twice.
///
/// ```no_run
/// let id = wasq_guest::enqueue(
///     "webhooks:sync",
///     br#"{"data": 1}"#,
///     wasq_guest::EnqueueOptions::default().queue("webhooks"),
/// )?;
/// # Ok::<(), wasq_guest::EnqueueError>(())
/// ```
pub fn enqueue(
    task_type: &str,
    payload: &[u8],
    options: EnqueueOptions,
) -> Result<String, EnqueueError> {
    let mut options = options;
    let opts = options.raw().clone();
    raw::enqueue(task_type, payload, &opts).map_err(|error| match error {
        raw::EnqueueError::Denied(m) => EnqueueError::Denied(m),
        raw::EnqueueError::Invalid(m) => EnqueueError::Invalid(m),
        raw::EnqueueError::Conflict(m) => EnqueueError::Conflict(m),
        raw::EnqueueError::Unavailable(m) => EnqueueError::Unavailable(m),
    })
}

/// Reports progress of long work, 0 to 100 (larger values count as 100).
pub fn set_progress(percent: u8) {
    context::set_progress(percent.min(100));
}
