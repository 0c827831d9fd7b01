//! # wasq-guest: write wasq task handlers in Rust
//!
//! A wasq handler is a WebAssembly component that the `wasq` worker runs once
//! per task, in a fresh sandbox with the fuel, memory, time and grants its task
//! type is given in `wasq.toml`. This crate is all a handler author needs: it
//! hides the generated WIT bindings (`wit/wasq.wit`, world
//! `wasq:task/handler@0.2.0`) behind a function signature and one macro.
//!
//! ```no_run
//! use serde::Deserialize;
//! use wasq_guest::{Task, TaskError, info};
//!
//! #[derive(Deserialize)]
//! struct Email {
//!     to: u64,
//!     from: u64,
//! }
//!
//! fn send_email(task: Task) -> Result<String, TaskError> {
//!     // A payload that does not decode is archived at once: retrying cannot fix it.
//!     let email: Email = task.json()?;
//!     info!("sending email", from = email.from, to = email.to);
//!     Ok(format!("sent to {}", email.to))
//! }
//!
//! wasq_guest::export_handler!(send_email);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (a `cdylib`
//! crate) and register the `.wasm` file for a task type:
//!
//! ```toml
//! [tasks."notifications:email"]
//! module = "target/wasm32-wasip2/release/email.wasm"
//! ```
//!
//! ## What a handler returns
//! The handler is any `fn(Task) -> Result<T, E>` where `T` is an [`Output`]
//! (`()`, `Vec<u8>`, `String`, `&'static str` or [`Json`]) and `E` converts
//! into a [`TaskError`]. A [`TaskError`] says what the host does next: retry
//! with backoff ([`TaskError::retry`], optionally [`TaskError::after`] a delay),
//! archive now ([`TaskError::skip_retry`]), drop the task
//! ([`TaskError::revoke`]) or run it again later without using up a retry
//! ([`TaskError::rate_limited`]). Any `std::error::Error` converts into a retry, so
//! `?` works on I/O and parse errors.
//!
//! ## What the host does not let a handler do
//! Traps are not errors a handler returns: running out of fuel, growing
//! memory past the limit, passing the deadline, a panic or a stack overflow
//! stop the sandbox and the host classifies the failure itself. A panic's
//! message is reported to the host by a hook this crate installs. Files, env
//! vars, clocks, queues for [`enqueue`] and hosts for [`http`] are only
//! what the task type is granted.

#![deny(missing_docs)]

// The generated bindings name this crate by its absolute path, which must
// also resolve inside the crate itself.
extern crate self as wasq_guest;

mod error;
pub mod http;
mod log;
mod output;
mod task;

pub use error::TaskError;
pub use log::{Level, log};
pub use output::{Json, Output};
pub use task::{EnqueueError, EnqueueOptions, Member, Task, enqueue, set_progress};

/// The generated bindings of `wit/wasq.wit`. Not a stable API: use the
/// re-exports of this crate instead.
#[doc(hidden)]
#[allow(clippy::all, missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasq:task/handler@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_world_handler",
        default_bindings_module: "::wasq_guest::__bindings",
        runtime_path: "::wasq_guest::__bindings::__wit_bindgen::rt",
    });

    pub use wit_bindgen as __wit_bindgen;
}

/// Runs a handler function on a task from the host: installs the panic hook,
/// converts the output and the error. Called by [`export_handler!`].
#[doc(hidden)]
pub fn __run<T, E, F>(raw: __bindings::Task, handler: F) -> Result<Vec<u8>, __bindings::TaskError>
where
    F: FnOnce(Task) -> Result<T, E>,
    T: Output,
    E: Into<TaskError>,
{
    install_panic_hook();
    match handler(Task::from_raw(raw)) {
        Ok(output) => Ok(output.into_bytes()),
        Err(error) => Err(error.into().into_raw()),
    }
}

fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = match info.location() {
                Some(at) => format!("{info} ({}:{})", at.file(), at.line()),
                None => info.to_string(),
            };
            __bindings::wasq::task::context::report_panic(&message);
        }));
    });
}

/// Exports a handler function as the component's `handle`.
///
/// The function takes a [`Task`] and returns `Result<T, E>` where `T:`
/// [`Output`] and `E: Into<`[`TaskError`]`>`. Use the macro once per crate.
///
/// ```no_run
/// fn noop(_task: wasq_guest::Task) -> Result<(), wasq_guest::TaskError> {
///     Ok(())
/// }
/// wasq_guest::export_handler!(noop);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        const _: () = {
            struct __WasqHandler;

            impl $crate::__bindings::Guest for __WasqHandler {
                fn handle(
                    task: $crate::__bindings::Task,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::__bindings::TaskError> {
                    $crate::__run(task, $handler)
                }
            }

            $crate::__bindings::__export_world_handler!(__WasqHandler with_types_in $crate::__bindings);
        };
    };
}
