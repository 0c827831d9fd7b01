//! New versions of a task type's module while the runtime runs: prepared
//! off the task path (compiled or loaded from the cache, checked against the
//! world, the type's limits and the pool, and instantiated once), then
//! installed between tasks.
//!
//! ```text
//! prepare(type, bytes)   header, footprint vs memory limit and pool → compile
//!                        (cache by hash) → world check → InstancePre
//! try_instance(version)  one throwaway instance, no call: start-up traps,
//!                        pool limits and the memory limit show here
//! install(version)       the type's Arc is replaced; tasks already running
//!                        keep the old one to their end
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use wasmtime::component::Linker;

use super::cache::ComponentCache;
use super::footprint::Footprint;
use super::journal::TaskTags;
use super::load::{self, Pre, TaskType};
use super::sandbox::SandboxState;
use super::{Runtime, RuntimeError, TaskTypeInfo};
use crate::config::Config;
use crate::units::ByteSize;

/// The least a pool serving registry types is sized for, so a later version
/// a little larger than the first (a few more core instances, as a Python or
/// JavaScript component has) still fits without a restart.
pub(crate) const REGISTRY_FLOOR: Footprint = Footprint {
    core_instances: 24,
    memories: 2,
    tables: 8,
    initial_memory: 0,
    largest_memory: 0,
    largest_table: 0,
    memories_per_module: 1,
    tables_per_module: 2,
};

/// What a runtime keeps to load later versions with.
pub(crate) struct Loader {
    /// The config the task types were loaded from (replaced by
    /// [`Runtime::reconfigure`]).
    pub config: RwLock<Arc<Config>>,
    pub linker: Linker<SandboxState>,
    pub cache: ComponentCache,
    /// What the pool was sized for.
    pub pool: Footprint,
    /// The largest memory limit the pool's slots hold.
    pub max_memory: u64,
    /// Bumped by each reload: a version prepared under an older config is
    /// not installed (it would carry the old limits and grants).
    pub generation: AtomicU64,
    /// Held while a version is installed and while a reload commits, so
    /// neither overwrites the other.
    pub swap: Mutex<()>,
}

impl Loader {
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What a reload changed in the task types.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconfigured {
    /// Types added.
    pub added: Vec<String>,
    /// Types removed.
    pub removed: Vec<String>,
    /// Types that run another module file now.
    pub new_modules: Vec<String>,
    /// Types whose limits, grants or HTTP settings changed.
    pub resettled: Vec<String>,
}

/// A module version ready to install for a task type.
pub struct Version {
    task_type: TaskType,
    /// The config generation it was prepared under.
    generation: u64,
}

impl Version {
    /// What was loaded.
    pub fn info(&self) -> &TaskTypeInfo {
        &self.task_type.info
    }
}

impl Runtime {
    /// The task types of the config whose module comes from the registry.
    pub fn registry_types(&self) -> Vec<String> {
        self.loader
            .config()
            .tasks
            .iter()
            .filter(|(_, t)| t.from_registry())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The SHA-256 of the module `task_type` runs now (its current
    /// version, not a canary).
    pub fn module_hash_of(&self, task_type: &str) -> Option<String> {
        self.read_types()
            .get(task_type)
            .map(|t| t.info.module_hash.clone())
    }

    /// The canary of `task_type`, if it has one: its hash and the share of
    /// tasks (0-100 %) that run it.
    pub fn canary_of(&self, task_type: &str) -> Option<(String, f64)> {
        self.canaries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_type)
            .map(|(t, share)| (t.info.module_hash.clone(), share * 100.0))
    }

    /// Runs `version` for `percent` (0-100) of its type's tasks, beside the
    /// current version, replacing any canary the type had; [`Stale`] when
    /// the config was reloaded after `version` was prepared.
    pub fn install_canary(&self, version: Version, percent: f64) -> Result<(), Stale> {
        let _swap = self.loader.swap.lock().unwrap_or_else(|e| e.into_inner());
        self.check_generation(&version)?;
        let name = version.task_type.info.name.clone();
        self.canaries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name,
                (
                    Arc::new(version.task_type),
                    (percent / 100.0).clamp(0.0, 1.0),
                ),
            );
        Ok(())
    }

    /// Changes the share of `task_type`'s canary; false when it has none.
    pub fn set_canary_share(&self, task_type: &str, percent: f64) -> bool {
        match self
            .canaries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(task_type)
        {
            Some((_, share)) => {
                *share = (percent / 100.0).clamp(0.0, 1.0);
                true
            }
            None => false,
        }
    }

    /// Ends `task_type`'s canary; returns its hash.
    pub fn end_canary(&self, task_type: &str) -> Option<String> {
        self.canaries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_type)
            .map(|(t, _)| t.info.module_hash.clone())
    }

    /// Whether `task_type` is a registry type with no version yet.
    pub(crate) fn waits_for_registry(&self, task_type: &str) -> bool {
        self.loader
            .config()
            .tasks
            .get(task_type)
            .is_some_and(|t| t.from_registry())
    }

    /// Prepares `bytes` as the next version of `task_type`: checks it as
    /// start-up does (a component, its memory at start within the type's
    /// limit, the world) and that it fits the pool, and compiles it (or
    /// loads it from the cache). `hash` is the SHA-256 of `bytes` (hex),
    /// which the caller has verified; it names the compiled-code cache
    /// entry. CPU-heavy: call it off the async runtime's threads.
    pub fn prepare(&self, task_type: &str, bytes: Vec<u8>, hash: &str) -> Result<Version, String> {
        let generation = self.loader.generation.load(Ordering::SeqCst);
        let config = &*self.loader.config();
        let task = config
            .tasks
            .get(task_type)
            .ok_or_else(|| format!("task type {task_type:?} is not in this worker's config"))?;
        let file = load::from_bytes(config, task_type, task, bytes, hash.to_owned())
            .map_err(|e| e.to_string())?;
        fits(&file.footprint, &self.loader.pool)?;
        let task_type = load::task_type(
            config,
            task_type,
            task,
            file,
            &self.engine,
            &self.loader.linker,
            &self.loader.cache,
        )
        .map_err(|e| e.to_string())?;
        Ok(Version {
            task_type,
            generation,
        })
    }

    /// Instantiates `version` once in a sandbox of its type (without
    /// calling it), so a version that cannot start is refused before any
    /// task runs on it.
    pub async fn try_instance(&self, version: &Version) -> Result<(), String> {
        let Ok(_slot) = self.slots.acquire().await else {
            unreachable!("the sandbox semaphore is never closed")
        };
        let info = &version.task_type.info;
        let tags = TaskTags {
            id: "module-check".into(),
            task_type: info.name.clone(),
            queue: String::new(),
        };
        let deadline = Instant::now() + info.limits.timeout.min(Duration::from_secs(10));
        let (mut store, _journal, _calls, _fuel) = self
            .new_store(&version.task_type, tags, deadline, None)
            .map_err(|f| f.to_string())?;
        let instantiated = match &version.task_type.pre {
            Pre::Current(pre) => pre.instantiate_async(&mut store).await.map(drop),
            Pre::V0_1(pre) => pre.instantiate_async(&mut store).await.map(drop),
        };
        instantiated.map_err(|e| format!("it cannot be instantiated: {e:#}"))
    }

    /// Makes `version` the one its task type runs: tasks that start from
    /// now on run it, tasks already running finish on theirs. Returns the
    /// hash it replaced ("" for none), or [`Stale`] when the config was
    /// reloaded after `version` was prepared (prepare it again).
    pub fn install(&self, version: Version) -> Result<String, Stale> {
        let _swap = self.loader.swap.lock().unwrap_or_else(|e| e.into_inner());
        self.check_generation(&version)?;
        let name = version.task_type.info.name.clone();
        let mut types = self.types.write().unwrap_or_else(|e| e.into_inner());
        Ok(types
            .insert(name, Arc::new(version.task_type))
            .map(|old| old.info.module_hash.clone())
            .unwrap_or_default())
    }

    fn check_generation(&self, version: &Version) -> Result<(), Stale> {
        if version.generation == self.loader.generation.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Stale)
        }
    }
}

/// A version prepared under a config that has since been reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale;

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the config was reloaded while this version was prepared")
    }
}

impl Runtime {
    /// Loads the task types of `config` in place of the current ones, all
    /// or nothing: types whose module is unchanged (same file bytes, or a
    /// registry type) keep their compiled code and take the new limits and
    /// grants; changed or new files are loaded as at start (from the cache
    /// when compiled before); new registry types wait for their version.
    /// Tasks already running finish on what they started with. Refused when
    /// a new limit or module does not fit the pool sized at start.
    /// CPU-heavy when files changed: call it from `spawn_blocking`.
    pub fn reconfigure(&self, config: &Config) -> Result<Reconfigured, RuntimeError> {
        let old_config = self.loader.config();
        let old = self.read_types().clone();
        let mut types = BTreeMap::new();
        let mut changes = Reconfigured::default();
        for (name, task) in &config.tasks {
            let limits = config.limits_of(name).unwrap_or_default();
            if limits.memory > self.loader.max_memory {
                return Err(RuntimeError::Config(config.invalid_at(
                    task.module.span(),
                    format!("tasks.{}.memory", crate::config::toml_key(name)),
                    format!(
                        "{} is more than the {} this worker's sandboxes were sized for at \
                         start: restart the worker to raise it",
                        ByteSize(limits.memory),
                        ByteSize(self.loader.max_memory)
                    ),
                )));
            }
            let before = old_config.tasks.get(name);
            let same_source = before.is_some_and(|b| b.from_registry() == task.from_registry());
            let file = if task.from_registry() {
                None
            } else {
                load::read(config, name, task, &BTreeMap::new())?
            };
            let loaded = match (old.get(name), file) {
                // A registry type: its version stays, its settings change.
                (Some(old_type), None) if same_source => {
                    Some(load::retarget(old_type, config, name, task)?)
                }
                (_, None) => None,
                (Some(old_type), Some(file))
                    if same_source && file.hash() == old_type.info.module_hash =>
                {
                    Some(load::retarget(old_type, config, name, task)?)
                }
                (_, Some(file)) => {
                    fits(&file.footprint, &self.loader.pool).map_err(|message| {
                        RuntimeError::World {
                            task_type: name.clone(),
                            module: config.resolve(task.module.get_ref()),
                            message,
                        }
                    })?;
                    if before.is_some() {
                        changes.new_modules.push(name.clone());
                    }
                    Some(load::task_type(
                        config,
                        name,
                        task,
                        file,
                        &self.engine,
                        &self.loader.linker,
                        &self.loader.cache,
                    )?)
                }
            };
            match before {
                None => changes.added.push(name.clone()),
                Some(b)
                    if !changes.new_modules.contains(name)
                        && (old_config.limits_of(name) != config.limits_of(name)
                            || !same_grants(b, task)) =>
                {
                    changes.resettled.push(name.clone())
                }
                _ => {}
            }
            if let Some(loaded) = loaded {
                types.insert(name.clone(), Arc::new(loaded));
            }
        }
        changes.removed = old_config
            .tasks
            .keys()
            .filter(|name| !config.tasks.contains_key(*name))
            .cloned()
            .collect();
        // Commit. A registry version installed while the new types were
        // loaded takes the new settings too, and so does each canary of a
        // type that still comes from the registry; the other canaries end.
        let _swap = self.loader.swap.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.read_types().clone();
        for (name, task) in &config.tasks {
            let still_registry = task.from_registry()
                && old_config
                    .tasks
                    .get(name)
                    .is_some_and(|b| b.from_registry());
            let Some(current) = now.get(name).filter(|_| still_registry) else {
                continue;
            };
            if old.get(name).is_none_or(|o| !Arc::ptr_eq(o, current)) {
                let retargeted = load::retarget(current, config, name, task)?;
                types.insert(name.clone(), Arc::new(retargeted));
            }
        }
        let mut canaries = BTreeMap::new();
        for (name, (canary, share)) in self
            .canaries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if let Some(task) = config.tasks.get(name).filter(|t| t.from_registry()) {
                let retargeted = load::retarget(canary, config, name, task)?;
                canaries.insert(name.clone(), (Arc::new(retargeted), *share));
            }
        }
        *self.types.write().unwrap_or_else(|e| e.into_inner()) = types;
        *self.canaries.write().unwrap_or_else(|e| e.into_inner()) = canaries;
        *self
            .loader
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(config.clone());
        self.loader.generation.fetch_add(1, Ordering::SeqCst);
        Ok(changes)
    }
}

/// Whether two configs of a type grant the same (directories, env, clock,
/// sockets, enqueues, outbound HTTP).
fn same_grants(a: &crate::config::TaskTypeConfig, b: &crate::config::TaskTypeConfig) -> bool {
    let grants = |t: &crate::config::TaskTypeConfig| {
        format!(
            "{:?}",
            (
                &t.dirs, &t.env, t.clock, &t.network, &t.enqueue, &t.http, &t.http_ca
            )
        )
    };
    grants(a) == grants(b)
}

/// Refuses a module that needs more of the pool than it was sized for at
/// start.
fn fits(module: &Footprint, pool: &Footprint) -> Result<(), String> {
    let over = [
        ("core instances", module.core_instances, pool.core_instances),
        ("memories", module.memories, pool.memories),
        ("tables", module.tables, pool.tables),
        (
            "memories in one module",
            module.memories_per_module,
            pool.memories_per_module,
        ),
        (
            "tables in one module",
            module.tables_per_module,
            pool.tables_per_module,
        ),
    ]
    .into_iter()
    .find(|(_, needs, has)| needs > has);
    match over {
        Some((what, needs, has)) => Err(format!(
            "it needs {needs} {what} per sandbox and this worker's pool was sized for {has} \
             at start: restart the worker to run it"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_larger_than_the_pool_is_refused_naming_what() {
        let pool = REGISTRY_FLOOR;
        assert!(fits(&Footprint::default(), &pool).is_ok());
        let big = Footprint {
            core_instances: 30,
            ..Footprint::default()
        };
        let why = fits(&big, &pool).unwrap_err();
        assert!(why.contains("30 core instances"), "{why}");
    }
}
