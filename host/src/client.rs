//! The client: enqueue tasks into Redis. Needs no wasm runtime, so a web
//! service that only enqueues builds `wasq` with `default-features = false`.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasq::{Client, RedisConfig, Task, TaskOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect(&RedisConfig::cluster(&["127.0.0.1:7000", "127.0.0.1:7001"])).await?;
//! let info = client
//!     .enqueue(
//!         Task::json("notifications:email", &serde_json::json!({"to": 42, "from": 7}))?,
//!         TaskOptions::default().queue("notifications").max_retry(3),
//!     )
//!     .await?;
//! println!("enqueued {} into {} ({})", info.id, info.queue, info.state);
//!
//! // Later, once per hour at most:
//! client
//!     .enqueue(
//!         Task::new("webhooks:sync", br#"{"data": 1}"#.to_vec()),
//!         TaskOptions::default().queue("webhooks").unique(Duration::from_secs(3600)),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```

use futures::future::join_all;

use crate::broker::{Broker, BrokerError, Enqueued, RedisConfig};
use crate::task::{self, Task, TaskInfo, TaskOptions, TaskState};

/// Why an enqueue was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// A task with the same type and payload holds the unique lock.
    #[error(
        "duplicate task: {task_type} with this payload is already enqueued in queue {queue} (unique)"
    )]
    Duplicate {
        /// Task type.
        task_type: String,
        /// Queue.
        queue: String,
    },
    /// A task with this id exists in the queue.
    #[error("task id conflict: a task with id {id} already exists in queue {queue}")]
    IdConflict {
        /// Task id.
        id: String,
        /// Queue.
        queue: String,
    },
    /// The task or its options are invalid.
    #[error("invalid task: {0}")]
    Invalid(String),
    /// Redis failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Enqueues tasks. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Client {
    broker: Broker,
}

impl Client {
    /// Connects to the cluster or single Redis in `config`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, BrokerError> {
        Ok(Self {
            broker: Broker::connect(config).await?,
        })
    }

    /// A client over an existing broker connection.
    pub fn from_broker(broker: Broker) -> Self {
        Self { broker }
    }

    /// The broker underneath.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Enqueues one task.
    pub async fn enqueue(
        &self,
        task: Task,
        options: TaskOptions,
    ) -> Result<TaskInfo, EnqueueError> {
        if task.task_type.is_empty() {
            return Err(EnqueueError::Invalid("task type is empty".into()));
        }
        if options.queue.as_deref() == Some("") {
            return Err(EnqueueError::Invalid("queue name is empty".into()));
        }
        let msg = task::message(&task, &options);
        let at = task::process_at(&options);
        let unique = options.unique.map(|ttl| ttl.as_secs().max(1));
        match self.broker.enqueue(&msg, at, unique).await? {
            Enqueued::Ok => Ok(TaskInfo {
                id: msg.id,
                queue: msg.queue,
                task_type: msg.r#type,
                state: if at.is_some() {
                    TaskState::Scheduled
                } else {
                    TaskState::Pending
                },
                next_process_at: at.unwrap_or_else(crate::broker::now_secs),
                max_retry: msg.retry as u32,
            }),
            Enqueued::IdConflict => Err(EnqueueError::IdConflict {
                id: msg.id,
                queue: msg.queue,
            }),
            Enqueued::Duplicate => Err(EnqueueError::Duplicate {
                task_type: msg.r#type,
                queue: msg.queue,
            }),
        }
    }

    /// Enqueues many tasks; requests go out together and are pipelined on
    /// each node's connection. Results are in input order.
    pub async fn enqueue_batch(
        &self,
        tasks: Vec<(Task, TaskOptions)>,
    ) -> Vec<Result<TaskInfo, EnqueueError>> {
        join_all(
            tasks
                .into_iter()
                .map(|(task, opts)| self.enqueue(task, opts)),
        )
        .await
    }
}
