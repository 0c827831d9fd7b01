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
    /// The group the task is aggregated in (Asynq's task groups), if any.
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

/// wasq only: the payload of a task that aggregates a group, marked by the
/// header [`GROUP_HEADER`] naming the group. The members are kept as they
/// were enqueued, oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskGroup {
    /// The group's name.
    #[prost(string, tag = "1")]
    pub group: String,
    /// Its tasks, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub tasks: Vec<TaskMessage>,
}

/// The header that marks a task aggregating a group (its value is the
/// group's name); the payload is then a [`TaskGroup`].
pub const GROUP_HEADER: &str = "wasq-group";

/// A protobuf `google.protobuf.Timestamp` (prost's own; `From<SystemTime>`).
pub use prost_types::Timestamp;

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

#[cfg(test)]
mod tests {
    //! Each message is encoded with every field set and compared with bytes
    //! written out by hand from Asynq's `internal/proto/asynq.proto` (and
    //! `google/protobuf/timestamp.proto`), so a wrong field number or wire
    //! type fails. A key byte is `field_number << 3 | wire_type`, wire type
    //! 0 for varints (ints, bools) and 2 for lengths (strings, bytes,
    //! messages, map entries). Varints are 7 bits a byte, low bits first,
    //! the high bit set on every byte but the last: 300 is `ac 02`.
    //! Each map has one entry, so the encoding does not depend on the
    //! `HashMap`'s order.

    use prost::Message;

    use super::*;

    /// Encodes `msg`, compares it with `expected`, and decodes `expected`
    /// back into `msg`.
    fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(
        msg: &M,
        expected: &[&[u8]],
    ) {
        let expected = expected.concat();
        assert_eq!(msg.encode_to_vec(), expected, "encoding of {msg:?}");
        assert_eq!(&M::decode(expected.as_slice()).unwrap(), msg);
    }

    #[test]
    fn timestamp_matches_googles_field_numbers() {
        let ts = Timestamp {
            seconds: 300,
            nanos: 5,
        };
        assert_wire(
            &ts,
            &[
                &[0x08, 0xac, 0x02], // 1 seconds (int64), varint 300
                &[0x10, 0x05],       // 2 nanos (int32), varint 5
            ],
        );
    }

    #[test]
    fn task_message_matches_asynq_field_numbers() {
        let msg = TaskMessage {
            r#type: "email".into(),
            payload: b"{}".to_vec(),
            id: "abc".into(),
            queue: "q".into(),
            retry: 25,
            retried: 3,
            error_msg: "boom".into(),
            last_failed_at: 200,
            timeout: 60,
            deadline: 300,
            unique_key: "u".into(),
            group_key: "g".into(),
            retention: 3600,
            completed_at: 1,
            headers: [("k".to_owned(), "v".to_owned())].into(),
        };
        assert_wire(
            &msg,
            &[
                &[0x0a, 5],
                b"email", // 1 type (string)
                &[0x12, 2],
                b"{}", // 2 payload (bytes)
                &[0x1a, 3],
                b"abc", // 3 id (string)
                &[0x22, 1],
                b"q",        // 4 queue (string)
                &[0x28, 25], // 5 retry (int32)
                &[0x30, 3],  // 6 retried (int32)
                &[0x3a, 4],
                b"boom",             // 7 error_msg (string)
                &[0x40, 60],         // 8 timeout (int64)
                &[0x48, 0xac, 0x02], // 9 deadline (int64), 300
                &[0x52, 1],
                b"u",                // 10 unique_key (string)
                &[0x58, 0xc8, 0x01], // 11 last_failed_at (int64), 200
                &[0x60, 0x90, 0x1c], // 12 retention (int64), 3600
                &[0x68, 1],          // 13 completed_at (int64)
                &[0x72, 1],
                b"g", // 14 group_key (string)
                // 15 headers (map<string, string>): one entry of 6 bytes,
                // key (1, string) "k", value (2, string) "v".
                &[0x7a, 6, 0x0a, 1],
                b"k",
                &[0x12, 1],
                b"v",
            ],
        );
    }

    #[test]
    fn server_info_matches_asynq_field_numbers() {
        let info = ServerInfo {
            host: "h".into(),
            pid: 42,
            server_id: "s".into(),
            concurrency: 10,
            queues: [("q".to_owned(), 6)].into(),
            strict_priority: true,
            status: "active".into(),
            start_time: Some(Timestamp {
                seconds: 300,
                nanos: 5,
            }),
            active_worker_count: 3,
        };
        assert_wire(
            &info,
            &[
                &[0x0a, 1],
                b"h",        // 1 host (string)
                &[0x10, 42], // 2 pid (int32)
                &[0x1a, 1],
                b"s",        // 3 server_id (string)
                &[0x20, 10], // 4 concurrency (int32)
                // 5 queues (map<string, int32>): one entry of 5 bytes, key
                // (1, string) "q", value (2, varint) 6.
                &[0x2a, 5, 0x0a, 1],
                b"q",
                &[0x10, 6],
                &[0x30, 1], // 6 strict_priority (bool)
                &[0x3a, 6],
                b"active", // 7 status (string)
                // 8 start_time (Timestamp): 5 bytes, seconds 300, nanos 5.
                &[0x42, 5, 0x08, 0xac, 0x02, 0x10, 5],
                &[0x48, 3], // 9 active_worker_count (int32)
            ],
        );
    }

    #[test]
    fn worker_info_matches_asynq_field_numbers() {
        let info = WorkerInfo {
            host: "h".into(),
            pid: 42,
            server_id: "s".into(),
            task_id: "t".into(),
            task_type: "email".into(),
            task_payload: b"{}".to_vec(),
            queue: "q".into(),
            start_time: Some(Timestamp {
                seconds: 300,
                nanos: 5,
            }),
            deadline: Some(Timestamp {
                seconds: 400,
                nanos: 7,
            }),
        };
        assert_wire(
            &info,
            &[
                &[0x0a, 1],
                b"h",        // 1 host (string)
                &[0x10, 42], // 2 pid (int32)
                &[0x1a, 1],
                b"s", // 3 server_id (string)
                &[0x22, 1],
                b"t", // 4 task_id (string)
                &[0x2a, 5],
                b"email", // 5 task_type (string)
                &[0x32, 2],
                b"{}", // 6 task_payload (bytes)
                &[0x3a, 1],
                b"q", // 7 queue (string)
                // 8 start_time (Timestamp): seconds 300, nanos 5.
                &[0x42, 5, 0x08, 0xac, 0x02, 0x10, 5],
                // 9 deadline (Timestamp): seconds 400, nanos 7.
                &[0x4a, 5, 0x08, 0x90, 0x03, 0x10, 7],
            ],
        );
    }
}

/// A periodic entry as a scheduler registers it in
/// `asynq:schedulers:{<scheduler id>}`, for Asynq's CLI and web UI.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchedulerEntry {
    /// Entry id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The cron spec.
    #[prost(string, tag = "2")]
    pub spec: String,
    /// Task type.
    #[prost(string, tag = "3")]
    pub task_type: String,
    /// Payload.
    #[prost(bytes = "vec", tag = "4")]
    pub task_payload: Vec<u8>,
    /// Options as Asynq prints them: `Queue("q")`, `MaxRetry(3)`, ...
    #[prost(string, repeated, tag = "5")]
    pub enqueue_options: Vec<String>,
    /// The next tick.
    #[prost(message, optional, tag = "6")]
    pub next_enqueue_time: Option<prost_types::Timestamp>,
    /// The previous tick (Go's zero time, -62135596800 s, for none).
    #[prost(message, optional, tag = "7")]
    pub prev_enqueue_time: Option<prost_types::Timestamp>,
}

/// One enqueue of a periodic entry, in
/// `asynq:scheduler_history:<entry id>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchedulerEnqueueEvent {
    /// The enqueued task's id.
    #[prost(string, tag = "1")]
    pub task_id: String,
    /// When it was enqueued.
    #[prost(message, optional, tag = "2")]
    pub enqueue_time: Option<prost_types::Timestamp>,
}
