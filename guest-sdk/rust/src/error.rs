//! [`TaskError`]: what the host does with a task whose handler failed.

use std::fmt;
use std::time::Duration;

use crate::__bindings::TaskError as RawTaskError;
use crate::__bindings::wasq::task::types::{RateLimited, Retry};

/// A handler's failure, and what the host should do about it.
///
/// ```
/// use std::time::Duration;
/// use wasq_guest::TaskError;
///
/// // Retry with the task type's backoff while retries are left.
/// let busy = TaskError::retry("SMTP server busy");
/// // Retry in 30 seconds instead.
/// let later = TaskError::retry("rate limited").after(Duration::from_secs(30));
/// // Archive now: the payload will never work.
/// let bad = TaskError::skip_retry("unknown template");
/// // Drop the task: nobody wants it any more.
/// let gone = TaskError::revoke("account deleted");
/// // Run it again in 2 seconds without using up a retry (an API said 429).
/// let throttled = TaskError::rate_limited(Duration::from_secs(2)).with_message("API said 429");
/// assert_eq!(later.to_string(), "retry in 30s: rate limited");
/// assert_eq!(throttled.to_string(), "rate limited for 2s: API said 429");
/// # let _ = (busy, bad, gone);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Retry(Option<Duration>),
    SkipRetry,
    Revoke,
    RateLimited(Duration),
}

impl TaskError {
    /// Retry the task with backoff while retries are left, then archive it.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Retry(None),
            message: message.into(),
        }
    }

    /// Archive the task now: retrying cannot help.
    pub fn skip_retry(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::SkipRetry,
            message: message.into(),
        }
    }

    /// Drop the task: it is no longer wanted, and nothing is archived.
    pub fn revoke(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Revoke,
            message: message.into(),
        }
    }

    /// Run the task again after `after` without using up a retry or
    /// counting a failure: what it depends on said "not now" (an API's 429,
    /// a quota). The host puts it back in line; its retries are untouched.
    pub fn rate_limited(after: Duration) -> Self {
        Self {
            kind: Kind::RateLimited(after),
            message: "rate limited".to_owned(),
        }
    }

    /// The same error with another message.
    pub fn with_message(self, message: impl Into<String>) -> Self {
        Self {
            kind: self.kind,
            message: message.into(),
        }
    }

    /// Make this a retry after `delay` instead of the task type's backoff.
    pub fn after(self, delay: Duration) -> Self {
        Self {
            kind: Kind::Retry(Some(delay)),
            message: self.message,
        }
    }

    /// The error's message, as stored with the task.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_raw(self) -> RawTaskError {
        match self.kind {
            Kind::Retry(delay) => RawTaskError::Retry(Retry {
                message: self.message,
                delay_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }),
            Kind::SkipRetry => RawTaskError::SkipRetry(self.message),
            Kind::Revoke => RawTaskError::Revoke(self.message),
            Kind::RateLimited(after) => RawTaskError::RateLimited(RateLimited {
                message: self.message,
                after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Retry(None) => write!(f, "retry: {}", self.message),
            Kind::Retry(Some(delay)) => {
                write!(f, "retry in {}s: {}", delay.as_secs(), self.message)
            }
            Kind::SkipRetry => write!(f, "skip retry: {}", self.message),
            Kind::Revoke => write!(f, "revoke: {}", self.message),
            Kind::RateLimited(after) => {
                write!(f, "rate limited for {}s: {}", after.as_secs(), self.message)
            }
        }
    }
}

/// Any error converts into a retry, so `?` works in handlers. `TaskError`
/// itself deliberately does not implement `std::error::Error`, which keeps
/// this conversion coherent (as `anyhow::Error` does).
impl<E: std::error::Error> From<E> for TaskError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::retry(message)
    }
}
