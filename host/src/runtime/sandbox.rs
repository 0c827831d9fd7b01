//! The state of one sandbox: a fresh WASI context built from the task type's
//! grants, a resource table, the memory limiter and the journal.
//!
//! Nothing is granted unless the config says so: stdin is empty, stdout and
//! stderr go to the journal, there are no preopened directories, no env
//! vars, no sockets, no name lookups, and both clocks are frozen at the
//! task's start unless `clock = true`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{
    FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::CancelToken;
use super::follow_ups::FollowUps;
use super::fs_budget::FsLimits;
use super::http::Outbound;
use super::journal::{Journal, LogSource};
use crate::config::{SocketGrant, Transport};

/// What a task type is granted, resolved at start-up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    /// Preopened directories, in the order the guest sees them.
    pub dirs: Vec<GrantedDir>,
    /// Env vars with their values, read from the host at start-up.
    pub env: Vec<(String, String)>,
    pub clock: bool,
    pub network: Vec<SocketGrant>,
    pub enqueue: Vec<String>,
}

/// A directory granted to a task type.
#[derive(Debug, Clone)]
pub(crate) struct GrantedDir {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
    /// Whether the guest may create symbolic links in it (see `fs_limits`).
    pub symlinks: bool,
}

impl Grants {
    /// A WASI context with exactly these grants.
    pub fn wasi_ctx(&self, journal: &Journal, started: SystemTime) -> wasmtime::Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        b.stdout(Captured {
            journal: journal.clone(),
            source: LogSource::Stdout,
        });
        b.stderr(Captured {
            journal: journal.clone(),
            source: LogSource::Stderr,
        });
        if !self.env.is_empty() {
            b.envs(&self.env);
        }
        for dir in &self.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            b.preopened_dir(&dir.host, &dir.guest, perms)?;
        }
        if !self.clock {
            let wall = started
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            b.wall_clock(FrozenWall(wall));
            b.monotonic_clock(FrozenMonotonic);
        }
        if !self.network.is_empty() {
            let grants = Arc::new(self.network.clone());
            b.allow_tcp(grants.iter().any(|g| g.transport == Transport::Tcp));
            b.allow_udp(grants.iter().any(|g| g.transport == Transport::Udp));
            b.socket_addr_check(move |addr: SocketAddr, usage| {
                let ok = socket_use_allowed(&grants, addr, usage);
                Box::pin(async move { ok })
            });
        }
        Ok(b.build())
    }
}

/// What a guest may do with a socket: what a client needs, nothing more.
/// It may bind to the wildcard address and port 0 (the implicit bind before
/// a connect or a send), connect over TCP to a granted address, and send
/// datagrams to and receive them from a granted UDP address. It may never
/// bind a chosen address or port, listen or accept.
fn socket_use_allowed(grants: &[SocketGrant], addr: SocketAddr, usage: SocketAddrUse) -> bool {
    let any = |transport| grants.iter().any(|g| g.transport == transport);
    let granted = |transport| grants.iter().any(|g| g.allows(transport, addr));
    let ephemeral = addr.ip().is_unspecified() && addr.port() == 0;
    match usage {
        SocketAddrUse::TcpBind => ephemeral && any(Transport::Tcp),
        SocketAddrUse::TcpConnect => granted(Transport::Tcp),
        SocketAddrUse::UdpBind => ephemeral && any(Transport::Udp),
        SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => granted(Transport::Udp),
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
    }
}

/// The data of one sandbox's `Store`.
pub(crate) struct SandboxState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub journal: Journal,
    pub grants: Arc<Grants>,
    /// Handles held, bytes written and files created, against their limits.
    pub fs: FsLimits,
    /// Follow-up tasks asked for so far (sent by the worker on success).
    pub follow_ups: FollowUps,
    pub task_id: String,
    pub task_type: String,
    pub queue: String,
    pub max_payload: u64,
    pub deadline: Instant,
    pub cancel: Option<CancelToken>,
    /// wasi:http's state, and the hooks that check and send each request.
    pub http: WasiHttpCtx,
    pub outbound: Outbound,
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Why the host interrupted a running guest (carried by the trap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Interrupted {
    #[error("the task's time ran out")]
    Timeout,
    #[error("the task was cancelled")]
    Cancelled,
}

/// The guest asked for more memory than its limit (carried by the trap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory limit of {limit} bytes reached (asked for {desired})")]
pub(crate) struct MemoryLimitHit {
    pub limit: u64,
    pub desired: u64,
}

/// Enforces the memory limit and records the peak.
pub(crate) struct MemoryLimiter {
    pub limit: u64,
    pub peak: u64,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.limit {
            // An error, not `Ok(false)`: a failed `memory.grow` makes Rust
            // guests abort with a bare `unreachable`, which would read as a
            // panic. The error traps with a cause we can name.
            return Err(MemoryLimitHit {
                limit: self.limit,
                desired,
            }
            .into());
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A wall clock stuck at the task's start.
struct FrozenWall(Duration);

impl HostWallClock for FrozenWall {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that does not move.
struct FrozenMonotonic;

impl HostMonotonicClock for FrozenMonotonic {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// stdout or stderr of a guest, written into its journal. Writes never fail
/// (a full journal counts and drops lines), so `println!` never panics.
#[derive(Clone)]
struct Captured {
    journal: Journal,
    source: LogSource,
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.journal.write_output(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.journal.write_output(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
