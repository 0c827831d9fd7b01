//! Compiled components cached on disk, keyed by the module's SHA-256 and
//! the engine's compatibility hash, so a restart skips compilation.
//!
//! Entries are written atomically (temp file, then rename). A cached entry
//! that wasmtime refuses (another wasmtime version, corrupt file) is
//! recompiled and replaced. The directory must be writable only by the
//! host: its files are loaded as native code.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Loaded from the on-disk cache.
    Hit,
    /// Compiled now and stored.
    Compiled,
    /// Compiled now; the cache could not be written (logged).
    CompiledUncached,
}

pub(crate) struct ComponentCache {
    dir: PathBuf,
    engine_key: u64,
}

impl ComponentCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: hasher.finish(),
        }
    }

    /// The SHA-256 of a module, hex.
    pub fn module_hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn entry(&self, module_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{module_hash}-{:016x}.cwasm", self.engine_key))
    }

    /// Loads the compiled component for `bytes`, compiling and storing it
    /// on a miss.
    pub fn load(
        &self,
        engine: &Engine,
        module_hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheStatus)> {
        let entry = self.entry(module_hash);
        if entry.exists() {
            // SAFETY: the entry was written by `Component::serialize` of this
            // cache under a key that includes the engine's compatibility
            // hash; wasmtime checks the header again and refuses a mismatch.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok((component, CacheStatus::Hit)),
                Err(e) => {
                    tracing::warn!(path = %entry.display(), "ignoring unusable cached component: {e}")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        let status = match self.store(&entry, &component) {
            Ok(()) => CacheStatus::Compiled,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot write the component cache: {e:#}");
                CacheStatus::CompiledUncached
            }
        };
        Ok((component, status))
    }

    fn store(&self, entry: &Path, component: &Component) -> wasmtime::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize()?;
        // Unique per writer: threads of one process may compile the same
        // module at once.
        let tmp = entry.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, entry)?;
        Ok(())
    }
}
