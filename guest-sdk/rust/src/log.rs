//! Structured logging to the host, which tags each line with the task.

use crate::__bindings::wasq::task::log as raw;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unusual that did not fail the task.
    Warn,
    /// A failure.
    Error,
}

/// Writes one log line with key-value fields to the host.
///
/// The macros [`info!`](crate::info), [`warn!`](crate::warn) and friends
/// are shorter. The host bounds how many bytes a task may log; lines past
/// that are counted and dropped.
pub fn log(level: Level, message: &str, fields: &[(&str, String)]) {
    let level = match level {
        Level::Trace => raw::Level::Trace,
        Level::Debug => raw::Level::Debug,
        Level::Info => raw::Level::Info,
        Level::Warn => raw::Level::Warn,
        Level::Error => raw::Level::Error,
    };
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    raw::log(level, message, &fields);
}

/// Logs at a given [`Level`]: `log_at!(Level::Info, "message", key = value, ...)`.
///
/// Values are formatted with `Display`.
///
/// ```no_run
/// wasq_guest::log_at!(wasq_guest::Level::Debug, "resized", width = 128, height = 96);
/// ```
#[macro_export]
macro_rules! log_at {
    ($level:expr, $message:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log(
            $level,
            &$message,
            &[$((::core::stringify!($key), ::std::string::ToString::to_string(&$value))),*],
        )
    };
}

/// Logs at `info`: `info!("message", key = value, ...)`.
///
/// ```no_run
/// wasq_guest::info!("sending email", to = 42, from = 7);
/// ```
#[macro_export]
macro_rules! info {
    ($($args:tt)*) => { $crate::log_at!($crate::Level::Info, $($args)*) };
}

/// Logs at `debug`: `debug!("message", key = value, ...)`.
#[macro_export]
macro_rules! debug {
    ($($args:tt)*) => { $crate::log_at!($crate::Level::Debug, $($args)*) };
}

/// Logs at `warn`: `warn!("message", key = value, ...)`.
#[macro_export]
macro_rules! warn {
    ($($args:tt)*) => { $crate::log_at!($crate::Level::Warn, $($args)*) };
}

/// Logs at `error`: `error!("message", key = value, ...)`.
#[macro_export]
macro_rules! error {
    ($($args:tt)*) => { $crate::log_at!($crate::Level::Error, $($args)*) };
}
