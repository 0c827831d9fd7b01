//! The host side of the `wasq:task` imports: `log`, `enqueue`, `context`,
//! for the current version and, through it, for 0.1.0.

use std::time::Duration;

use super::bindings::v0_1::wasq::task as v0_1;
use super::bindings::wasq::task::{context, enqueue, log, types};
use super::follow_ups::FollowUp;
use super::guest_text::sanitize;
use super::journal::{LogLevel, LogSource};
use super::sandbox::SandboxState;

impl types::Host for SandboxState {}

/// Defines `wasq:task/log.log` again over the bindings' version, for every
/// `wasq:task` version the host runs, taking the strings as the guest wrote
/// them: a message or field that is not valid UTF-8 (only a guest that
/// builds strings unsafely can send one) is logged as a note of its size
/// instead of trapping, so the task keeps its real outcome.
pub(crate) fn add_lenient_log(
    linker: &mut wasmtime::component::Linker<SandboxState>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    lenient_log::<log::Level>(linker, "wasq:task/log@0.2.0", level)?;
    lenient_log::<v0_1::log::Level>(linker, "wasq:task/log@0.1.0", |l| level(level_0_1(l)))?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `log` of the instance `instance`, whose level type is `L`.
fn lenient_log<L>(
    linker: &mut wasmtime::component::Linker<SandboxState>,
    instance: &str,
    to_level: fn(L) -> LogLevel,
) -> wasmtime::Result<()>
where
    L: wasmtime::component::ComponentType + wasmtime::component::Lift + Send + Sync + 'static,
{
    use wasmtime::component::WasmStr;
    linker.instance(instance)?.func_wrap(
        "log",
        move |mut store: wasmtime::StoreContextMut<'_, SandboxState>,
              (level, message, fields): (L, WasmStr, Vec<(WasmStr, WasmStr)>)| {
            let text = |s: &WasmStr, store: &wasmtime::StoreContextMut<'_, SandboxState>| {
                s.to_str(store).map(|t| t.into_owned()).unwrap_or_else(|_| {
                    "\u{fffd} (text that is not valid UTF-8, replaced by the host)".to_owned()
                })
            };
            let message = text(&message, &store);
            let fields = fields
                .iter()
                .map(|(k, v)| (text(k, &store), text(v, &store)))
                .collect();
            store
                .data_mut()
                .journal
                .log(to_level(level), LogSource::Log, message, fields);
            Ok(())
        },
    )?;
    Ok(())
}

fn level(level: log::Level) -> LogLevel {
    match level {
        log::Level::Trace => LogLevel::Trace,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Info => LogLevel::Info,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Error => LogLevel::Error,
    }
}

fn level_0_1(level: v0_1::log::Level) -> log::Level {
    match level {
        v0_1::log::Level::Trace => log::Level::Trace,
        v0_1::log::Level::Debug => log::Level::Debug,
        v0_1::log::Level::Info => log::Level::Info,
        v0_1::log::Level::Warn => log::Level::Warn,
        v0_1::log::Level::Error => log::Level::Error,
    }
}

impl log::Host for SandboxState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        self.journal
            .log(self::level(level), LogSource::Log, message, fields);
    }
}

impl context::Host for SandboxState {
    fn set_progress(&mut self, percent: u8) {
        self.journal.lock().progress = Some(percent.min(100));
    }

    fn report_panic(&mut self, message: String) {
        let mut journal = self.journal.lock();
        if journal.panic.is_none() {
            journal.panic = Some(sanitize(&message));
        }
    }
}

impl enqueue::Host for SandboxState {
    /// Checks a follow-up against the grants and limits and records it; the
    /// worker sends it once the handler returned `Ok` (see `follow_ups`).
    fn enqueue(
        &mut self,
        task_type: String,
        payload: Vec<u8>,
        opts: enqueue::Options,
    ) -> Result<String, enqueue::EnqueueError> {
        let invalid = enqueue::EnqueueError::Invalid;
        let queue = opts.queue.unwrap_or_else(|| self.queue.clone());
        if !self.grants.enqueue.contains(&queue) {
            let message = format!(
                "task type {} is not granted queue {queue:?} (grant it with enqueue = [{queue:?}] in wasq.toml)",
                self.task_type
            );
            self.deny(&message);
            return Err(enqueue::EnqueueError::Denied(message));
        }
        check_name("task type", &task_type).map_err(invalid)?;
        if let Some(id) = &opts.task_id {
            check_name("task id", id).map_err(invalid)?;
        }
        if payload.len() as u64 > self.max_payload {
            return Err(invalid(format!(
                "payload of {} bytes is over the limit of {} bytes",
                payload.len(),
                self.max_payload
            )));
        }
        let derived = self.follow_ups.next_id(&self.task_id);
        let follow_up = FollowUp {
            id: opts.task_id.unwrap_or(derived),
            task_type,
            payload,
            queue,
            max_retry: opts.max_retry,
            process_in: opts.process_in_ms.map(Duration::from_millis),
            timeout: opts.timeout_ms.map(Duration::from_millis),
            retention: opts.retention_ms.map(Duration::from_millis),
            headers: opts.headers,
        };
        let id = follow_up.id.clone();
        self.follow_ups.push(follow_up).map_err(invalid)?;
        Ok(id)
    }
}

/// A task type or id as the client accepts it, so a follow-up is refused
/// while the guest can still see why.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    crate::names::check_name(what, name).map_err(|e| e.to_string())
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

// wasq:task@0.1.0: the same imports, served by the current ones.

impl v0_1::types::Host for SandboxState {}

impl v0_1::log::Host for SandboxState {
    fn log(&mut self, level: v0_1::log::Level, message: String, fields: Vec<(String, String)>) {
        log::Host::log(self, level_0_1(level), message, fields);
    }
}

impl v0_1::context::Host for SandboxState {
    fn set_progress(&mut self, percent: u8) {
        context::Host::set_progress(self, percent);
    }

    fn report_panic(&mut self, message: String) {
        context::Host::report_panic(self, message);
    }
}

impl v0_1::enqueue::Host for SandboxState {
    fn enqueue(
        &mut self,
        task_type: String,
        payload: Vec<u8>,
        opts: v0_1::enqueue::Options,
    ) -> Result<String, v0_1::enqueue::EnqueueError> {
        let opts = enqueue::Options {
            queue: opts.queue,
            max_retry: opts.max_retry,
            process_in_ms: opts.process_in_ms,
            timeout_ms: opts.timeout_ms,
            task_id: opts.task_id,
            retention_ms: opts.retention_ms,
            headers: opts.headers,
        };
        enqueue::Host::enqueue(self, task_type, payload, opts).map_err(|e| match e {
            enqueue::EnqueueError::Denied(m) => v0_1::enqueue::EnqueueError::Denied(m),
            enqueue::EnqueueError::Invalid(m) => v0_1::enqueue::EnqueueError::Invalid(m),
            enqueue::EnqueueError::Conflict(m) => v0_1::enqueue::EnqueueError::Conflict(m),
            enqueue::EnqueueError::Unavailable(m) => v0_1::enqueue::EnqueueError::Unavailable(m),
        })
    }
}
