//! Per task type usage, for `wasq module ls`: the worker counts runs,
//! failures by cause, fuel and time per type, and every few seconds adds
//! them to Redis, per minute, where any `wasq module ls` can sum the last
//! hour.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `wasq:type:{<type>}:m:<unix minute>` | hash | `runs`, `ok`, `fail:<cause>`, `http:<ok, denied or error>`, `module:<sha256>` and `module_fail:<sha256>` (runs and failures per module version); expires after 2 h |
//! | `wasq:type:{<type>}:samples` | list | recent runs as `"<unix s> <fuel> <micros>"`, newest first, at most 1000; expires after 2 h |
//!
//! `<type>` is a task type of the config's `[tasks]`, or `other` for every
//! type it does not list (`Usage::with_task_types`): producers choose task
//! types, and must not be able to create keys without bound.

use std::collections::HashMap;
use std::sync::Mutex;

use super::TaskEvent;
use super::metrics::Labelled;
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
    /// Outbound HTTP requests by outcome.
    http: HashMap<&'static str, u64>,
    /// Runs and failures by module version (SHA-256).
    modules: HashMap<String, (u64, u64)>,
    samples: Vec<(u64, u64)>,
}

/// Usage counted since the last flush.
#[derive(Default)]
pub(crate) struct Usage {
    windows: Mutex<HashMap<String, Window>>,
    /// The task types counted under their own name.
    labelled: Labelled,
}

impl Usage {
    /// Counts only `task_types` (the config's `[tasks]`) under their own
    /// name; every other task type is counted as `other`.
    pub(crate) fn with_task_types(
        mut self,
        task_types: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.labelled = Labelled::only(task_types);
        self
    }

    /// Counts `task_types` under their own name too (a reload added them).
    pub(crate) fn add_task_types(&self, task_types: impl IntoIterator<Item = impl Into<String>>) {
        self.labelled.add(task_types);
    }

    /// Counts one run (runs that never reached the sandbox are skipped).
    pub(crate) fn record(&self, event: &TaskEvent) {
        if event.started_at_ms == 0 || event.task_type.is_empty() {
            return;
        }
        let task_type = self.labelled.label(&event.task_type);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.entry(task_type.to_owned()).or_default();
        w.runs += 1;
        if !event.module.is_empty() {
            let (runs, failures) = w.modules.entry(event.module.clone()).or_default();
            *runs += 1;
            if event.cause != "ok" {
                *failures += 1;
            }
        }
        if event.cause == "ok" {
            w.ok += 1;
        } else {
            *w.failures.entry(event.cause.clone()).or_default() += 1;
        }
        if w.samples.len() < SAMPLES_PER_FLUSH
            && let Some(fuel) = event.fuel
        {
            w.samples.push((fuel, event.micros));
        }
    }

    /// Adds what was counted to Redis (one pipeline per type).
    /// Counts the outbound HTTP requests of one run of `task_type`.
    pub(crate) fn http(&self, task_type: &str, calls: &[crate::runtime::HttpCall]) {
        if calls.is_empty() {
            return;
        }
        let task_type = self.labelled.label(task_type);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.entry(task_type.to_owned()).or_default();
        for call in calls {
            *w.http.entry(call.outcome).or_default() += 1;
        }
    }

    pub(crate) async fn flush(&self, broker: &Broker) -> Result<(), BrokerError> {
        for pipe in self.take(now_secs()) {
            let _: () = pipe.query_async(&mut broker.conn()).await?;
        }
        Ok(())
    }

    /// Takes what was counted, as the commands that add it to Redis at
    /// `now` (Unix seconds), one pipeline per type.
    fn take(&self, now: i64) -> Vec<redis::Pipeline> {
        let windows = std::mem::take(&mut *self.windows.lock().unwrap_or_else(|e| e.into_inner()));
        let mut pipes = Vec::with_capacity(windows.len());
        for (task_type, w) in windows {
            let key = minute_key(&task_type, now / 60);
            let samples = samples_key(&task_type);
            let mut pipe = redis::pipe();
            pipe.hincr(&key, "runs", w.runs).ignore();
            pipe.hincr(&key, "ok", w.ok).ignore();
            for (cause, n) in &w.failures {
                pipe.hincr(&key, format!("fail:{cause}"), *n).ignore();
            }
            for (outcome, n) in &w.http {
                pipe.hincr(&key, format!("http:{outcome}"), *n).ignore();
            }
            for (module, (runs, failures)) in &w.modules {
                pipe.hincr(&key, format!("module:{module}"), *runs).ignore();
                if *failures > 0 {
                    pipe.hincr(&key, format!("module_fail:{module}"), *failures)
                        .ignore();
                }
            }
            pipe.expire(&key, 7200).ignore();
            for (fuel, micros) in &w.samples {
                pipe.lpush(&samples, format!("{now} {fuel} {micros}"))
                    .ignore();
            }
            pipe.ltrim(&samples, 0, SAMPLES - 1).ignore();
            pipe.expire(&samples, 7200).ignore();
            pipes.push(pipe);
        }
        pipes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(task_type: &str) -> TaskEvent {
        TaskEvent::done_for_test(task_type)
    }

    #[test]
    fn task_types_not_configured_are_counted_as_other() {
        let usage = Usage::default().with_task_types(["email"]);
        usage.record(&event("email"));
        for n in 0..50 {
            usage.record(&event(&format!("made-up:{n}")));
        }
        let now = 1_700_000_000;
        let pipes = usage.take(now);
        assert_eq!(pipes.len(), 2, "one pipeline per counted type");
        let commands: Vec<String> = pipes
            .iter()
            .map(|p| String::from_utf8_lossy(&p.get_packed_pipeline()).into_owned())
            .collect();
        let all = commands.concat();
        assert!(!all.contains("made-up"), "{all}");
        for task_type in ["email", "other"] {
            let minute = minute_key(task_type, now / 60);
            let samples = samples_key(task_type);
            assert!(
                commands
                    .iter()
                    .any(|c| c.contains(&minute) && c.contains(&samples)),
                "no keys of {task_type}: {all}"
            );
        }
        assert!(usage.take(now).is_empty(), "taken once");
    }
}
