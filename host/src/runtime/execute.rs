//! One task in a fresh sandbox: [`Runtime::execute`] builds the store (WASI
//! context from the grants, fuel, memory limiter, epoch deadline, journal),
//! instantiates the task type's component from the pool, calls `handle`, and
//! classifies how it ended into an [`Outcome`].

use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{self, Handler, TaskError};
use super::guest_text::sanitize;
use super::http::Outbound;
use super::journal::{Journal, TaskTags};
use super::load::{Pre, TaskType};
use super::sandbox::{Interrupted, MemoryLimitHit, MemoryLimiter, SandboxState};
use super::{
    CancelToken, Execution, Failure, HandlerError, Invocation, LimitExceeded, Outcome, Runtime,
    TrapCause, UNLIMITED_FUEL, fs_budget, fs_limits,
};

impl Runtime {
    /// Runs one task in a fresh sandbox. Never fails: every way a task can
    /// end, including an unknown task type, is an [`Outcome`].
    pub async fn execute(&self, invocation: Invocation) -> Execution {
        let started = Instant::now();
        let mut report = Execution {
            task_id: invocation.id.clone(),
            task_type: invocation.task_type.clone(),
            outcome: Outcome::Success { result: Vec::new() },
            fuel_consumed: 0,
            fuel_measured: false,
            wall_time: Duration::ZERO,
            memory_peak: 0,
            progress: None,
            logs: Vec::new(),
            logs_dropped: 0,
            logs_dropped_bytes: 0,
            http: Vec::new(),
            follow_ups: Vec::new(),
            module_hash: String::new(),
        };
        let failed = |failure| Outcome::Failed { failure };
        // The version current now: a swap after this line does not change
        // what this task runs.
        let Some(task_type) = self.type_of(&invocation.task_type) else {
            report.outcome = failed(if self.waits_for_registry(&invocation.task_type) {
                // Not the task's fault: it runs once a version is pushed.
                Failure::HostResources {
                    message: format!(
                        "task type {:?} has no version in the module registry yet \
                         (push one with `wasq module push`)",
                        invocation.task_type
                    ),
                }
            } else {
                Failure::Host {
                    message: format!(
                        "no module is registered for task type {:?}",
                        invocation.task_type
                    ),
                }
            });
            report.wall_time = started.elapsed();
            return report;
        };
        report.module_hash = task_type.info.module_hash.clone();
        let limits = task_type.info.limits;
        let size = invocation.payload.len() as u64;
        if size > limits.max_payload {
            report.outcome = failed(Failure::Limit {
                limit: LimitExceeded::Payload {
                    size,
                    limit: limits.max_payload,
                },
            });
            report.wall_time = started.elapsed();
            return report;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            unreachable!("the sandbox semaphore is never closed")
        };

        let mut budget = limits.timeout;
        if let Some(timeout) = invocation.timeout {
            budget = budget.min(timeout);
        }
        if let Some(deadline) = invocation.deadline {
            budget = budget.min(
                deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            );
        }
        let deadline = Instant::now() + budget;
        let (mut store, journal, http_calls, fuel) = match self.new_store(
            &task_type,
            TaskTags {
                id: invocation.id.clone(),
                task_type: invocation.task_type.clone(),
                queue: invocation.queue.clone(),
            },
            deadline,
            invocation.cancel.clone(),
        ) {
            Ok(parts) => parts,
            Err(failure) => {
                report.outcome = failed(failure);
                report.wall_time = started.elapsed();
                return report;
            }
        };

        let task = bindings::Task {
            id: invocation.id.clone(),
            task_type: invocation.task_type.clone(),
            queue: invocation.queue.clone(),
            payload: invocation.payload,
            retried: invocation.retried,
            max_retry: invocation.max_retry,
            deadline_ms: invocation
                .deadline
                .and_then(|d| d.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            headers: invocation.headers,
            group: invocation.group.as_ref().map(|g| g.name.clone()),
            members: invocation
                .group
                .map(|g| {
                    g.members
                        .into_iter()
                        .map(|m| bindings::wasq::task::types::Member {
                            id: m.id,
                            task_type: m.task_type,
                            payload: m.payload,
                            headers: m.headers,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        let pre = &task_type.pre;
        let call = async {
            match pre {
                Pre::Current(pre) => {
                    let handler: Handler = pre.instantiate_async(&mut store).await?;
                    handler.call_handle(&mut store, &task).await
                }
                Pre::V0_1(pre) => {
                    let handler = pre.instantiate_async(&mut store).await?;
                    let task = bindings::v0_1::task_from_current(&task);
                    let result = handler.call_handle(&mut store, &task).await?;
                    Ok(result.map_err(bindings::v0_1::into_current))
                }
            }
        };
        // The epoch callback stops guests that compute; this outer bound
        // stops guests that wait on the host (sleeps, I/O) past the deadline.
        let cancel = invocation.cancel.clone();
        let result = tokio::select! {
            r = tokio::time::timeout(budget + self.grace, call) => r.map_err(|_| Interrupted::Timeout),
            _ = async { match &cancel { Some(c) => c.cancelled().await, None => std::future::pending().await } } => Err(Interrupted::Cancelled),
        };
        journal.finish();

        report.outcome = match result {
            Err(Interrupted::Timeout) => failed(Failure::Trap {
                cause: TrapCause::Timeout,
            }),
            Err(Interrupted::Cancelled) => failed(Failure::Trap {
                cause: TrapCause::Cancelled,
            }),
            // `exit(0)`: done, with an empty result, as a CLI author expects.
            Ok(Err(error))
                if error
                    .downcast_ref::<wasmtime_wasi::I32Exit>()
                    .is_some_and(|exit| exit.0 == 0) =>
            {
                Outcome::Success { result: Vec::new() }
            }
            Ok(Err(error)) => failed(classify(&error, &journal)),
            Ok(Ok(Err(error))) => failed(Failure::Handler {
                error: handler_error(error),
            }),
            Ok(Ok(Ok(result))) if result.len() as u64 > limits.max_result => {
                failed(Failure::Limit {
                    limit: LimitExceeded::Result {
                        size: result.len() as u64,
                        limit: limits.max_result,
                    },
                })
            }
            Ok(Ok(Ok(result))) => Outcome::Success { result },
        };
        report.fuel_measured = !matches!(
            &report.outcome,
            Outcome::Failed {
                failure: Failure::Trap {
                    cause: TrapCause::Timeout | TrapCause::Cancelled
                }
            }
        );
        if report.fuel_measured {
            report.fuel_consumed = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        }
        report.memory_peak = store.data().limiter.peak;
        let mut journal = journal.lock();
        report.logs = std::mem::take(&mut journal.lines);
        report.logs_dropped = journal.dropped;
        report.logs_dropped_bytes = journal.dropped_bytes;
        report.progress = journal.progress;
        report.http = std::mem::take(&mut *http_calls.lock().expect("http calls lock"));
        if report.outcome.is_success() {
            report.follow_ups = std::mem::take(&mut store.data_mut().follow_ups.tasks);
        }
        report.wall_time = started.elapsed();
        report
    }

    /// A fresh store for one sandbox of `task_type`: the WASI context from
    /// its grants, fuel, the memory limiter, the epoch deadline and a
    /// journal. Returns the store, the journal, the HTTP calls' log and the
    /// fuel it was given.
    #[allow(clippy::type_complexity)]
    pub(super) fn new_store(
        &self,
        task_type: &TaskType,
        tags: TaskTags,
        deadline: Instant,
        cancel: Option<CancelToken>,
    ) -> Result<
        (
            Store<SandboxState>,
            Journal,
            std::sync::Arc<std::sync::Mutex<Vec<super::HttpCall>>>,
            u64,
        ),
        Failure,
    > {
        let limits = task_type.info.limits;
        let (id, name, queue) = (tags.id.clone(), tags.task_type.clone(), tags.queue.clone());
        let journal = Journal::new(tags, limits.max_log);
        let wasi = match task_type.grants.wasi_ctx(&journal, SystemTime::now()) {
            Ok(wasi) => wasi,
            Err(e) => {
                let message = format!("cannot build the sandbox's WASI context: {e:#}");
                // Out of descriptors or memory: the host's state, not the task's.
                return Err(if fs_limits::host_short_of_resources(&e) {
                    Failure::HostResources { message }
                } else {
                    Failure::Host { message }
                });
            }
        };
        let state = SandboxState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory,
                peak: 0,
            },
            journal: journal.clone(),
            grants: task_type.grants.clone(),
            fs: fs_budget::FsLimits::new(&limits, journal.clone()),
            follow_ups: Default::default(),
            task_id: id.clone(),
            task_type: name.clone(),
            queue,
            max_payload: limits.max_payload,
            deadline,
            cancel,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            outbound: Outbound::new(task_type.http.clone(), deadline, &id, &name),
        };
        let http_calls = state.outbound.calls.clone();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Unlimited fuel is a budget no task can spend (about a century of
        // computing), so what a task used is still measured.
        let fuel = limits.fuel.unwrap_or(UNLIMITED_FUEL);
        store.set_fuel(fuel).expect("fuel is enabled on the engine");
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                return Err(Interrupted::Cancelled.into());
            }
            if Instant::now() >= state.deadline {
                return Err(Interrupted::Timeout.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });

        Ok((store, journal, http_calls, fuel))
    }
}

/// Names the cause of a trap or host error.
fn classify(error: &wasmtime::Error, journal: &Journal) -> Failure {
    let trap = |cause| Failure::Trap { cause };
    if let Some(interrupted) = error.downcast_ref::<Interrupted>() {
        return trap(match interrupted {
            Interrupted::Timeout => TrapCause::Timeout,
            Interrupted::Cancelled => TrapCause::Cancelled,
        });
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return trap(TrapCause::Exit { code: exit.0 });
    }
    if let Some(hit) = error.downcast_ref::<MemoryLimitHit>() {
        return trap(TrapCause::MemoryLimit { limit: hit.limit });
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => trap(TrapCause::OutOfFuel),
        Some(Trap::StackOverflow) => trap(TrapCause::StackOverflow),
        Some(Trap::Interrupt) => trap(TrapCause::Timeout),
        Some(other) => match journal.lock().panic.clone() {
            Some(message) => trap(TrapCause::Panic { message }),
            None => trap(TrapCause::Other {
                message: other.to_string(),
            }),
        },
        None => match journal.lock().panic.clone() {
            Some(message) => trap(TrapCause::Panic { message }),
            // Text the guest handed over (its error, a panic message, an
            // enqueue) that is not UTF-8: the guest's fault, not the host's.
            None if error
                .chain()
                .any(|e| e.downcast_ref::<std::str::Utf8Error>().is_some()) =>
            {
                trap(TrapCause::Other {
                    message: "the guest passed text that is not valid UTF-8".into(),
                })
            }
            None if fs_limits::host_short_of_resources(error) => Failure::HostResources {
                message: format!("{error:#}"),
            },
            None => Failure::Host {
                message: format!("{error:#}"),
            },
        },
    }
}

fn handler_error(error: TaskError) -> HandlerError {
    match error {
        TaskError::Retry(retry) => HandlerError::Retry {
            message: sanitize(&retry.message),
            delay: retry.delay_ms.map(Duration::from_millis),
        },
        TaskError::SkipRetry(message) => HandlerError::SkipRetry {
            message: sanitize(&message),
        },
        TaskError::Revoke(message) => HandlerError::Revoke {
            message: sanitize(&message),
        },
        TaskError::RateLimited(limited) => HandlerError::RateLimited {
            message: sanitize(&limited.message),
            after: Duration::from_millis(limited.after_ms),
        },
    }
}
