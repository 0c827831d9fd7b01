//! What a sandbox says while it runs: log lines (from the `log` import and
//! from captured stdout/stderr), a panic message, progress.
//!
//! Every line is emitted as a `tracing` event (target `wasq::guest`, tagged
//! with the task's id, type and queue) and kept for the [`Execution`]
//! report, both bounded by the task type's `max_log`: past it lines are
//! counted and dropped, never an error the guest sees. Each line costs its
//! bytes plus a fixed [`LINE_COST`] (and [`FIELD_COST`] per field), so empty
//! lines are not free, and a task keeps at most [`MAX_LINES`] lines. Control
//! characters in messages and fields are escaped before anything is kept or
//! printed, so a guest cannot forge a line of the worker's log.
//!
//! [`Execution`]: super::Execution

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::guest_text::{escape_control, sanitize};

/// What one line costs against `max_log` besides its bytes.
pub const LINE_COST: u64 = 64;
/// What one key-value field costs against `max_log` besides its bytes.
pub const FIELD_COST: u64 = 16;
/// Most lines a task keeps, however short.
pub const MAX_LINES: u64 = 10_000;
/// Longest stdout/stderr line kept whole; a longer one is cut into pieces.
const MAX_PARTIAL: usize = 8192;

/// Severity of a guest's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Unusual but not failing.
    Warn,
    /// A failure.
    Error,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The `wasq:task/log` import.
    Log,
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Severity (stdout is `info`, stderr `warn`).
    pub level: LogLevel,
    /// Where it came from.
    pub source: LogSource,
    /// The message.
    pub message: String,
    /// Key-value fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        };
        match self.source {
            LogSource::Log => write!(f, "{level:<5} {}", self.message)?,
            LogSource::Stdout => write!(f, "{level:<5} [stdout] {}", self.message)?,
            LogSource::Stderr => write!(f, "{level:<5} [stderr] {}", self.message)?,
        }
        for (key, value) in &self.fields {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

/// The tags of the task a journal belongs to.
#[derive(Debug, Clone)]
pub(crate) struct TaskTags {
    pub id: String,
    pub task_type: String,
    pub queue: String,
}

/// A sandbox's journal; cheap to clone, shared by the host imports and the
/// stdout/stderr streams of one store.
#[derive(Clone)]
pub(crate) struct Journal(Arc<Mutex<Inner>>);

#[derive(Default)]
pub(crate) struct Inner {
    pub lines: Vec<LogLine>,
    pub bytes: u64,
    pub limit: u64,
    /// Lines dropped past `max_log` or [`MAX_LINES`].
    pub dropped: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    pub panic: Option<String>,
    pub progress: Option<u8>,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
    tags: Option<TaskTags>,
}

impl Journal {
    pub fn new(tags: TaskTags, limit: u64) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            limit,
            tags: Some(tags),
            ..Inner::default()
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned journal only means another thread panicked while
        // logging; the lines are still worth keeping.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log(
        &self,
        level: LogLevel,
        source: LogSource,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        self.lock().push(LogLine {
            level,
            source,
            message,
            fields,
        });
    }

    /// Appends raw output of the guest's stdout or stderr; complete lines
    /// become log lines. Once the journal is full, lines are only counted:
    /// a flood of empty lines costs no memory.
    pub fn write_output(&self, source: LogSource, bytes: &[u8]) {
        let mut inner = self.lock();
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(nl + 1);
            rest = after;
            let partial = inner.partial(source);
            if partial.is_empty() {
                inner.push_output(source, line);
            } else {
                let mut whole = std::mem::take(partial);
                whole.extend_from_slice(line);
                inner.push_output(source, &whole);
            }
        }
        if !rest.is_empty() {
            let partial = inner.partial(source);
            partial.extend_from_slice(rest);
            // Bound a line that never ends: flush it in pieces.
            if partial.len() > MAX_PARTIAL {
                let piece = std::mem::take(partial);
                inner.push_output(source, &piece);
            }
        }
    }

    /// Flushes partial stdout/stderr lines at the end of a task.
    pub fn finish(&self) {
        let mut inner = self.lock();
        for source in [LogSource::Stdout, LogSource::Stderr] {
            let partial = match source {
                LogSource::Stderr => std::mem::take(&mut inner.partial_stderr),
                _ => std::mem::take(&mut inner.partial_stdout),
            };
            if !partial.is_empty() {
                inner.push_output(source, &partial);
            }
        }
    }
}

impl Inner {
    fn partial(&mut self, source: LogSource) -> &mut Vec<u8> {
        match source {
            LogSource::Stderr => &mut self.partial_stderr,
            _ => &mut self.partial_stdout,
        }
    }

    /// Whether a line of `size` bytes and `fields` fields fits; counts it
    /// as dropped when not.
    fn admit(&mut self, size: u64, fields: usize) -> bool {
        let cost = size + LINE_COST + FIELD_COST * fields as u64;
        if self.lines.len() as u64 >= MAX_LINES || self.bytes + cost > self.limit {
            self.dropped += 1;
            self.dropped_bytes += size;
            return false;
        }
        self.bytes += cost;
        true
    }

    fn push_output(&mut self, source: LogSource, line: &[u8]) {
        if !self.admit(line.len() as u64, 0) {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        let level = if source == LogSource::Stderr {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        self.keep(LogLine {
            level,
            source,
            message: text.to_owned(),
            fields: Vec::new(),
        });
    }

    fn push(&mut self, line: LogLine) {
        let size = line.message.len()
            + line
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if !self.admit(size as u64, line.fields.len()) {
            return;
        }
        self.keep(line);
    }

    /// Keeps an admitted line, its text made safe to print.
    fn keep(&mut self, mut line: LogLine) {
        line.message = sanitize(&line.message);
        for (k, v) in &mut line.fields {
            *k = escape_control(k).into_owned();
            *v = escape_control(v).into_owned();
        }
        if let Some(tags) = &self.tags {
            emit(tags, &line);
        }
        self.lines.push(line);
    }
}

fn emit(tags: &TaskTags, line: &LogLine) {
    let fields = if line.fields.is_empty() {
        String::new()
    } else {
        let mut out = String::new();
        for (k, v) in &line.fields {
            out.push_str(&format!(" {k}={v}"));
        }
        out
    };
    let (id, task_type, queue, message) = (&tags.id, &tags.task_type, &tags.queue, &line.message);
    let source = match line.source {
        LogSource::Log => "log",
        LogSource::Stdout => "stdout",
        LogSource::Stderr => "stderr",
    };
    macro_rules! at {
        ($level:ident) => {
            tracing::$level!(target: "wasq::guest", task_id = %id, task_type = %task_type, queue = %queue, source, "{message}{fields}")
        };
    }
    match line.level {
        LogLevel::Trace => at!(trace),
        LogLevel::Debug => at!(debug),
        LogLevel::Info => at!(info),
        LogLevel::Warn => at!(warn),
        LogLevel::Error => at!(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(limit: u64) -> Journal {
        Journal::new(
            TaskTags {
                id: "t1".into(),
                task_type: "x".into(),
                queue: "q".into(),
            },
            limit,
        )
    }

    #[test]
    fn output_is_split_into_lines_and_flushed_at_the_end() {
        let j = journal(1024);
        j.write_output(LogSource::Stdout, b"hello\nwor");
        j.write_output(LogSource::Stdout, b"ld\npartial");
        j.finish();
        let lines: Vec<String> = j.lock().lines.iter().map(|l| l.message.clone()).collect();
        assert_eq!(lines, ["hello", "world", "partial"]);
    }

    #[test]
    fn lines_past_the_limit_are_counted_and_dropped() {
        let j = journal(2 * (LINE_COST + 4) + 3);
        for _ in 0..5 {
            j.log(LogLevel::Info, LogSource::Log, "1234".into(), vec![]);
        }
        let inner = j.lock();
        assert_eq!(inner.lines.len(), 2);
        assert_eq!((inner.dropped, inner.dropped_bytes), (3, 12));
    }

    #[test]
    fn empty_lines_and_fields_are_not_free() {
        let j = journal(64 * 1024);
        for _ in 0..1_000_000 {
            j.log(LogLevel::Info, LogSource::Log, String::new(), vec![]);
        }
        j.write_output(LogSource::Stdout, &vec![b'\n'; 10 << 20]);
        let fields = vec![(String::new(), String::new()); 200];
        j.log(LogLevel::Info, LogSource::Log, String::new(), fields);
        let inner = j.lock();
        assert_eq!(inner.lines.len() as u64, 64 * 1024 / LINE_COST);
        assert_eq!(
            inner.dropped,
            1_000_000 + (10 << 20) + 1 - inner.lines.len() as u64
        );
    }

    #[test]
    fn no_more_than_max_lines_are_kept() {
        let j = journal(u64::MAX / 2);
        for _ in 0..MAX_LINES + 5 {
            j.log(LogLevel::Info, LogSource::Log, "x".into(), vec![]);
        }
        assert_eq!(j.lock().lines.len() as u64, MAX_LINES);
        assert_eq!(j.lock().dropped, 5);
    }

    #[test]
    fn control_characters_cannot_forge_a_line() {
        let j = journal(64 * 1024);
        j.log(
            LogLevel::Info,
            LogSource::Log,
            "ok\n2026-01-01 INFO wasq::worker::process: task done\u{1b}[2J".into(),
            vec![("k\ney".into(), "v\r".into())],
        );
        j.write_output(LogSource::Stdout, b"a\x1b[31mred\rline\n");
        let inner = j.lock();
        assert_eq!(
            inner.lines[0].message,
            "ok\\n2026-01-01 INFO wasq::worker::process: task done\\u{1b}[2J"
        );
        assert_eq!(inner.lines[0].fields[0], ("k\\ney".into(), "v\\r".into()));
        assert_eq!(inner.lines[1].message, "a\\u{1b}[31mred\\rline");
        assert!(
            inner
                .lines
                .iter()
                .all(|l| !l.to_string().contains(['\n', '\u{1b}', '\r']))
        );
    }
}
