//! Host-side bindings of the `wasq:task` worlds, generated once here; the
//! rest of the host uses the types re-exported from this module.
//!
//! The crate root holds the current version (`wit/wasq.wit`, 0.2.0);
//! [`v0_1`] holds 0.1.0 (`wit/v0.1.0/`), whose handlers the host still runs:
//! its imports are served by the current ones (see `imports.rs`) and its
//! `task-error` is read as the current one (see [`v0_1::into_current`]).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasq:task/handler@0.2.0",
    exports: { default: async },
});

/// Bindings of `wasq:task@0.1.0`, the first released version.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "wasq:task/handler@0.1.0",
        exports: { default: async },
    });

    /// A 0.1.0 handler's error as the current `task-error` (0.1.0 has no
    /// `rate-limited`; the other cases are the same).
    pub fn into_current(error: TaskError) -> super::TaskError {
        match error {
            TaskError::Retry(r) => super::TaskError::Retry(super::wasq::task::types::Retry {
                message: r.message,
                delay_ms: r.delay_ms,
            }),
            TaskError::SkipRetry(message) => super::TaskError::SkipRetry(message),
            TaskError::Revoke(message) => super::TaskError::Revoke(message),
        }
    }

    /// The current `task` record as 0.1.0's (the same fields).
    pub fn task_from_current(task: &super::Task) -> Task {
        Task {
            id: task.id.clone(),
            task_type: task.task_type.clone(),
            queue: task.queue.clone(),
            payload: task.payload.clone(),
            retried: task.retried,
            max_retry: task.max_retry,
            deadline_ms: task.deadline_ms,
            headers: task.headers.clone(),
        }
    }
}
