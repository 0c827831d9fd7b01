//! Per task type usage, for `wasq module ls`: the worker counts runs,
//! failures by cause, fuel and time per type, and every few seconds adds
//! them to Redis, per minute, where any `wasq module ls` can sum the last
//! hour.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `wasq:type:{<type>}:m:<unix minute>` | hash | `runs`, `ok`, `fail:<cause>`; expires after 2 h |
//! | `wasq:type:{<type>}:samples` | list | recent runs as `"<unix s> <fuel> <micros>"`, newest first, at most 1000; expires after 2 h |

use std::collections::HashMap;
use std::sync::Mutex;

use super::TaskEvent;
use crate::broker::{Broker, BrokerError, now_secs};

/// Samples kept per type in Redis.
pub const SAMPLES: isize = 1000;
/// Samples sent per type per flush.
const SAMPLES_PER_FLUSH: usize = 100;

/// The per-minute hash of `task_type` for `minute` (Unix minutes).
pub fn minute_key(task_type: &str, minute: i64) -> String {
    format!("wasq:type:{{{task_type}}}:m:{minute}")
}

/// The sample list of `task_type`.
pub fn samples_key(task_type: &str) -> String {
    format!("wasq:type:{{{task_type}}}:samples")
}

#[derive(Default)]
struct Window {
    runs: u64,
    ok: u64,
    failures: HashMap<String, u64>,
    samples: Vec<(u64, u64)>,
}

/// Usage counted since the last flush.
#[derive(Default)]
pub(crate) struct Usage {
    windows: Mutex<HashMap<String, Window>>,
}

impl Usage {
    /// Counts one run (runs that never reached the sandbox are skipped).
    pub(crate) fn record(&self, event: &TaskEvent) {
        if event.started_at_ms == 0 || event.task_type.is_empty() {
            return;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.entry(event.task_type.clone()).or_default();
        w.runs += 1;
        if event.cause == "ok" {
            w.ok += 1;
        } else {
            *w.failures.entry(event.cause.clone()).or_default() += 1;
        }
        if w.samples.len() < SAMPLES_PER_FLUSH {
            w.samples.push((event.fuel, event.micros));
        }
    }

    /// Adds what was counted to Redis (one pipeline per type).
    pub(crate) async fn flush(&self, broker: &Broker) -> Result<(), BrokerError> {
        let windows = std::mem::take(&mut *self.windows.lock().unwrap_or_else(|e| e.into_inner()));
        let now = now_secs();
        for (task_type, w) in windows {
            let key = minute_key(&task_type, now / 60);
            let samples = samples_key(&task_type);
            let mut pipe = redis::pipe();
            pipe.hincr(&key, "runs", w.runs).ignore();
            pipe.hincr(&key, "ok", w.ok).ignore();
            for (cause, n) in &w.failures {
                pipe.hincr(&key, format!("fail:{cause}"), *n).ignore();
            }
            pipe.expire(&key, 7200).ignore();
            for (fuel, micros) in &w.samples {
                pipe.lpush(&samples, format!("{now} {fuel} {micros}"))
                    .ignore();
            }
            pipe.ltrim(&samples, 0, SAMPLES - 1).ignore();
            pipe.expire(&samples, 7200).ignore();
            let _: () = pipe.query_async(&mut broker.conn()).await?;
        }
        Ok(())
    }
}
