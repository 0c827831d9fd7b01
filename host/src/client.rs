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

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;

use crate::backoff::Backoff;
use crate::broker::{Broker, BrokerError, Enqueued, RedisConfig};
use crate::names::{NameError, check_name};
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
    /// The payload is larger than the client accepts.
    #[error(
        "payload too large: {size} bytes, the limit is {limit} bytes (raise it with Client::max_payload and the task type's max_payload)"
    )]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// The client's limit.
        limit: usize,
    },
    /// Durable mode: the task was written but not confirmed by enough
    /// replicas; enqueue it again with the same task id (a conflict then
    /// means it survived).
    #[error("task {id} in queue {queue} is not confirmed durable: {reason}")]
    NotDurable {
        /// Task id.
        id: String,
        /// Queue.
        queue: String,
        /// What WAIT reported.
        reason: String,
    },
    /// Redis failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// The largest payload a client accepts by default (1 MiB, the sandbox's
/// default limit too).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

pub use crate::names::{MAX_NAME_LEN, check_queue_name};

/// The longest unique lock, in seconds (about 136 years): longer TTLs are
/// cut to it, which Redis's `SET ... EX` takes.
const MAX_UNIQUE_TTL_SECS: u64 = u32::MAX as u64;

/// Enqueues tasks. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Client {
    broker: Broker,
    max_payload: usize,
}

impl Client {
    /// Connects to the cluster or single Redis in `config`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, BrokerError> {
        Ok(Self::from_broker(Broker::connect(config).await?))
    }

    /// A client over an existing broker connection.
    pub fn from_broker(broker: Broker) -> Self {
        Self {
            broker,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }

    /// Refuses payloads larger than `bytes` (default
    /// [`DEFAULT_MAX_PAYLOAD`]); keep it at or below the task types'
    /// `max_payload`, or workers will fail such tasks.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The broker underneath.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Enqueues one task. In durable mode (`wait_replicas` in the
    /// [`RedisConfig`]) it returns once the queue's replicas have it.
    ///
    /// Calls made at the same time into one queue (from many tasks of a web
    /// service, say) share one script call on Redis: a lone call goes out
    /// at once, and calls arriving while others are on the wire ride the
    /// next one. Each still gets its own outcome.
    pub async fn enqueue(
        &self,
        task: Task,
        options: TaskOptions,
    ) -> Result<TaskInfo, EnqueueError> {
        let info = self.write(task, options).await?;
        self.broker
            .wait_replicated(&info.queue)
            .await
            .map_err(|e| not_durable(&info, &e))?;
        Ok(info)
    }

    /// Enqueues many tasks; the tasks of one queue go out together, up to
    /// 256 per script call, and the calls are pipelined on each node's
    /// connection. Results are in input order. In durable mode
    /// one `WAIT` per queue confirms the whole batch.
    pub async fn enqueue_batch(
        &self,
        tasks: Vec<(Task, TaskOptions)>,
    ) -> Vec<Result<TaskInfo, EnqueueError>> {
        let mut results =
            join_all(tasks.into_iter().map(|(task, opts)| self.write(task, opts))).await;
        let queues: BTreeSet<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|info| info.queue.clone()))
            .collect();
        for queue in queues {
            if let Err(e) = self.broker.wait_replicated(&queue).await {
                for result in &mut results {
                    if let Ok(info) = result
                        && info.queue == queue
                    {
                        *result = Err(not_durable(info, &e));
                    }
                }
            }
        }
        results
    }

    /// Enqueues a guest's follow-up task with a mark that it was sent (see
    /// [`Broker::enqueue_follow_up`]): the worker's way to send follow-ups
    /// exactly once.
    #[cfg(feature = "runtime")]
    pub(crate) async fn enqueue_follow_up(
        &self,
        task: Task,
        options: TaskOptions,
    ) -> Result<TaskInfo, EnqueueError> {
        let info = self.write_as(task, options, Write::FollowUp).await?;
        self.broker
            .wait_replicated(&info.queue)
            .await
            .map_err(|e| not_durable(&info, &e))?;
        Ok(info)
    }

    /// Checks and writes one task, without waiting for replicas.
    async fn write(&self, task: Task, options: TaskOptions) -> Result<TaskInfo, EnqueueError> {
        self.write_as(task, options, Write::Plain).await
    }

    async fn write_as(
        &self,
        task: Task,
        options: TaskOptions,
        kind: Write,
    ) -> Result<TaskInfo, EnqueueError> {
        check_name("task type", &task.task_type)?;
        if let Some(queue) = &options.queue {
            check_queue_name(queue)?;
        }
        if let Some(id) = &options.task_id {
            check_name("task id", id)?;
        }
        if task.payload.len() > self.max_payload {
            return Err(EnqueueError::PayloadTooLarge {
                size: task.payload.len(),
                limit: self.max_payload,
            });
        }
        let msg = task::message(&task, &options);
        let at = task::process_at(&options);
        if let Some(group) = &options.group {
            check_name("group", group)?;
            if at.is_some() {
                return Err(EnqueueError::Invalid(
                    "a task added to a group runs when its group is aggregated: it cannot \
                     also be scheduled (process_at/process_in)"
                        .into(),
                ));
            }
        }
        // A scheduled unique task holds its lock from now until its unique
        // TTL past its process time, as in Asynq.
        let unique = options.unique.map(|ttl| {
            let wait = at.map_or(0, |at| (at - crate::broker::now_secs()).max(0));
            ttl.as_secs()
                .saturating_add(wait as u64)
                .clamp(1, MAX_UNIQUE_TTL_SECS)
        });
        // A dropped connection (Redis restarted, a failover) is retried a
        // few times with the same stamp, so the script knows a pending
        // task's earlier try that did land (see broker/lanes.rs).
        let since = crate::broker::now_nanos();
        let mut tries = 0;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(800));
        let outcome = loop {
            tries += 1;
            let written = match kind {
                Write::Plain if options.group.is_some() => {
                    self.broker.add_to_group(&msg, unique).await
                }
                Write::Plain => self.broker.enqueue_stamped(&msg, at, unique, since).await,
                #[cfg(feature = "runtime")]
                Write::FollowUp => self.broker.enqueue_follow_up(&msg, at, since).await,
            };
            match written {
                Err(BrokerError::Redis(e)) if tries < 4 && is_transient(&e) => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                // An id made here (a random UUID) can only be taken by an
                // earlier try of this very enqueue (a scheduled task's, or one
                // the connection layer sent again), which is a success.
                Ok(Enqueued::IdConflict) if options.task_id.is_none() => {
                    break Enqueued::Ok;
                }
                other => break other?,
            }
        };
        match outcome {
            Enqueued::Ok => Ok(TaskInfo {
                id: msg.id,
                queue: msg.queue,
                task_type: msg.r#type,
                state: if options.group.is_some() {
                    TaskState::Aggregating
                } else if at.is_some() {
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
}

/// How [`Client::write_as`] writes a task.
#[derive(Clone, Copy)]
enum Write {
    /// As any client does.
    Plain,
    /// A guest's follow-up, with its sent mark.
    #[cfg(feature = "runtime")]
    FollowUp,
}

/// Errors after which the same request may succeed on a new connection.
fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

fn not_durable(info: &TaskInfo, e: &BrokerError) -> EnqueueError {
    EnqueueError::NotDurable {
        id: info.id.clone(),
        queue: info.queue.clone(),
        reason: e.to_string(),
    }
}

impl From<NameError> for EnqueueError {
    fn from(e: NameError) -> Self {
        EnqueueError::Invalid(e.to_string())
    }
}
