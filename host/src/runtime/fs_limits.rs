//! Per-task limits on what a guest holds and writes through WASI, and the
//! rules for links in its granted directories.
//!
//! wasmtime-wasi confines every path to a granted directory but counts
//! nothing: one guest could hold all of the worker's file descriptors, or
//! fill its disk. So [`add_to_linker`] defines again, over wasmtime-wasi's
//! definitions in the component linker (shadowing), the WASI functions that
//! open a handle, write bytes or create an entry. Each checks the task's
//! budget in [`FsLimits`] (part of the store's `SandboxState`), then calls
//! wasmtime-wasi's own implementation. Going over a limit fails that call
//! inside the guest with an error code it sees (`std::fs` returns an `Err`),
//! never with a trap, and the first refusal of each kind puts a `warn` line
//! naming the limit into the task's logs (`refused by host: ...`).
//!
//! | limit | what counts | over it, the call fails with |
//! | --- | --- | --- |
//! | `max_handles` | handles held at once: files and directories opened with `open-at`, listings from `read-directory`, TCP and UDP sockets | `quota` (`EDQUOT`) for files, `new-socket-limit` (`EMFILE`) for sockets |
//! | `max_write` | bytes written per task: `write`, the streams of `write-via-stream` and `append-via-stream`, a file grown by `set-size` | `insufficient-space` (`ENOSPC`); a write that straddles the limit is cut short at it. A stream's write fails with `ENOSPC` as its last-operation error, which wasi-libc (no `filesystem-error-code` call) reports as `EIO` |
//! | `max_files` | entries created per task: files (`open-at` with `create` on a path that did not exist), directories, symbolic and hard links | `quota` (`EDQUOT`) |
//!
//! A handle is held from the call that opens it until the guest drops the
//! last resource that keeps its file descriptor open: a file's streams
//! (`read-via-stream`, ...) keep the file open after its descriptor is
//! dropped, so they count as part of the file's handle. A socket's streams
//! are its children in the resource table and cannot outlive it. The
//! preopened directories are free. The resource destructors of
//! `descriptor`, `directory-entry-stream`, `input-stream`, `output-stream`,
//! `tcp-socket` and `udp-socket` are defined again to see the drops.
//! Listening is always refused (see `sandbox`), so `accept` never opens one.
//!
//! Links:
//! - `symlink-at` is refused (`not-permitted`) unless the grant has
//!   `symlinks = true`. Even then a link must point down from its own
//!   directory: its target is relative and has no `..` component. Such a
//!   link resolves inside its directory wherever it is later moved or
//!   hard-linked to, while a target with `..` that stays inside today leaves
//!   the grant once its directory is renamed to a shallower place.
//! - `link-at` (hard links) is allowed only between two directories of the
//!   same grant (wasmtime-wasi already requires both to be writable):
//!   otherwise it fails with `cross-device` (`EXDEV`), as across file
//!   systems, so a guest cannot tie a file of one grant into another.
//!
//! [`host_short_of_resources`] tells a host out of file descriptors or
//! memory from a broken grant, so such a task is requeued, not failed.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::TrappableError;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, Filesize, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::sockets::network::{self, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, FsError, ReaddirIterator, SocketError, TcpSocket, UdpSocket,
};
use wasmtime_wasi::sockets::WasiSocketsView as _;

use super::fs_budget::{Metered, Refusal};
use super::sandbox::SandboxState;
use crate::config::Config;

/// The WASI 0.2 interfaces wasmtime-wasi defines, by the names it defines
/// them under (guests importing an older 0.2 version are linked to them).
/// A definition under another name would not shadow the original: the
/// tests in `tests/e2e/fs_limits.rs` fail if these fall out of step.
const FS_TYPES: &str = "wasi:filesystem/types@0.2.12";
const FS_PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";
const IO_STREAMS: &str = "wasi:io/streams@0.2.12";
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";
const TCP_CREATE: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const UDP_CREATE: &str = "wasi:sockets/udp-create-socket@0.2.12";

/// File descriptors kept free for the worker itself (Redis connections,
/// compiled-module files, the runtime) when sizing `RLIMIT_NOFILE`.
const RESERVED_FDS: u64 = 1024;

/// A WASI result as the component model returns it: the error code for the
/// guest, or the trap.
fn lower<T, E>(result: Result<T, TrappableError<E>>) -> wasmtime::Result<Result<T, E>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => error.downcast().map(Err),
    }
}

type Store<'a> = StoreContextMut<'a, SandboxState>;
type FsResult<T> = Result<T, FsError>;

/// Defines the counting functions over wasmtime-wasi's in `linker` (which
/// must already have WASI 0.2 in it).
pub(crate) fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    add_filesystem(linker)?;
    add_streams(linker)?;
    add_sockets(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn add_filesystem(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    let mut preopens = linker.instance(FS_PREOPENS)?;
    preopens.func_wrap("get-directories", |mut store: Store<'_>, (): ()| {
        let state = store.data_mut();
        let dirs = preopens::Host::get_directories(&mut state.filesystem())?;
        // In the order of `Grants::dirs`, as the WASI context was built.
        for (grant, (dir, _)) in dirs.iter().enumerate() {
            state.fs.grant_of.insert(dir.rep(), grant);
        }
        Ok((dirs,))
    })?;

    let mut types = linker.instance(FS_TYPES)?;
    types.resource(
        "descriptor",
        ResourceType::host::<Descriptor>(),
        |mut store, rep| {
            let state = store.data_mut();
            state.table.delete(Resource::<Descriptor>::new_own(rep))?;
            state.fs.handles.close(rep);
            state.fs.grant_of.remove(&rep);
            Ok(())
        },
    )?;
    types.resource(
        "directory-entry-stream",
        ResourceType::host::<ReaddirIterator>(),
        |mut store, rep| {
            let state = store.data_mut();
            state
                .table
                .delete(Resource::<ReaddirIterator>::new_own(rep))?;
            state.fs.handles.close(rep);
            Ok(())
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: Store<'_>,
         (dir, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                Ok((lower(
                    open_at(state, dir, path_flags, path, oflags, flags).await,
                )?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.read-directory",
        |mut store: Store<'_>, (dir,): (Resource<Descriptor>,)| {
            Box::new(async move {
                let state = store.data_mut();
                Ok((lower(read_directory(state, dir).await)?,))
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.read-via-stream",
        |mut store: Store<'_>, (file, offset): (Resource<Descriptor>, Filesize)| {
            let state = store.data_mut();
            let from = file.rep();
            let stream = HostDescriptor::read_via_stream(&mut state.filesystem(), file, offset);
            if let Ok(stream) = &stream {
                state.fs.handles.share(from, stream.rep());
            }
            Ok((lower(stream)?,))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: Store<'_>, (file, offset): (Resource<Descriptor>, Filesize)| {
            let state = store.data_mut();
            let from = file.rep();
            let stream = HostDescriptor::write_via_stream(&mut state.filesystem(), file, offset);
            Ok((lower(metered(state, from, stream))?,))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store: Store<'_>, (file,): (Resource<Descriptor>,)| {
            let state = store.data_mut();
            let from = file.rep();
            let stream = HostDescriptor::append_via_stream(&mut state.filesystem(), file);
            Ok((lower(metered(state, from, stream))?,))
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store: Store<'_>,
         (file, buffer, offset): (Resource<Descriptor>, Vec<u8>, Filesize)| {
            Box::new(async move {
                let state = store.data_mut();
                Ok((lower(write(state, file, buffer, offset).await)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store: Store<'_>, (file, size): (Resource<Descriptor>, Filesize)| {
            Box::new(async move {
                let state = store.data_mut();
                Ok((lower(set_size(state, file, size).await)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store: Store<'_>, (dir, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let state = store.data_mut();
                Ok((lower(create_directory_at(state, dir, path).await)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store: Store<'_>, (dir, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let state = store.data_mut();
                Ok((lower(symlink_at(state, dir, target, link).await)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store: Store<'_>,
         (dir, old_flags, old_path, new_dir, new_path): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                let linked = link_at(state, dir, old_flags, old_path, new_dir, new_path).await;
                Ok((lower(linked)?,))
            })
        },
    )?;
    Ok(())
}

/// Stream destructors: a file's streams keep its handle open.
fn add_streams(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    let mut streams = linker.instance(IO_STREAMS)?;
    streams.resource_async(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        |mut store, rep| {
            Box::new(async move {
                let state = store.data_mut();
                let mut stream = state
                    .table
                    .delete(Resource::<DynInputStream>::new_own(rep))?;
                state.fs.handles.close(rep);
                stream.cancel().await;
                Ok(())
            })
        },
    )?;
    streams.resource_async(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        |mut store, rep| {
            Box::new(async move {
                let state = store.data_mut();
                let mut stream = state
                    .table
                    .delete(Resource::<DynOutputStream>::new_own(rep))?;
                state.fs.handles.close(rep);
                stream.cancel().await;
                Ok(())
            })
        },
    )?;
    Ok(())
}

fn add_sockets(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    let mut tcp_create = linker.instance(TCP_CREATE)?;
    tcp_create.func_wrap(
        "create-tcp-socket",
        |mut store: Store<'_>, (family,): (IpAddressFamily,)| {
            let state = store.data_mut();
            if state.fs.admit_handle("create-tcp-socket").is_err() {
                return Ok((Err(network::ErrorCode::NewSocketLimit),));
            }
            let socket = tcp_create_socket::Host::create_tcp_socket(&mut state.sockets(), family);
            if let Ok(socket) = &socket {
                state.fs.handles.open(socket.rep());
            }
            Ok((lower(socket)?,))
        },
    )?;
    let mut udp_create = linker.instance(UDP_CREATE)?;
    udp_create.func_wrap_async(
        "create-udp-socket",
        |mut store: Store<'_>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let state = store.data_mut();
                if state.fs.admit_handle("create-udp-socket").is_err() {
                    return Ok((Err(network::ErrorCode::NewSocketLimit),));
                }
                let socket: Result<_, SocketError> =
                    udp_create_socket::Host::create_udp_socket(&mut state.sockets(), family).await;
                if let Ok(socket) = &socket {
                    state.fs.handles.open(socket.rep());
                }
                Ok((lower(socket)?,))
            })
        },
    )?;
    let mut tcp = linker.instance(TCP)?;
    tcp.resource(
        "tcp-socket",
        ResourceType::host::<TcpSocket>(),
        |mut store, rep| {
            let state = store.data_mut();
            state.table.delete(Resource::<TcpSocket>::new_own(rep))?;
            state.fs.handles.close(rep);
            Ok(())
        },
    )?;
    let mut udp = linker.instance(UDP)?;
    udp.resource(
        "udp-socket",
        ResourceType::host::<UdpSocket>(),
        |mut store, rep| {
            let state = store.data_mut();
            state.table.delete(Resource::<UdpSocket>::new_own(rep))?;
            state.fs.handles.close(rep);
            Ok(())
        },
    )?;
    Ok(())
}

async fn open_at(
    state: &mut SandboxState,
    dir: Resource<Descriptor>,
    path_flags: PathFlags,
    path: String,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> FsResult<Resource<Descriptor>> {
    let at = dir.rep();
    state
        .fs
        .admit_handle("open-at")
        .map_err(|()| ErrorCode::Quota)?;
    let creates = oflags.contains(OpenFlags::CREATE) && !exists(state, at, path_flags, &path).await;
    if creates {
        state.fs.admit_create("open-at with create")?;
    }
    let opened = HostDescriptor::open_at(
        &mut state.filesystem(),
        dir,
        path_flags,
        path,
        oflags,
        flags,
    )
    .await?;
    state.fs.handles.open(opened.rep());
    if let Some(&grant) = state.fs.grant_of.get(&at) {
        state.fs.grant_of.insert(opened.rep(), grant);
    }
    if creates {
        state.fs.created += 1;
    }
    Ok(opened)
}

/// Whether `path` names an entry under directory `at` (anything but "no
/// such entry" counts as there, so nothing is counted that is not created).
async fn exists(state: &mut SandboxState, at: u32, flags: PathFlags, path: &str) -> bool {
    let stat = HostDescriptor::stat_at(
        &mut state.filesystem(),
        Resource::new_borrow(at),
        flags,
        path.to_owned(),
    )
    .await;
    match stat {
        Ok(_) => true,
        Err(error) => !matches!(error.downcast_ref(), Some(ErrorCode::NoEntry)),
    }
}

async fn read_directory(
    state: &mut SandboxState,
    dir: Resource<Descriptor>,
) -> FsResult<Resource<ReaddirIterator>> {
    state
        .fs
        .admit_handle("read-directory")
        .map_err(|()| ErrorCode::Quota)?;
    let listing = HostDescriptor::read_directory(&mut state.filesystem(), dir).await?;
    state.fs.handles.open(listing.rep());
    Ok(listing)
}

/// Wraps a new output stream of file `from` in a [`Metered`] one.
fn metered(
    state: &mut SandboxState,
    from: u32,
    stream: FsResult<Resource<DynOutputStream>>,
) -> FsResult<Resource<DynOutputStream>> {
    let inner = state.table.delete(stream?)?;
    let stream: DynOutputStream = Box::new(Metered {
        inner,
        meter: state.fs.meter.clone(),
    });
    let stream = state.table.push(stream)?;
    state.fs.handles.share(from, stream.rep());
    Ok(stream)
}

async fn write(
    state: &mut SandboxState,
    file: Resource<Descriptor>,
    mut buffer: Vec<u8>,
    offset: Filesize,
) -> FsResult<Filesize> {
    let meter = state.fs.meter.clone();
    let granted = meter
        .take(buffer.len() as u64, false)
        .map_err(|()| ErrorCode::InsufficientSpace)?;
    buffer.truncate(granted as usize);
    let written = HostDescriptor::write(&mut state.filesystem(), file, buffer, offset).await;
    meter.give_back(granted - written.as_ref().map_or(0, |n| (*n).min(granted)));
    written
}

async fn set_size(
    state: &mut SandboxState,
    file: Resource<Descriptor>,
    size: Filesize,
) -> FsResult<()> {
    let current = HostDescriptor::stat(&mut state.filesystem(), Resource::new_borrow(file.rep()))
        .await?
        .size;
    let growth = size.saturating_sub(current);
    let meter = state.fs.meter.clone();
    meter
        .take(growth, true)
        .map_err(|()| ErrorCode::InsufficientSpace)?;
    let resized = HostDescriptor::set_size(&mut state.filesystem(), file, size).await;
    if resized.is_err() {
        meter.give_back(growth);
    }
    resized
}

async fn create_directory_at(
    state: &mut SandboxState,
    dir: Resource<Descriptor>,
    path: String,
) -> FsResult<()> {
    state.fs.admit_create("create-directory-at")?;
    HostDescriptor::create_directory_at(&mut state.filesystem(), dir, path).await?;
    state.fs.created += 1;
    Ok(())
}

async fn symlink_at(
    state: &mut SandboxState,
    dir: Resource<Descriptor>,
    target: String,
    link: String,
) -> FsResult<()> {
    let grant = state
        .fs
        .grant_of
        .get(&dir.rep())
        .and_then(|&grant| state.grants.dirs.get(grant));
    let refused = match grant {
        Some(grant) if grant.symlinks => check_symlink_target(&target).err().map(|why| {
            format!(
                "symlink-at {link:?} -> {target:?} refused: {why}; a link must point down from its \
                 own directory"
            )
        }),
        Some(grant) => Some(format!(
            "symlink-at {link:?} refused: the grant {:?} does not allow symbolic links (symlinks \
             = true on its dirs entry)",
            grant.guest
        )),
        None => Some(format!(
            "symlink-at {link:?} refused: not under a granted directory"
        )),
    };
    if let Some(message) = refused {
        state.fs.meter.refuse(Refusal::Symlink, message);
        return Err(ErrorCode::NotPermitted.into());
    }
    state.fs.admit_create("symlink-at")?;
    HostDescriptor::symlink_at(&mut state.filesystem(), dir, target, link).await?;
    state.fs.created += 1;
    Ok(())
}

/// A symbolic link's target as a grant with `symlinks = true` accepts it:
/// relative, without `..`, so it resolves below the link's directory.
fn check_symlink_target(target: &str) -> Result<(), &'static str> {
    if target.is_empty() {
        Err("the target is empty")
    } else if target.starts_with('/') {
        Err("the target is absolute")
    } else if target.split('/').any(|part| part == "..") {
        Err("the target climbs with `..`")
    } else {
        Ok(())
    }
}

async fn link_at(
    state: &mut SandboxState,
    dir: Resource<Descriptor>,
    old_flags: PathFlags,
    old_path: String,
    new_dir: Resource<Descriptor>,
    new_path: String,
) -> FsResult<()> {
    let from = state.fs.grant_of.get(&dir.rep());
    if from.is_none() || from != state.fs.grant_of.get(&new_dir.rep()) {
        state.fs.meter.refuse(
            Refusal::HardLink,
            format!(
                "link-at {old_path:?} -> {new_path:?} refused: a hard link must stay within one \
                 granted directory"
            ),
        );
        return Err(ErrorCode::CrossDevice.into());
    }
    state.fs.admit_create("link-at")?;
    HostDescriptor::link_at(
        &mut state.filesystem(),
        dir,
        old_flags,
        old_path,
        new_dir,
        new_path,
    )
    .await?;
    state.fs.created += 1;
    Ok(())
}

/// Whether `error` says the host ran out of file descriptors or memory
/// (`EMFILE`, `ENFILE`, `ENOMEM`), rather than that something is wrong
/// with the task or its grants.
pub(crate) fn host_short_of_resources(error: &wasmtime::Error) -> bool {
    let short = |error: &std::io::Error| {
        matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
        )
    };
    error.downcast_ref::<std::io::Error>().is_some_and(short)
        || error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
            .any(short)
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to what the
/// sandboxes may hold at once (`max_sandboxes` × the largest `max_handles`
/// plus granted directories, and [`RESERVED_FDS`] for the worker), up to
/// the hard limit; warns when the hard limit is lower. Tasks the host then
/// has no descriptors for are requeued
/// ([`Failure::HostResources`](super::Failure::HostResources)).
pub(crate) fn raise_fd_limit(config: &Config) {
    let per_task = config
        .tasks
        .iter()
        .filter_map(|(name, task)| {
            let limits = config.limits_of(name)?;
            Some(u64::from(limits.max_handles) + task.dirs.len() as u64)
        })
        .max()
        .unwrap_or(0);
    let wanted = per_task
        .saturating_mul(u64::from(config.runtime.max_sandboxes))
        .saturating_add(RESERVED_FDS);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    if soft >= wanted {
        return;
    }
    let raised = wanted.min(hard);
    if raised > soft {
        limit.rlim_cur = raised;
        // SAFETY: `setrlimit` only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return;
        }
    }
    if raised < wanted {
        tracing::warn!(
            "the limit on open files is {raised}, below the {wanted} that {} sandboxes may hold \
             (max_handles and granted dirs per task, and {RESERVED_FDS} for the worker); tasks \
             the host has no descriptors for are requeued. Raise the hard limit (ulimit -Hn, \
             systemd's LimitNOFILE=) or lower max_sandboxes or max_handles",
            config.runtime.max_sandboxes
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_must_point_down() {
        for ok in ["inside.txt", "sub/file", "./sub", "a..b", "sub/.hidden"] {
            assert_eq!(check_symlink_target(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "sub/../../x", "sub/..", ".."] {
            assert!(check_symlink_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_shortages_are_told_from_other_errors() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let error = wasmtime::Error::new(emfile).context("opening /data");
        assert!(host_short_of_resources(&error));
        let enfile = wasmtime::Error::new(std::io::Error::from_raw_os_error(libc::ENFILE));
        assert!(host_short_of_resources(&enfile));
        let missing = wasmtime::Error::new(std::io::Error::from_raw_os_error(libc::ENOENT))
            .context("opening /data");
        assert!(!host_short_of_resources(&missing));
        assert!(!host_short_of_resources(&wasmtime::format_err!(
            "Too many open files"
        )));
    }
}
