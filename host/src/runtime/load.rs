//! Start-up: read each task type's module and its [`Footprint`] (before the
//! engine exists, since the pool is sized from them), make sure it is a
//! component that implements the `wasq:task/handler` world, compile it (or
//! load it from the cache) and prepare one `InstancePre` per task type.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

use super::RuntimeError;
use super::bindings::HandlerPre;
use super::cache::{CacheStatus, ComponentCache};
use super::footprint::Footprint;
use super::http::HttpPolicy;
use super::sandbox::{GrantedDir, Grants, SandboxState};
use crate::config::{Config, DirMode, Limits, TaskTypeConfig};
use crate::units::ByteSize;

/// The world handlers implement, as named in errors (the current version).
pub const WORLD: &str = "wasq:task/handler@0.2.0";

/// The versions of the `wasq:task` package the host runs handlers of,
/// newest first.
pub const WORLD_VERSIONS: [&str; 2] = ["0.2.0", "0.1.0"];

/// A task type ready to run.
pub(crate) struct TaskType {
    pub info: TaskTypeInfo,
    pub grants: Arc<Grants>,
    pub http: Arc<HttpPolicy>,
    pub pre: Pre,
}

/// A component prepared for instantiation, by the `wasq:task` version it
/// was built against.
#[derive(Clone)]
pub(crate) enum Pre {
    /// The current version.
    Current(HandlerPre<SandboxState>),
    /// 0.1.0.
    V0_1(super::bindings::v0_1::HandlerPre<SandboxState>),
}

/// What was loaded for a task type.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskTypeInfo {
    /// The task type.
    pub name: String,
    /// The module file.
    pub module: PathBuf,
    /// SHA-256 of the module file.
    pub module_hash: String,
    /// The module's size in bytes.
    pub module_size: u64,
    /// What one sandbox of it takes: core instances, memories, tables and
    /// linear memory at start.
    pub footprint: Footprint,
    /// The `wasq:task` version the module was built against (`"0.2.0"`).
    pub world_version: String,
    /// Whether the compiled code came from the cache.
    pub cache: CacheStatus,
    /// Time to compile or load it.
    #[serde(with = "super::serde_micros")]
    pub load_time: Duration,
    /// Its limits.
    #[serde(skip)]
    pub limits: Limits,
}

/// A module file read from disk, before anything is compiled.
pub(crate) struct ModuleFile {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The SHA-256 of `bytes`, hex.
    hash: String,
    /// What one sandbox of it takes.
    pub footprint: Footprint,
}

impl ModuleFile {
    /// The module's SHA-256, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// Reads the module of task type `name` and its footprint, and refuses one
/// whose memory at start does not fit the type's `memory` limit. A type
/// whose module comes from the registry takes its bytes from `registry`
/// (`None` when the registry has no version of it yet).
pub(crate) fn read(
    config: &Config,
    name: &str,
    task: &TaskTypeConfig,
    registry: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Option<ModuleFile>, RuntimeError> {
    if task.from_registry() {
        let Some(bytes) = registry.get(name) else {
            return Ok(None);
        };
        let hash = ComponentCache::module_hash(bytes);
        return from_bytes(config, name, task, bytes.clone(), hash).map(Some);
    }
    let path = config.resolve(task.module.get_ref());
    let bytes = std::fs::read(&path).map_err(|e| {
        RuntimeError::Config(config.invalid_at(
            task.module.span(),
            format!("tasks.{}.module", self::key(name)),
            format!("cannot read module {}: {e}", path.display()),
        ))
    })?;
    let hash = ComponentCache::module_hash(&bytes);
    checked(config, name, task, path, bytes, hash).map(Some)
}

/// Checks the bytes of a module from the registry whose SHA-256 is `hash`
/// (hex, of these bytes). Where a file's path would be, the module is
/// named `registry:<first 12 hex digits of its hash>`.
pub(crate) fn from_bytes(
    config: &Config,
    name: &str,
    task: &TaskTypeConfig,
    bytes: Vec<u8>,
    hash: String,
) -> Result<ModuleFile, RuntimeError> {
    let path = PathBuf::from(format!("registry:{}", &hash[..12.min(hash.len())]));
    checked(config, name, task, path, bytes, hash)
}

/// Checks a module's bytes (a component, readable, fitting the memory
/// limit) and reads its footprint.
fn checked(
    config: &Config,
    name: &str,
    task: &TaskTypeConfig,
    path: PathBuf,
    bytes: Vec<u8>,
    hash: String,
) -> Result<ModuleFile, RuntimeError> {
    let at = |key: &str, message: String| {
        RuntimeError::Config(config.invalid_at(
            task.module.span(),
            format!("tasks.{}.{key}", self::key(name)),
            message,
        ))
    };
    check_header(&bytes).map_err(|what| at("module", format!("{} is {what}", path.display())))?;
    let footprint = Footprint::of(&bytes).map_err(|e| {
        at(
            "module",
            format!("{} is not a readable component: {e}", path.display()),
        )
    })?;
    let limit = config.limits_of(name).unwrap_or_default().memory;
    if footprint.largest_memory > limit {
        return Err(at(
            "memory",
            format!(
                "module {} starts with {} of linear memory (its static data, stack and heap \
                 image), more than this task type's memory limit of {}: raise `memory`",
                path.display(),
                ByteSize(footprint.largest_memory),
                ByteSize(limit),
            ),
        ));
    }
    Ok(ModuleFile {
        path,
        bytes,
        hash,
        footprint,
    })
}

pub(crate) fn task_type(
    config: &Config,
    name: &str,
    task: &TaskTypeConfig,
    file: ModuleFile,
    engine: &Engine,
    linker: &Linker<SandboxState>,
    cache: &ComponentCache,
) -> Result<TaskType, RuntimeError> {
    let started = Instant::now();
    let ModuleFile {
        path: module,
        bytes,
        hash: module_hash,
        footprint,
    } = file;
    let at = |message: String| {
        RuntimeError::Config(config.invalid_at(
            task.module.span(),
            format!("tasks.{}.module", key(name)),
            message,
        ))
    };
    let (component, status) = cache
        .load(engine, &module_hash, &bytes)
        .map_err(|e| at(format!("{} does not compile: {e:#}", module.display())))?;
    let (pre, world_version) =
        prepare(linker, &component, engine).map_err(|message| RuntimeError::World {
            task_type: name.to_owned(),
            module: module.clone(),
            message,
        })?;
    let limits = config.limits_of(name).unwrap_or_default();
    let grants = grants(config, name, task)?;
    let http = HttpPolicy::of(config, name).map_err(|message| RuntimeError::Grant {
        task_type: name.to_owned(),
        message,
    })?;
    Ok(TaskType {
        info: TaskTypeInfo {
            name: name.to_owned(),
            module,
            module_hash,
            module_size: bytes.len() as u64,
            footprint,
            world_version,
            cache: status,
            load_time: started.elapsed(),
            limits,
        },
        grants: Arc::new(grants),
        http: Arc::new(http),
        pre,
    })
}

/// The same module as `old` under task type `name`'s settings in `config`
/// (limits, grants, outbound HTTP): what a reload does to a type whose
/// module did not change. Nothing is compiled.
pub(crate) fn retarget(
    old: &TaskType,
    config: &Config,
    name: &str,
    task: &TaskTypeConfig,
) -> Result<TaskType, RuntimeError> {
    let limits = config.limits_of(name).unwrap_or_default();
    if old.info.footprint.largest_memory > limits.memory {
        return Err(RuntimeError::Config(config.invalid_at(
            task.module.span(),
            format!("tasks.{}.memory", key(name)),
            format!(
                "module {} starts with {} of linear memory, more than the new memory limit of {}",
                old.info.module.display(),
                ByteSize(old.info.footprint.largest_memory),
                ByteSize(limits.memory),
            ),
        )));
    }
    let grants = grants(config, name, task)?;
    let http = HttpPolicy::of(config, name).map_err(|message| RuntimeError::Grant {
        task_type: name.to_owned(),
        message,
    })?;
    let mut info = old.info.clone();
    info.limits = limits;
    Ok(TaskType {
        info,
        grants: Arc::new(grants),
        http: Arc::new(http),
        pre: old.pre.clone(),
    })
}

fn key(name: &str) -> String {
    crate::config::toml_key(name)
}

/// Tells a component from a core module or from something that is not wasm.
fn check_header(bytes: &[u8]) -> Result<(), &'static str> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(
            "a core WebAssembly module, not a component: build the handler for wasm32-wasip2 \
             (cargo build --target wasm32-wasip2), or wrap it with `wasm-tools component new`",
        ),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', ..]) => Err("a WebAssembly binary of an unknown version"),
        _ => Err("not a WebAssembly file"),
    }
}

/// The `wasq:task` versions a component's imports name (`wasq:task/types@0.1.0`
/// gives "0.1.0"), each once.
fn imported_versions(component: &Component, engine: &Engine) -> Vec<String> {
    let mut versions: Vec<String> = component
        .component_type()
        .imports(engine)
        .filter_map(|(name, _)| name.strip_prefix("wasq:task/")?.split_once('@'))
        .map(|(_, version)| version.to_owned())
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// Checks that the component implements a world the host runs (the
/// current one, or 0.1.0) and prepares it.
fn prepare(
    linker: &Linker<SandboxState>,
    component: &Component,
    engine: &Engine,
) -> Result<(Pre, String), String> {
    let ty = component.component_type();
    match ty.get_export(engine, "handle").map(|e| e.ty) {
        Some(ComponentItem::ComponentFunc(_)) => {}
        Some(_) => {
            return Err(format!(
                "it exports `handle`, but not as a function, so it does not implement {WORLD}"
            ));
        }
        None => {
            let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
            let exports = if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            };
            return Err(format!(
                "missing export `handle` of world {WORLD} (it exports: {exports}); \
                 export a handler with wasq_guest::export_handler!"
            ));
        }
    }
    let versions = imported_versions(component, engine);
    let version = match versions.as_slice() {
        // `handle` with no wasq:task import at all: the current world's
        // type check below says what is wrong.
        [] => WORLD_VERSIONS[0].to_owned(),
        [one] if WORLD_VERSIONS.contains(&one.as_str()) => one.clone(),
        [one] => {
            return Err(format!(
                "it was built against wasq:task@{one}, and this host runs handlers of \
                 wasq:task@{} (rebuild it with this host's SDK, or run a wasq that knows \
                 {one})",
                WORLD_VERSIONS.join(" and @")
            ));
        }
        several => {
            return Err(format!(
                "it imports several versions of wasq:task ({}); build it against one",
                several.join(", ")
            ));
        }
    };
    let world = format!("wasq:task/handler@{version}");
    let pre = linker.instantiate_pre(component).map_err(|e| {
        format!("its imports do not match what the host provides for {world}: {e:#}")
    })?;
    let pre = if version == "0.1.0" {
        super::bindings::v0_1::HandlerPre::new(pre).map(Pre::V0_1)
    } else {
        HandlerPre::new(pre).map(Pre::Current)
    };
    let pre =
        pre.map_err(|e| format!("export `handle` does not have the type of {world}: {e:#}"))?;
    Ok((pre, version))
}

fn grants(config: &Config, name: &str, task: &TaskTypeConfig) -> Result<Grants, RuntimeError> {
    let mut dirs = Vec::new();
    for dir in &task.dirs {
        let host = config.resolve(&dir.host);
        if !host.is_dir() {
            return Err(RuntimeError::Grant {
                task_type: name.to_owned(),
                message: format!("granted directory {} does not exist", host.display()),
            });
        }
        dirs.push(GrantedDir {
            host,
            guest: dir.guest.clone(),
            writable: dir.mode == DirMode::ReadWrite,
            symlinks: dir.symlinks,
        });
    }
    let mut env = Vec::new();
    for var in &task.env {
        match std::env::var(var) {
            Ok(value) => env.push((var.clone(), value)),
            Err(_) => tracing::warn!(
                task_type = name,
                "granted env var {var} is not set on the host; the guest will not see it"
            ),
        }
    }
    let network = task
        .network
        .iter()
        .filter_map(|g| crate::config::parse_socket_grant(g).ok())
        .collect();
    Ok(Grants {
        dirs,
        env,
        clock: task.clock,
        network,
        enqueue: task.enqueue.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::check_header;

    #[test]
    fn headers_tell_components_from_modules() {
        assert!(check_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        assert!(
            check_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(
            check_header(b"hello world")
                .unwrap_err()
                .contains("not a WebAssembly file")
        );
    }
}
