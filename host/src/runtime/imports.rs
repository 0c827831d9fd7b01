//! The host side of the `wasq:task` imports: `log`, `enqueue`, `context`.

use std::time::Duration;

use super::bindings::wasq::task::{context, enqueue, log, types};
use super::journal::{LogLevel, LogSource};
use super::sandbox::SandboxState;
use super::sink::{FollowUp, SinkError};

impl types::Host for SandboxState {}

impl log::Host for SandboxState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.journal.log(level, LogSource::Log, message, fields);
    }
}

impl context::Host for SandboxState {
    fn set_progress(&mut self, percent: u8) {
        self.journal.lock().progress = Some(percent.min(100));
    }

    fn report_panic(&mut self, message: String) {
        let mut journal = self.journal.lock();
        if journal.panic.is_none() {
            journal.panic = Some(message);
        }
    }
}

impl enqueue::Host for SandboxState {
    async fn enqueue(
        &mut self,
        task_type: String,
        payload: Vec<u8>,
        opts: enqueue::Options,
    ) -> Result<String, enqueue::EnqueueError> {
        let queue = opts.queue.unwrap_or_else(|| self.queue.clone());
        if !self.grants.enqueue.contains(&queue) {
            let message = format!(
                "task type {} is not granted queue {queue:?} (grant it with enqueue = [{queue:?}] in wasq.toml)",
                self.task_type
            );
            self.deny(&message);
            return Err(enqueue::EnqueueError::Denied(message));
        }
        if task_type.is_empty() {
            return Err(enqueue::EnqueueError::Invalid("task type is empty".into()));
        }
        if payload.len() as u64 > self.max_payload {
            return Err(enqueue::EnqueueError::Invalid(format!(
                "payload of {} bytes is over the limit of {} bytes",
                payload.len(),
                self.max_payload
            )));
        }
        let follow_up = FollowUp {
            task_type,
            payload,
            queue,
            max_retry: opts.max_retry,
            process_in: opts.process_in_ms.map(Duration::from_millis),
            timeout: opts.timeout_ms.map(Duration::from_millis),
            task_id: opts.task_id,
            retention: opts.retention_ms.map(Duration::from_millis),
            headers: opts.headers,
            parent_id: self.task_id.clone(),
        };
        self.sink.enqueue(follow_up).await.map_err(|e| match e {
            SinkError::Conflict(m) => enqueue::EnqueueError::Conflict(m),
            SinkError::Invalid(m) => enqueue::EnqueueError::Invalid(m),
            SinkError::Unavailable(m) => enqueue::EnqueueError::Unavailable(m),
        })
    }
}

impl SandboxState {
    /// Logs a denied request both in the task's journal and as a host warning.
    fn deny(&self, message: &str) {
        tracing::warn!(task_id = %self.task_id, task_type = %self.task_type, "denied: {message}");
        self.journal.log(
            LogLevel::Warn,
            LogSource::Log,
            format!("denied by host: {message}"),
            Vec::new(),
        );
    }
}
