//! The per-task budget behind [`fs_limits`](super::fs_limits): handles
//! held, entries created and bytes written, with the meter the guest's file
//! output streams share. It lives in the store (`SandboxState::fs`) and
//! knows nothing of the linker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use bytes::Bytes;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::p2::{
    DynOutputStream, FsError, OutputStream, Pollable, StreamError, StreamResult,
};

use super::journal::{Journal, LogLevel, LogSource};
use crate::config::Limits;

/// A task's counters and budgets; lives in its store.
pub(crate) struct FsLimits {
    pub(crate) max_handles: u32,
    pub(crate) max_files: u64,
    /// Entries created so far.
    pub(crate) created: u64,
    pub(crate) handles: Handles,
    /// The grant (index into `Grants::dirs`) each descriptor the guest
    /// holds lies in: the preopens, and what `open-at` opened under them.
    pub(crate) grant_of: HashMap<u32, usize>,
    /// Shared with the output streams the guest writes files through.
    pub(crate) meter: Arc<Meter>,
}

impl FsLimits {
    /// The limits of one task, reporting refusals into its journal.
    pub fn new(limits: &Limits, journal: Journal) -> Self {
        Self {
            max_handles: limits.max_handles,
            max_files: limits.max_files,
            created: 0,
            handles: Handles::default(),
            grant_of: HashMap::new(),
            meter: Arc::new(Meter {
                max_write: limits.max_write,
                written: AtomicU64::new(0),
                journal: Some(journal),
                warned: AtomicU8::new(0),
            }),
        }
    }

    /// Refuses one more handle when the task holds `max_handles`.
    pub(crate) fn admit_handle(&self, call: &str) -> Result<(), ()> {
        if self.handles.held() < self.max_handles as usize {
            return Ok(());
        }
        self.meter.refuse(
            Refusal::Handles,
            format!(
                "{call} refused: the task already holds {} open files, directories, listings \
                 and sockets, its max_handles",
                self.max_handles
            ),
        );
        Err(())
    }

    /// Refuses one more entry when the task created `max_files`.
    pub(crate) fn admit_create(&self, call: &str) -> Result<(), FsError> {
        if self.created < self.max_files {
            return Ok(());
        }
        self.meter.refuse(
            Refusal::Files,
            format!(
                "{call} refused: the task already created {} files, directories and links, \
                 its max_files",
                self.max_files
            ),
        );
        Err(ErrorCode::Quota.into())
    }
}

impl Default for FsLimits {
    /// No limits and no journal (the benchmark's naive embedding).
    fn default() -> Self {
        Self {
            max_handles: u32::MAX,
            max_files: u64::MAX,
            created: 0,
            handles: Handles::default(),
            grant_of: HashMap::new(),
            meter: Arc::new(Meter {
                max_write: u64::MAX,
                written: AtomicU64::new(0),
                journal: None,
                warned: AtomicU8::new(0),
            }),
        }
    }
}

/// The handles a guest holds. A handle is one open file descriptor; the
/// guest's resources that keep it open (a descriptor and its streams) map
/// to it, and it is released with the last of them.
#[derive(Default)]
pub(crate) struct Handles {
    pub(crate) next: u64,
    /// Guest resource (table index) → handle.
    pub(crate) of: HashMap<u32, u64>,
    /// Handle → guest resources keeping it open.
    pub(crate) refs: HashMap<u64, u32>,
}

impl Handles {
    pub(crate) fn held(&self) -> usize {
        self.refs.len()
    }

    /// A new handle, kept open by resource `rep`.
    pub(crate) fn open(&mut self, rep: u32) {
        let id = self.next;
        self.next += 1;
        self.of.insert(rep, id);
        self.refs.insert(id, 1);
    }

    /// Resource `rep` keeps open the handle of resource `from`, if any.
    pub(crate) fn share(&mut self, from: u32, rep: u32) {
        if let Some(&id) = self.of.get(&from) {
            self.of.insert(rep, id);
            *self.refs.entry(id).or_default() += 1;
        }
    }

    /// Resource `rep` is gone.
    pub(crate) fn close(&mut self, rep: u32) {
        let Some(id) = self.of.remove(&rep) else {
            return;
        };
        match self.refs.get_mut(&id) {
            Some(refs) if *refs > 1 => *refs -= 1,
            _ => {
                self.refs.remove(&id);
            }
        }
    }
}

/// Which refusal a journal line was written for (one line per kind).
#[derive(Clone, Copy)]
pub(crate) enum Refusal {
    Handles = 1,
    Write = 2,
    Files = 4,
    Symlink = 8,
    HardLink = 16,
}

/// The write budget, shared by the task's state and its output streams.
pub(crate) struct Meter {
    pub(crate) max_write: u64,
    pub(crate) written: AtomicU64,
    pub(crate) journal: Option<Journal>,
    /// `Refusal` bits already reported.
    pub(crate) warned: AtomicU8,
}

impl Meter {
    /// Reports a refusal in the task's logs, once per kind.
    pub(crate) fn refuse(&self, kind: Refusal, message: String) {
        let bit = kind as u8;
        if self.warned.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return;
        }
        if let Some(journal) = &self.journal {
            journal.log(
                LogLevel::Warn,
                LogSource::Log,
                format!("refused by host: {message}"),
                Vec::new(),
            );
        }
    }

    /// Takes up to `want` bytes of the budget (all of them, or nothing, if
    /// `whole`); refuses when nothing is left.
    pub(crate) fn take(&self, want: u64, whole: bool) -> Result<u64, ()> {
        if want == 0 {
            return Ok(0);
        }
        let mut used = self.written.load(Ordering::Relaxed);
        loop {
            let left = self.max_write.saturating_sub(used);
            let granted = if want <= left {
                want
            } else if whole || left == 0 {
                self.refuse(
                    Refusal::Write,
                    format!(
                        "writing {want} more bytes refused: the task has written {used} of its \
                         max_write of {} bytes",
                        self.max_write
                    ),
                );
                return Err(());
            } else {
                left
            };
            match self.written.compare_exchange_weak(
                used,
                used + granted,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(granted),
                Err(now) => used = now,
            }
        }
    }

    pub(crate) fn give_back(&self, bytes: u64) {
        if bytes > 0 {
            self.written.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn left(&self) -> u64 {
        self.max_write
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }
}

/// `ENOSPC` as a stream error: the guest reads it back with
/// `filesystem-error-code` as `insufficient-space`.
pub(crate) fn no_space() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(std::io::Error::from_raw_os_error(
        libc::ENOSPC,
    )))
}

/// A file's output stream that counts what is written against the task's
/// `max_write`. Its permits never exceed what is left; a write past the
/// budget fails with `ENOSPC`.
pub(crate) struct Metered {
    pub(crate) inner: DynOutputStream,
    pub(crate) meter: Arc<Meter>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Metered {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Metered {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let size = bytes.len() as u64;
        self.meter.take(size, true).map_err(|()| no_space())?;
        self.inner
            .write(bytes)
            .inspect_err(|_| self.meter.give_back(size))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let permit = self.inner.check_write()?;
        // With nothing left, the permit stays as it is (a permit of 0 means
        // "not ready" and would make the guest wait), and the write fails.
        Ok(match self.meter.left() {
            0 => permit,
            left => permit.min(usize::try_from(left).unwrap_or(usize::MAX)),
        })
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        let size = bytes.len() as u64;
        self.meter.take(size, true).map_err(|()| no_space())?;
        let written = self.inner.blocking_write_and_flush(bytes).await;
        written.inspect_err(|_| self.meter.give_back(size))
    }

    fn write_zeroes(&mut self, count: usize) -> StreamResult<()> {
        let size = count as u64;
        self.meter.take(size, true).map_err(|()| no_space())?;
        self.inner
            .write_zeroes(count)
            .inspect_err(|_| self.meter.give_back(size))
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_lasts_as_long_as_its_last_resource() {
        let mut handles = Handles::default();
        handles.open(1);
        handles.share(1, 2);
        handles.share(1, 3);
        handles.open(4);
        assert_eq!(handles.held(), 2);
        handles.close(1);
        handles.close(2);
        assert_eq!(handles.held(), 2, "stream 3 keeps the file open");
        handles.close(3);
        assert_eq!(handles.held(), 1);
        handles.close(3);
        handles.close(99);
        handles.share(99, 5);
        assert_eq!(handles.held(), 1);
    }

    #[test]
    fn the_write_budget_cuts_short_then_refuses() {
        let meter = FsLimits::new(
            &Limits {
                max_write: 10,
                ..Limits::default()
            },
            journal(),
        )
        .meter;
        assert_eq!(meter.take(4, false), Ok(4));
        assert_eq!(meter.take(8, true), Err(()));
        assert_eq!(meter.take(8, false), Ok(6));
        assert_eq!(meter.take(1, false), Err(()));
        assert_eq!(meter.take(0, true), Ok(0));
        meter.give_back(3);
        assert_eq!(meter.left(), 3);
        let lines = meter.journal.as_ref().unwrap().lock().lines.clone();
        assert_eq!(lines.len(), 1, "one line per kind of refusal: {lines:?}");
        assert!(lines[0].message.contains("max_write"), "{lines:?}");
    }

    fn journal() -> Journal {
        Journal::new(
            super::super::journal::TaskTags {
                id: "t".into(),
                task_type: "t".into(),
                queue: "default".into(),
            },
            1 << 16,
        )
    }
}
