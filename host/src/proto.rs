//! Asynq's protobuf messages, field for field, so tasks written by Asynq's Go
//! client run on wasq and Asynq's CLI and web UI can read wasq's queues.

/// A task as stored in the `msg` field of `asynq:{<queue>}:t:<id>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskMessage {
    /// Task type.
    #[prost(string, tag = "1")]
    pub r#type: String,
    /// Payload.
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    /// Task id.
    #[prost(string, tag = "3")]
    pub id: String,
    /// Queue.
    #[prost(string, tag = "4")]
    pub queue: String,
    /// Max retries.
    #[prost(int32, tag = "5")]
    pub retry: i32,
    /// Retries so far.
    #[prost(int32, tag = "6")]
    pub retried: i32,
    /// Last error.
    #[prost(string, tag = "7")]
    pub error_msg: String,
    /// Last failure, Unix seconds (0: none).
    #[prost(int64, tag = "11")]
    pub last_failed_at: i64,
    /// Timeout in seconds (0: none).
    #[prost(int64, tag = "8")]
    pub timeout: i64,
    /// Deadline, Unix seconds (0: none).
    #[prost(int64, tag = "9")]
    pub deadline: i64,
    /// The uniqueness lock key, if any.
    #[prost(string, tag = "10")]
    pub unique_key: String,
    /// Aggregation group (unused by wasq, kept intact).
    #[prost(string, tag = "14")]
    pub group_key: String,
    /// Retention as completed, seconds.
    #[prost(int64, tag = "12")]
    pub retention: i64,
    /// Completion time, Unix seconds.
    #[prost(int64, tag = "13")]
    pub completed_at: i64,
    /// Headers.
    #[prost(map = "string, string", tag = "15")]
    pub headers: std::collections::HashMap<String, String>,
}

/// A protobuf `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// A running server, as stored at `asynq:servers:{<host>:<pid>:<id>}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerInfo {
    /// Host name.
    #[prost(string, tag = "1")]
    pub host: String,
    /// Process id.
    #[prost(int32, tag = "2")]
    pub pid: i32,
    /// Server id.
    #[prost(string, tag = "3")]
    pub server_id: String,
    /// Concurrency.
    #[prost(int32, tag = "4")]
    pub concurrency: i32,
    /// Queues and their priorities.
    #[prost(map = "string, int32", tag = "5")]
    pub queues: std::collections::HashMap<String, i32>,
    /// Strict priority.
    #[prost(bool, tag = "6")]
    pub strict_priority: bool,
    /// "active", "stopped".
    #[prost(string, tag = "7")]
    pub status: String,
    /// Start time.
    #[prost(message, optional, tag = "8")]
    pub start_time: Option<Timestamp>,
    /// Tasks running now.
    #[prost(int32, tag = "9")]
    pub active_worker_count: i32,
}

/// A task being processed, a field of `asynq:workers:{<host>:<pid>:<id>}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkerInfo {
    /// Host name.
    #[prost(string, tag = "1")]
    pub host: String,
    /// Process id.
    #[prost(int32, tag = "2")]
    pub pid: i32,
    /// Server id.
    #[prost(string, tag = "3")]
    pub server_id: String,
    /// Task id.
    #[prost(string, tag = "4")]
    pub task_id: String,
    /// Task type.
    #[prost(string, tag = "5")]
    pub task_type: String,
    /// Payload.
    #[prost(bytes = "vec", tag = "6")]
    pub task_payload: Vec<u8>,
    /// Queue.
    #[prost(string, tag = "7")]
    pub queue: String,
    /// Start time.
    #[prost(message, optional, tag = "8")]
    pub start_time: Option<Timestamp>,
    /// Deadline.
    #[prost(message, optional, tag = "9")]
    pub deadline: Option<Timestamp>,
}

impl Timestamp {
    /// A timestamp of a `SystemTime`.
    pub fn from_system(t: std::time::SystemTime) -> Self {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn task_message_round_trips_and_matches_asynq_field_numbers() {
        let msg = TaskMessage {
            r#type: "email".into(),
            payload: b"{}".to_vec(),
            id: "abc".into(),
            queue: "q".into(),
            retry: 25,
            ..Default::default()
        };
        let bytes = msg.encode_to_vec();
        // field 1 (type), wire type 2: tag byte 0x0a, then length 5.
        assert_eq!(&bytes[..7], b"\x0a\x05email");
        assert_eq!(TaskMessage::decode(bytes.as_slice()).unwrap(), msg);
    }
}
