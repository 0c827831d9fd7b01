//! Where follow-up tasks enqueued by a guest go.
//!
//! The runtime knows no broker: the worker hands it a [`TaskSink`] that
//! enqueues into Redis, while `wasq exec` uses a [`RecordingSink`] that only
//! records what the handler asked for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// A follow-up task a handler asked to enqueue, after the host checked its
/// grants and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// Task type.
    pub task_type: String,
    /// Payload bytes.
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// Target queue (granted to the parent's task type).
    pub queue: String,
    /// Max retries.
    pub max_retry: Option<u32>,
    /// Delay before it may run.
    pub process_in: Option<Duration>,
    /// Timeout.
    pub timeout: Option<Duration>,
    /// Caller-chosen id.
    pub task_id: Option<String>,
    /// Retention as completed.
    pub retention: Option<Duration>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The id of the task whose handler enqueued it.
    pub parent_id: String,
}

/// Why a sink refused a follow-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// A task with that id exists.
    #[error("task id conflict: {0}")]
    Conflict(String),
    /// The request is invalid.
    #[error("invalid task: {0}")]
    Invalid(String),
    /// The broker is unreachable.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// The future a sink returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<String, SinkError>> + Send + 'a>>;

/// Enqueues follow-up tasks on behalf of guests.
pub trait TaskSink: Send + Sync + 'static {
    /// Enqueues `task` and returns its id.
    fn enqueue(&self, task: FollowUp) -> SinkFuture<'_>;
}

/// A sink that enqueues nothing and remembers every request; the default of
/// a [`Runtime`](super::Runtime) until the worker gives it a broker.
#[derive(Debug, Default)]
pub struct RecordingSink {
    requests: Mutex<Vec<FollowUp>>,
}

impl RecordingSink {
    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<FollowUp> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl TaskSink for RecordingSink {
    fn enqueue(&self, task: FollowUp) -> SinkFuture<'_> {
        let id = task
            .task_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        Box::pin(async move { Ok(id) })
    }
}
