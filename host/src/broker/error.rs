//! What can go wrong talking to Redis, and how a shared failure is handed
//! to every caller of a group-committed script call.

use std::time::Duration;

use super::ConnectError;

/// A broker error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A command or script failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something unexpected.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The operation is not allowed on these tasks.
    #[error("{0}")]
    Refused(String),
    /// A durable write reached fewer replicas than required in time: it is
    /// on the master, but a failover now could lose it.
    #[error(
        "not durable: {acked} of {wanted} replicas of queue {queue}'s master confirmed the write within {timeout:?} (it may be lost if the master fails now; retry with the same task id)"
    )]
    NotReplicated {
        /// Queue.
        queue: String,
        /// Replicas that confirmed.
        acked: u32,
        /// Replicas required (`wait_replicas`).
        wanted: u32,
        /// How long it waited.
        timeout: Duration,
    },
}

impl BrokerError {
    /// The same error for another caller (a shared script call failed for
    /// every task it carried): Redis errors are cloned, the rest carried
    /// as their message.
    pub(crate) fn share(&self) -> BrokerError {
        match self {
            BrokerError::Redis(e) => BrokerError::Redis(e.clone()),
            other => BrokerError::Protocol(other.to_string()),
        }
    }
}
