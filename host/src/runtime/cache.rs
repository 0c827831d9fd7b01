//! Compiled components cached on disk, keyed by the module's SHA-256 and
//! the SHA-256 of the engine's compatibility hash, so a restart skips
//! compilation.
//!
//! Cached files are loaded as native code, so the cache is used only where
//! nobody else can write:
//!
//! - the directory is created with mode 0700 when missing; an existing one
//!   must be a directory owned by the host's effective user and not
//!   writable by group or others. Otherwise the cache is off (a warning
//!   names the directory and the reason) and every start compiles;
//! - with no directory configured and neither `XDG_CACHE_HOME` nor `HOME`
//!   set, the cache is off too (there is no fallback to a shared temporary
//!   directory, where anyone could plant a file under a predictable name);
//! - each entry must be a regular file that passes the same owner and mode
//!   check before it is loaded; one that does not is compiled again and
//!   replaced.
//!
//! Entries are written atomically (a mode 0600 temp file, then rename). A
//! cached entry that wasmtime refuses (another wasmtime version, corrupt
//! file) is recompiled and replaced.

use std::fs::Metadata;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
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
    /// Compiled now; the cache is off: no directory is configured, or the
    /// directory is not safe to load native code from (logged at start-up).
    Disabled,
}

pub(crate) struct ComponentCache {
    /// The directory, when it is safe to use; `None`: the cache is off.
    dir: Option<PathBuf>,
    /// Hex of the first 16 bytes of the SHA-256 of the engine's
    /// compatibility hash.
    engine_key: String,
}

impl ComponentCache {
    /// A cache in `dir` for components compiled by `engine`. Creates `dir`
    /// (mode 0700) when missing; turns the cache off, with a warning, when
    /// `dir` is `None` or not safe (see the module docs). Never fails.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let dir = match dir {
            None => {
                tracing::warn!(
                    "the compiled-component cache is off: set [runtime] cache_dir, \
                     XDG_CACHE_HOME or HOME to a directory only this user can write; \
                     every start compiles every module"
                );
                None
            }
            Some(dir) => match prepare_dir(&dir, effective_uid()) {
                Ok(()) => Some(dir),
                Err(reason) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        "the compiled-component cache is off: {} {reason}; \
                         every start compiles every module",
                        dir.display()
                    );
                    None
                }
            },
        };
        Self {
            dir,
            engine_key: engine_key(engine),
        }
    }

    /// The SHA-256 of a module, hex.
    pub fn module_hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn entry(dir: &Path, module_hash: &str, engine_key: &str) -> PathBuf {
        dir.join(format!("{module_hash}-{engine_key}.cwasm"))
    }

    /// Loads the compiled component for `bytes`, compiling and storing it
    /// on a miss.
    pub fn load(
        &self,
        engine: &Engine,
        module_hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheStatus)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CacheStatus::Disabled));
        };
        let entry = Self::entry(dir, module_hash, &self.engine_key);
        match std::fs::symlink_metadata(&entry) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %entry.display(), "cannot read a cached component's metadata: {e}")
            }
            Ok(meta) => match untrusted_entry(&meta, effective_uid()) {
                Some(reason) => tracing::warn!(
                    path = %entry.display(),
                    "not loading a cached component that is {reason}; compiling it again"
                ),
                None => {
                    // SAFETY: the entry is a regular file owned by this user
                    // and writable by nobody else, in a directory with the
                    // same guarantee, so it was written by this cache
                    // (`Component::serialize`) under a key that includes the
                    // engine's compatibility hash; wasmtime checks the
                    // header again and refuses a mismatch.
                    match unsafe { Component::deserialize_file(engine, &entry) } {
                        Ok(component) => return Ok((component, CacheStatus::Hit)),
                        Err(e) => {
                            tracing::warn!(path = %entry.display(), "ignoring unusable cached component: {e}")
                        }
                    }
                }
            },
        }
        let component = Component::new(engine, bytes)?;
        let status = match store(&entry, &component) {
            Ok(()) => CacheStatus::Compiled,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot write the component cache: {e:#}");
                CacheStatus::CompiledUncached
            }
        };
        Ok((component, status))
    }
}

/// Writes `component` to `entry` through a temp file only this user can
/// read or write, replacing what was there.
fn store(entry: &Path, component: &Component) -> wasmtime::Result<()> {
    let bytes = component.serialize()?;
    // Unique per writer: threads of one process may compile the same
    // module at once.
    let tmp = entry.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(&bytes))
        .and_then(|()| std::fs::rename(&tmp, entry));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| wasmtime::format_err!("writing {}: {e}", entry.display()))
}

/// Makes sure `dir` is a directory only `uid` can write, creating it with
/// mode 0700 when missing; otherwise says why not.
fn prepare_dir(dir: &Path, uid: u32) -> Result<(), String> {
    let meta = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot be created: {e}"))?;
            std::fs::metadata(dir).map_err(|e| format!("cannot be read after creating it: {e}"))?
        }
        Err(e) => return Err(format!("cannot be read: {e}")),
        Ok(meta) => meta,
    };
    if !meta.is_dir() {
        return Err("is not a directory".to_owned());
    }
    match untrusted(&meta, uid) {
        Some(reason) => Err(format!("is {reason}")),
        None => Ok(()),
    }
}

/// Why a cache entry (its metadata, not following a symlink) may not be
/// loaded by `uid`, as the end of "it is ...", or `None` when it may.
fn untrusted_entry(meta: &Metadata, uid: u32) -> Option<String> {
    if !meta.is_file() {
        return Some("not a regular file".to_owned());
    }
    untrusted(meta, uid)
}

/// Why a file or directory may not be trusted by `uid`, as the end of
/// "it is ...", or `None` when it may: it must be owned by `uid` and not
/// writable by group or others.
fn untrusted(meta: &Metadata, uid: u32) -> Option<String> {
    if meta.uid() != uid {
        return Some(format!(
            "owned by uid {}, not by uid {uid} that wasq runs as",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "writable by group or others (mode {:03o})",
            meta.mode() & 0o777
        ));
    }
    None
}

/// The user this process acts as (owner of the files it creates).
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The engine part of entry names: the engine's compatibility hash (target,
/// compiler flags, tunables, features, wasmtime version) fed into SHA-256,
/// whose output does not change with the Rust release (`DefaultHasher`'s
/// may).
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}

/// A `Hasher` that feeds every byte it is given into SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The first 8 bytes of the digest so far (the key itself is taken
    /// from the full digest).
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir =
                std::env::temp_dir().join(format!("wasq-cache-test-{}", uuid::Uuid::new_v4()));
            std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
            Self(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The smallest component: the component preamble and no sections.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        Engine::default()
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The entry file the cache in `dir` uses for `EMPTY_COMPONENT`.
    fn entry_of(dir: &Path, engine: &Engine) -> PathBuf {
        let hash = ComponentCache::module_hash(EMPTY_COMPONENT);
        ComponentCache::entry(dir, &hash, &engine_key(engine))
    }

    fn load(cache: &ComponentCache, engine: &Engine) -> CacheStatus {
        let hash = ComponentCache::module_hash(EMPTY_COMPONENT);
        cache.load(engine, &hash, EMPTY_COMPONENT).unwrap().1
    }

    #[test]
    fn a_missing_dir_is_created_private_and_used() {
        let parent = TempDir::new();
        let dir = parent.path().join("a").join("cache");
        let engine = engine();
        let cache = ComponentCache::new(Some(dir.clone()), &engine);
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(load(&cache, &engine), CacheStatus::Compiled);
        assert_eq!(load(&cache, &engine), CacheStatus::Hit);
        let entry = std::fs::metadata(entry_of(&dir, &engine)).unwrap();
        assert_eq!(entry.mode() & 0o077, 0, "entries are private");
    }

    #[test]
    fn a_world_writable_dir_is_refused_and_never_read() {
        let dir = TempDir::new();
        chmod(dir.path(), 0o777);
        let engine = engine();
        // What someone else could plant under the predictable name.
        let planted = entry_of(dir.path(), &engine);
        std::fs::write(&planted, b"not compiled code").unwrap();
        let cache = ComponentCache::new(Some(dir.path().to_owned()), &engine);
        assert!(cache.dir.is_none());
        assert_eq!(load(&cache, &engine), CacheStatus::Disabled);
        assert_eq!(std::fs::read(&planted).unwrap(), b"not compiled code");
        for mode in [0o770, 0o720, 0o702] {
            chmod(dir.path(), mode);
            let cache = ComponentCache::new(Some(dir.path().to_owned()), &engine);
            assert!(cache.dir.is_none(), "mode {mode:o} was trusted");
        }
    }

    #[test]
    fn a_dir_of_another_user_is_refused() {
        let dir = TempDir::new();
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert!(prepare_dir(dir.path(), meta.uid()).is_ok());
        let reason = prepare_dir(dir.path(), meta.uid().wrapping_add(1)).unwrap_err();
        assert!(reason.contains("owned by uid"), "{reason}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let reason = prepare_dir(&file, meta.uid()).unwrap_err();
        assert!(reason.contains("not a directory"), "{reason}");
    }

    #[test]
    fn no_dir_turns_the_cache_off() {
        let engine = engine();
        let cache = ComponentCache::new(None, &engine);
        assert_eq!(load(&cache, &engine), CacheStatus::Disabled);
    }

    #[test]
    fn a_writable_entry_is_not_loaded_but_replaced() {
        let dir = TempDir::new();
        let engine = engine();
        let cache = ComponentCache::new(Some(dir.path().to_owned()), &engine);
        assert_eq!(load(&cache, &engine), CacheStatus::Compiled);
        let entry = entry_of(dir.path(), &engine);
        chmod(&entry, 0o666);
        // Refused before wasmtime sees it: compiled again, and the
        // replacement is private.
        assert_eq!(load(&cache, &engine), CacheStatus::Compiled);
        let meta = std::fs::metadata(&entry).unwrap();
        assert_eq!(meta.mode() & 0o077, 0);
        assert_eq!(load(&cache, &engine), CacheStatus::Hit);

        let other = std::fs::metadata(&entry).unwrap().uid().wrapping_add(1);
        let reason = untrusted_entry(&meta, other).unwrap();
        assert!(reason.contains("owned by uid"), "{reason}");
    }

    #[test]
    fn a_symlinked_entry_is_not_followed() {
        let dir = TempDir::new();
        let engine = engine();
        let cache = ComponentCache::new(Some(dir.path().to_owned()), &engine);
        assert_eq!(load(&cache, &engine), CacheStatus::Compiled);
        // A good entry, but reached through a symlink: not loaded.
        let entry = entry_of(dir.path(), &engine);
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert_eq!(load(&cache, &engine), CacheStatus::Compiled);
        assert!(std::fs::symlink_metadata(&entry).unwrap().is_file());
        assert_eq!(load(&cache, &engine), CacheStatus::Hit);
    }

    #[test]
    fn the_engine_key_is_sha256_of_the_compatibility_hash() {
        let engine = engine();
        let key = engine_key(&engine);
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        // Stable for one engine configuration, different for another.
        assert_eq!(key, engine_key(&Engine::default()));
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        let fuel = Engine::new(&config).unwrap();
        assert_ne!(key, engine_key(&fuel));
        let entry = entry_of(Path::new("/c"), &engine);
        let name = entry.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(&format!("-{key}.cwasm")), "{name}");
    }
}
