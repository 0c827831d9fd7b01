//! How a task ended in its sandbox, classified for the retry policy.
//!
//! A guest's own verdict ([`HandlerError`]) is kept apart from what the host
//! stopped ([`TrapCause`]) and from limits the host enforced around the call
//! ([`LimitExceeded`]); all three meet in [`Failure`], which says what the
//! broker should do ([`Failure::action`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How one execution ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The handler returned `ok` with these result bytes.
    Success {
        /// The result.
        #[serde(serialize_with = "bytes_as_text")]
        result: Vec<u8>,
    },
    /// The task failed.
    Failed {
        /// Why.
        failure: Failure,
    },
}

impl Outcome {
    /// The failure, if the task failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Success { .. } => None,
            Outcome::Failed { failure } => Some(failure),
        }
    }

    /// True when the handler succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success { .. })
    }
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    /// The handler returned an error.
    Handler {
        /// What it asked for.
        error: HandlerError,
    },
    /// The sandbox was stopped.
    Trap {
        /// Why.
        cause: TrapCause,
    },
    /// A limit the host enforces around the call was exceeded.
    Limit {
        /// Which.
        limit: LimitExceeded,
    },
    /// The host could not run the task at all (unknown task type, a pool
    /// exhausted, an instantiation error).
    Host {
        /// What went wrong.
        message: String,
    },
    /// The host was short of a resource the sandbox needs (file
    /// descriptors or memory, e.g. `EMFILE` while opening the granted
    /// directories): not the task's fault, so it runs again later without
    /// using up a retry ([`Action::Requeue`]).
    HostResources {
        /// What ran out.
        message: String,
    },
}

/// How long a task the host had no resources for waits before it runs
/// again ([`Action::Requeue`]).
pub const HOST_RESOURCES_DELAY: Duration = Duration::from_secs(5);

/// A handler's own error, as returned through `task-error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HandlerError {
    /// Retry, optionally after a given delay.
    Retry {
        /// The message.
        message: String,
        /// A delay instead of the backoff.
        #[serde(skip_serializing_if = "Option::is_none", with = "opt_millis")]
        delay: Option<Duration>,
    },
    /// Archive now.
    SkipRetry {
        /// The message.
        message: String,
    },
    /// Drop the task.
    Revoke {
        /// The message.
        message: String,
    },
    /// Run the task again after `after`, without using up a retry: what it
    /// depends on said "not now".
    RateLimited {
        /// The message.
        message: String,
        /// How long to wait.
        #[serde(serialize_with = "millis")]
        after: Duration,
    },
}

/// Why the host stopped a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrapCause {
    /// The fuel (instruction budget) ran out.
    OutOfFuel,
    /// The guest tried to grow memory past its limit.
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The wall-clock timeout or the task's deadline passed.
    Timeout,
    /// The task was cancelled.
    Cancelled,
    /// The guest panicked.
    Panic {
        /// The panic message, as the guest SDK reported it.
        message: String,
    },
    /// The guest's call stack overflowed.
    StackOverflow,
    /// The guest called `exit` with a non-zero status (`exit(0)` is a
    /// success with an empty result).
    Exit {
        /// The exit status.
        code: i32,
    },
    /// Any other trap (unreachable, out-of-bounds access, ...).
    Other {
        /// The trap as wasmtime describes it.
        message: String,
    },
}

/// A limit enforced around the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "which", rename_all = "snake_case")]
pub enum LimitExceeded {
    /// The payload is larger than `max_payload`.
    Payload {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The result is larger than `max_result`.
    Result {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// What the broker should do with a failed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Retry while retries are left (after `delay`, else the backoff).
    Retry {
        /// A delay the handler asked for.
        delay: Option<Duration>,
    },
    /// Archive now.
    Archive,
    /// Delete the task.
    Drop,
    /// Run the task again after `delay` without counting a retry: it did
    /// not fail, the host could not run it ([`Failure::HostResources`]), or
    /// its handler was rate limited ([`HandlerError::RateLimited`]). Never
    /// archives, whatever the retries left.
    Requeue {
        /// How long to wait first.
        delay: Duration,
    },
}

impl Failure {
    /// What the broker should do with the task.
    ///
    /// Handler errors say it themselves. Traps are retried: fuel, time and
    /// memory may depend on load or on data that changes, and a panic is
    /// retried as Asynq and Sidekiq retry one. Limits on payload and result
    /// size archive at once, since the same bytes would fail again. A host
    /// short of resources requeues the task without counting a retry.
    pub fn action(&self) -> Action {
        match self {
            Failure::Handler {
                error: HandlerError::Retry { delay, .. },
            } => Action::Retry { delay: *delay },
            Failure::Handler {
                error: HandlerError::SkipRetry { .. },
            } => Action::Archive,
            Failure::Handler {
                error: HandlerError::Revoke { .. },
            } => Action::Drop,
            Failure::Handler {
                error: HandlerError::RateLimited { after, .. },
            } => Action::Requeue { delay: *after },
            Failure::Trap { .. } | Failure::Host { .. } => Action::Retry { delay: None },
            Failure::Limit { .. } => Action::Archive,
            Failure::HostResources { .. } => Action::Requeue {
                delay: HOST_RESOURCES_DELAY,
            },
        }
    }

    /// A short name of the failure's cause, for metrics and listings:
    /// `retry`, `skip_retry`, `revoke`, `rate_limited`, `out_of_fuel`, `memory_limit`,
    /// `timeout`, `cancelled`, `panic`, `stack_overflow`, `exit`, `trap`,
    /// `payload_too_large`, `result_too_large`, `host` or `host_resources`.
    pub fn cause_name(&self) -> &'static str {
        match self {
            Failure::Handler { error } => match error {
                HandlerError::Retry { .. } => "retry",
                HandlerError::SkipRetry { .. } => "skip_retry",
                HandlerError::Revoke { .. } => "revoke",
                HandlerError::RateLimited { .. } => "rate_limited",
            },
            Failure::Trap { cause } => match cause {
                TrapCause::OutOfFuel => "out_of_fuel",
                TrapCause::MemoryLimit { .. } => "memory_limit",
                TrapCause::Timeout => "timeout",
                TrapCause::Cancelled => "cancelled",
                TrapCause::Panic { .. } => "panic",
                TrapCause::StackOverflow => "stack_overflow",
                TrapCause::Exit { .. } => "exit",
                TrapCause::Other { .. } => "trap",
            },
            Failure::Limit { limit } => match limit {
                LimitExceeded::Payload { .. } => "payload_too_large",
                LimitExceeded::Result { .. } => "result_too_large",
            },
            Failure::Host { .. } => "host",
            Failure::HostResources { .. } => "host_resources",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Handler { error } => match error {
                HandlerError::Retry {
                    message,
                    delay: None,
                } => write!(f, "handler error (retry): {message}"),
                HandlerError::Retry {
                    message,
                    delay: Some(d),
                } => write!(
                    f,
                    "handler error (retry in {}): {message}",
                    humantime::format_duration(*d)
                ),
                HandlerError::SkipRetry { message } => {
                    write!(f, "handler error (skip retry): {message}")
                }
                HandlerError::Revoke { message } => {
                    write!(f, "handler revoked the task: {message}")
                }
                HandlerError::RateLimited { message, after } => write!(
                    f,
                    "rate limited (runs again in {}, no retry used): {message}",
                    humantime::format_duration(*after)
                ),
            },
            Failure::Trap { cause } => match cause {
                TrapCause::OutOfFuel => f.write_str("trap: out of fuel"),
                TrapCause::MemoryLimit { limit } => {
                    write!(f, "trap: memory limit of {limit} bytes reached")
                }
                TrapCause::Timeout => f.write_str("trap: timeout"),
                TrapCause::Cancelled => f.write_str("trap: cancelled"),
                TrapCause::Panic { message } => write!(f, "trap: panic: {message}"),
                TrapCause::StackOverflow => f.write_str("trap: stack overflow"),
                TrapCause::Exit { code } => write!(f, "exit: the guest exited with status {code}"),
                TrapCause::Other { message } => write!(f, "trap: {message}"),
            },
            Failure::Limit { limit } => match limit {
                LimitExceeded::Payload { size, limit } => {
                    write!(
                        f,
                        "payload of {size} bytes is over the limit of {limit} bytes"
                    )
                }
                LimitExceeded::Result { size, limit } => {
                    write!(
                        f,
                        "result of {size} bytes is over the limit of {limit} bytes"
                    )
                }
            },
            Failure::Host { message } => write!(f, "host error: {message}"),
            Failure::HostResources { message } => {
                write!(f, "host short of resources: {message}")
            }
        }
    }
}

fn bytes_as_text<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => s.serialize_str(text),
        Err(_) => s.serialize_bytes(bytes),
    }
}

/// A duration as whole milliseconds.
fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

mod opt_millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u128(d.as_millis()),
            None => s.serialize_none(),
        }
    }
}
