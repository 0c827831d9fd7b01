//! Every Redis key wasq uses, built in one place.
//!
//! Asynq's layout: each queue's keys carry the hash tag `{<queue>}`, so a
//! whole queue lives in one cluster slot and every script on it runs on one
//! node.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `asynq:{q}:t:<id>` | hash | `msg` (protobuf `TaskMessage`), `state`, `pending_since` (ns), `unique_key`, `result`; wasq adds `lease_owner` (the server id holding the lease) while active |
//! | `asynq:{q}:pending` | list | ids; LPUSH to enqueue, taken from the right |
//! | `asynq:{q}:active` | list | ids being processed |
//! | `asynq:{q}:lease` | zset | id → lease expiry (Unix s); extended by heartbeats |
//! | `asynq:{q}:scheduled` | zset | id → process-at (Unix s) |
//! | `asynq:{q}:retry` | zset | id → retry-at (Unix s) |
//! | `asynq:{q}:archived` | zset | id → archived-at (Unix s) |
//! | `asynq:{q}:completed` | zset | id → delete-at (Unix s), tasks kept for their retention |
//! | `asynq:{q}:paused` | string | present while the queue is paused |
//! | `asynq:{q}:processed`, `:failed` | string | totals |
//! | `asynq:{q}:processed:<yyyy-mm-dd>`, `:failed:<date>` | string | daily counts (UTC, expire after 90 days) |
//! | `asynq:{q}:unique:<type>:<md5 hex of payload>` | string | uniqueness lock → task id, with a TTL (no digest for an empty payload, as Asynq) |
//! | `asynq:{q}:sent:<id>` | string | wasq only: a guest's follow-up task `id` was sent (→ its id); deleted once the parent is acknowledged, else expires after a week |
//! | `asynq:{q}:cron:<entry>` | string | wasq only: the latest tick (Unix s) of periodic entry `<entry>` enqueued into the queue; a tick at or before it is never enqueued again |
//! | `asynq:schedulers` | zset | registered schedulers' entry lists → expiry (Unix s) |
//! | `asynq:schedulers:{<host>:<pid>:<id>}` | list | a scheduler's periodic entries (protobuf `SchedulerEntry`), with a TTL |
//! | `asynq:scheduler_history:<entry id>` | zset | `SchedulerEnqueueEvent` (protobuf) → enqueue time (Unix s), the newest 1000 |
//! | `asynq:{q}:wake` | list | wasq only: a token pushed when work becomes pending, so idle workers block instead of polling |
//! | `asynq:queues` | set | every queue name |
//! | `asynq:servers`, `asynq:workers` | zset | registered servers and their worker hashes → expiry |
//! | `asynq:servers:{<host>:<pid>:<id>}` | string | a server's `ServerInfo` (protobuf), with a TTL |
//! | `asynq:workers:{<host>:<pid>:<id>}` | hash | task id → `WorkerInfo` (protobuf) of each task it runs, with a TTL |

use md5::{Digest, Md5};

/// Keys of one queue.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    name: String,
    prefix: String,
}

impl QueueKeys {
    /// Keys of queue `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            prefix: format!("asynq:{{{name}}}:"),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `asynq:{q}:`, which every key of the queue starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// `asynq:{q}:t:<id>`
    pub fn task(&self, id: &str) -> String {
        self.key(&format!("t:{id}"))
    }
    /// `asynq:{q}:pending`
    pub fn pending(&self) -> String {
        self.key("pending")
    }
    /// `asynq:{q}:active`
    pub fn active(&self) -> String {
        self.key("active")
    }
    /// `asynq:{q}:lease`
    pub fn lease(&self) -> String {
        self.key("lease")
    }
    /// `asynq:{q}:scheduled`
    pub fn scheduled(&self) -> String {
        self.key("scheduled")
    }
    /// `asynq:{q}:retry`
    pub fn retry(&self) -> String {
        self.key("retry")
    }
    /// `asynq:{q}:archived`
    pub fn archived(&self) -> String {
        self.key("archived")
    }
    /// `asynq:{q}:completed`
    pub fn completed(&self) -> String {
        self.key("completed")
    }
    /// `asynq:{q}:paused`
    pub fn paused(&self) -> String {
        self.key("paused")
    }
    /// `asynq:{q}:wake`
    pub fn wake(&self) -> String {
        self.key("wake")
    }
    /// `asynq:{q}:g:<group>`: Asynq's zset of a group's task ids (score:
    /// when each was added, Unix seconds).
    pub fn group(&self, group: &str) -> String {
        self.key(&format!("g:{group}"))
    }
    /// `asynq:{q}:groups`: Asynq's set of the queue's group names.
    pub fn groups(&self) -> String {
        self.key("groups")
    }
    /// `asynq:{q}:g:<group>:<set id>`: Asynq's aggregation set, the tasks
    /// of a group taken out to be aggregated into one task.
    pub fn aggregation_set(&self, group: &str, set_id: &str) -> String {
        self.key(&format!("g:{group}:{set_id}"))
    }
    /// `asynq:{q}:aggregation_sets`: Asynq's zset of aggregation set keys
    /// (score: when the set counts as abandoned, Unix seconds).
    pub fn aggregation_sets(&self) -> String {
        self.key("aggregation_sets")
    }
    /// `asynq:{q}:limit`: wasq only, the queue's limits as the workers
    /// configure them (`rate`, `burst`, `max_running`), the rate's token
    /// bucket (`tokens`, `at`) and the claims each limit deferred
    /// (`deferred_rate`, `deferred_running`).
    pub fn limit(&self) -> String {
        self.key("limit")
    }
    /// `asynq:{q}:processed`
    pub fn processed_total(&self) -> String {
        self.key("processed")
    }
    /// `asynq:{q}:failed`
    pub fn failed_total(&self) -> String {
        self.key("failed")
    }
    /// `asynq:{q}:processed:<date>`
    pub fn processed_on(&self, date: &str) -> String {
        self.key(&format!("processed:{date}"))
    }
    /// `asynq:{q}:failed:<date>`
    pub fn failed_on(&self, date: &str) -> String {
        self.key(&format!("failed:{date}"))
    }
    /// `asynq:{q}:unique:<type>:<md5 hex of payload>`, as Asynq builds it
    /// (with nothing after the type when there is no payload, as Asynq's
    /// Go client does for a task made with a nil payload).
    /// `asynq:{q}:sent:<id>`: wasq only, the mark that a guest's follow-up
    /// task `id` was sent, kept until its parent is acknowledged.
    pub fn sent(&self, id: &str) -> String {
        self.key(&format!("sent:{id}"))
    }

    /// `asynq:{q}:cron:<entry>`: wasq only, the latest tick (Unix seconds)
    /// of periodic entry `entry` enqueued into this queue.
    pub fn last_tick(&self, entry: &str) -> String {
        self.key(&format!("cron:{entry}"))
    }

    /// For an empty payload, the unique lock Asynq takes for an empty but
    /// non-nil payload (`asynq:{q}:unique:<type>:<md5 of "">`), which
    /// [`unique`](Self::unique) does not write (it writes the nil form, as
    /// Asynq does for a task without payload); `None` for other payloads.
    /// A lock held in either form makes an enqueue a duplicate.
    pub fn unique_other_form(&self, task_type: &str, payload: &[u8]) -> Option<String> {
        payload.is_empty().then(|| {
            self.key(&format!(
                "unique:{task_type}:d41d8cd98f00b204e9800998ecf8427e"
            ))
        })
    }

    /// `asynq:{q}:unique:<type>:<md5 hex of payload>`, Asynq's unique lock.
    pub fn unique(&self, task_type: &str, payload: &[u8]) -> String {
        if payload.is_empty() {
            return self.key(&format!("unique:{task_type}:"));
        }
        let digest = Md5::digest(payload);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.key(&format!("unique:{task_type}:{hex}"))
    }
}

/// `asynq:queues`
pub const ALL_QUEUES: &str = "asynq:queues";
/// `asynq:servers`
pub const ALL_SERVERS: &str = "asynq:servers";
/// `asynq:workers`
pub const ALL_WORKERS: &str = "asynq:workers";

/// `asynq:servers:{<host>:<pid>:<id>}`
pub fn server_info(host: &str, pid: u32, id: &str) -> String {
    format!("asynq:servers:{{{host}:{pid}:{id}}}")
}

/// `asynq:workers:{<host>:<pid>:<id>}`
pub fn workers(host: &str, pid: u32, id: &str) -> String {
    format!("asynq:workers:{{{host}:{pid}:{id}}}")
}

/// The UTC date `yyyy-mm-dd` of a Unix time, for daily counters.
pub fn utc_date(unix_secs: i64) -> String {
    jiff::Timestamp::from_second(unix_secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

/// `asynq:schedulers`: the registered schedulers' entry lists.
pub const ALL_SCHEDULERS: &str = "asynq:schedulers";

/// `asynq:schedulers:{<scheduler id>}`: a scheduler's entries.
pub fn scheduler_entries(scheduler_id: &str) -> String {
    format!("asynq:schedulers:{{{scheduler_id}}}")
}

/// `asynq:scheduler_history:<entry id>`: an entry's enqueues.
pub fn scheduler_history(entry_id: &str) -> String {
    format!("asynq:scheduler_history:{entry_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_asynq_layout_with_hash_tags() {
        let q = QueueKeys::new("images");
        assert_eq!(q.task("abc"), "asynq:{images}:t:abc");
        assert_eq!(q.pending(), "asynq:{images}:pending");
        assert_eq!(
            q.processed_on("2026-11-25"),
            "asynq:{images}:processed:2026-11-25"
        );
        assert_eq!(
            q.unique("images:resize", b"{}"),
            "asynq:{images}:unique:images:resize:99914b932bd37a50b983c5e7c90ae93b"
        );
        // No payload: no digest, as Asynq's client writes it for a nil payload.
        assert_eq!(q.unique("cleanup", b""), "asynq:{images}:unique:cleanup:");
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_564_800), "2026-11-25");
    }
}
