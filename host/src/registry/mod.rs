//! The module registry: handler components stored in Redis, content
//! addressed by SHA-256, and each task type's current version, so every
//! worker of a cluster runs what `wasq module push` stored without a file
//! on its host.
//!
//! ```text
//! push:  upload chunks (≤ 1 MiB, expiring) ─► seal (manifest, chunks kept)
//!        ─► point the type (current + history + PUBLISH) ─► collect garbage
//! worker: PUBLISH or a poll ─► current hash changed ─► fetch chunks ─► verify
//!        SHA-256 ─► compile and try an instance ─► swap between tasks
//! ```
//!
//! A push crosses two slots (the module's and the registry's), so it is
//! steps, each safe to repeat:
//! - dying during the upload leaves chunks that expire by themselves, and no
//!   manifest: nothing points at them, nothing reads them;
//! - dying after the seal leaves a sealed module nobody points at, which
//!   garbage collection removes after [`ORPHAN_AGE`];
//! - the pointer moves only to a sealed module, in one script that also
//!   writes the history and announces it.
//!
//! Garbage collection keeps the last `keep` versions of every type, every
//! current version and every version a live worker reports running.
//!
//! ```no_run
//! use wasq::broker::Broker;
//! use wasq::registry::Registry;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = Broker::connect(&wasq::RedisConfig::single("redis://127.0.0.1:6379")).await?;
//! let registry = Registry::new(broker);
//! let bytes = std::fs::read("email.wasm")?;
//! let pushed = registry.push("notifications:email", &bytes, "ops@build-1").await?;
//! println!("now at {}", pushed.hash);
//! # Ok(()) }
//! ```

pub mod keys;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands as _, Script};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::broker::{Broker, BrokerError, now_secs};

/// The largest chunk a module is stored in: one command never moves more.
pub const CHUNK_SIZE: usize = 1 << 20;
/// Versions of each type garbage collection keeps by default.
pub const DEFAULT_KEEP: usize = 5;
/// History entries kept per type.
const HISTORY_KEPT: usize = 100;
/// How long uploaded chunks live until their module is sealed.
const UNSEALED_TTL: Duration = Duration::from_secs(24 * 3600);
/// How old a module nobody points at must be before it is collected (a
/// push in progress has uploaded, but not yet pointed).
pub const ORPHAN_AGE: Duration = Duration::from_secs(15 * 60);
/// A worker report older than this is of a worker that is gone.
pub const REPORT_STALE: Duration = Duration::from_secs(30);

static SEAL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/seal.lua")));
static POINT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/point.lua")));
static CANARY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/canary.lua")));

/// What went wrong with the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Redis failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The type has never been pushed.
    #[error(
        "task type {0:?} has no version in the module registry (push one with `wasq module push FILE --type {0}`)"
    )]
    NoVersion(String),
    /// A module is not stored (never sealed, or collected).
    #[error("module {hash} is not in the registry{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Missing {
        /// The module's SHA-256.
        hash: String,
        /// More on what is missing.
        detail: String,
    },
    /// The stored chunks do not make up the module they claim to be.
    #[error("module {hash}: the stored bytes do not match: {detail}")]
    Corrupt {
        /// The module's SHA-256.
        hash: String,
        /// What does not match.
        detail: String,
    },
    /// A rollback has nothing to go back to, or names a version the type
    /// never had.
    #[error("{0}")]
    Refused(String),
}

impl From<redis::RedisError> for RegistryError {
    fn from(e: redis::RedisError) -> Self {
        Self::Broker(e.into())
    }
}

/// One line of a type's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The module's SHA-256.
    pub hash: String,
    /// When, Unix seconds.
    pub at: i64,
    /// Who: `user@host`.
    pub by: String,
    /// `push`, `rollback` or `promote` when the type's current version
    /// changed; `canary N %` or `canary ended` for a canary.
    pub action: String,
    /// The module's size in bytes.
    pub size: u64,
}

impl HistoryEntry {
    /// Whether the entry records a canary, not a change of the current
    /// version.
    pub fn is_canary(&self) -> bool {
        self.action.starts_with("canary")
    }
}

/// A canary: `percent` of a type's tasks run `hash` instead of the current
/// version, until it is promoted or rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// The version on trial.
    pub hash: String,
    /// The share of the type's tasks it runs, 0-100.
    pub percent: f64,
    /// When it started, Unix seconds.
    pub at: i64,
    /// Who started it.
    pub by: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// The module's SHA-256.
    pub hash: String,
    /// The version the type ran before ("" for none).
    pub previous: String,
    /// False when the type already ran this version (nothing changed).
    pub changed: bool,
    /// Chunks uploaded (0 when the registry already had the module).
    pub chunks_uploaded: usize,
    /// Modules garbage collection removed.
    pub collected: Vec<String>,
}

/// What one worker runs of each registry type, as it reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's server id.
    pub server_id: String,
    /// `host:pid`.
    pub process: String,
    /// When it reported, Unix seconds.
    pub at: i64,
    /// By task type.
    pub types: BTreeMap<String, TypeStatus>,
}

/// What a worker runs of one type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeStatus {
    /// The hash it runs ("" while it has none).
    pub running: String,
    /// A newer version it refused, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// The canary it runs a share of the tasks on (its hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
}

/// A version a worker did not take.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Its hash.
    pub hash: String,
    /// Why.
    pub reason: String,
}

/// The SHA-256 of `bytes`, hex.
pub fn hash_of(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Checks that `bytes` hash to `hash` (SHA-256, hex).
pub fn verify(hash: &str, bytes: &[u8]) -> Result<(), RegistryError> {
    let got = hash_of(bytes);
    if got == hash {
        Ok(())
    } else {
        Err(RegistryError::Corrupt {
            hash: hash.to_owned(),
            detail: format!("the chunks hash to {got}"),
        })
    }
}

/// `user@host` of this process, for the history.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

/// The module registry on a broker's Redis. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    broker: Broker,
    chunk_size: usize,
}

impl Registry {
    /// The registry on `broker`'s Redis.
    pub fn new(broker: Broker) -> Self {
        Self {
            broker,
            chunk_size: CHUNK_SIZE,
        }
    }

    /// Stores modules in chunks of `bytes` (at most [`CHUNK_SIZE`]).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.clamp(1, CHUNK_SIZE);
        self
    }

    /// Uploads `bytes` (unless the registry has them), seals them, points
    /// `task_type` at them and collects garbage, keeping [`DEFAULT_KEEP`]
    /// versions per type. The caller checks the component first.
    pub async fn push(
        &self,
        task_type: &str,
        bytes: &[u8],
        by: &str,
    ) -> Result<Pushed, RegistryError> {
        let (hash, chunks_uploaded) = self.upload(bytes).await?;
        let (previous, changed) = self.point(task_type, &hash, by, "push").await?;
        let collected = self.collect_garbage(DEFAULT_KEEP).await?;
        Ok(Pushed {
            hash,
            previous,
            changed,
            chunks_uploaded,
            collected,
        })
    }

    /// Uploads and seals `bytes` without pointing any type at them; returns
    /// their hash and the chunks sent. A module already sealed is not sent
    /// again.
    pub async fn upload(&self, bytes: &[u8]) -> Result<(String, usize), RegistryError> {
        let hash = hash_of(bytes);
        let mut conn = self.broker.conn();
        // The latest upload's time, so a module uploaded again is not
        // collected as an old orphan before the push points at it.
        let _: i64 = redis::cmd("ZADD")
            .arg(keys::MODULES)
            .arg("GT")
            .arg(now_secs())
            .arg(&hash)
            .query_async(&mut conn)
            .await?;
        let sealed: Option<u64> = conn.hget(keys::manifest(&hash), "size").await?;
        if sealed == Some(bytes.len() as u64) {
            return Ok((hash, 0));
        }
        let chunks: Vec<&[u8]> = bytes.chunks(self.chunk_size).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let () = conn
                .set_ex(keys::chunk(&hash, i), *chunk, UNSEALED_TTL.as_secs())
                .await?;
        }
        self.seal(&hash, bytes.len() as u64, chunks.len()).await?;
        Ok((hash, chunks.len()))
    }

    /// Seals module `hash` of `size` bytes in `chunks` chunks: fails,
    /// naming what is missing, unless every chunk is stored.
    pub async fn seal(&self, hash: &str, size: u64, chunks: usize) -> Result<(), RegistryError> {
        let mut inv = SEAL.prepare_invoke();
        inv.key(keys::manifest(hash));
        for i in 0..chunks.max(1) {
            inv.key(keys::chunk(hash, i));
        }
        inv.arg(size).arg(self.chunk_size).arg(now_secs());
        let mut conn = self.broker.conn();
        let sealed: Result<i64, redis::RedisError> = inv.invoke_async(&mut conn).await;
        match sealed {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("UNSEALED") => Err(RegistryError::Missing {
                hash: hash.to_owned(),
                detail: format!("the upload is incomplete: {}", e.detail().unwrap_or("")),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Points `task_type` at the sealed module `hash`, recording `action`
    /// by `by` in its history. Returns the version before ("" for none)
    /// and whether anything changed.
    pub async fn point(
        &self,
        task_type: &str,
        hash: &str,
        by: &str,
        action: &str,
    ) -> Result<(String, bool), RegistryError> {
        let mut conn = self.broker.conn();
        let size: Option<u64> = conn.hget(keys::manifest(hash), "size").await?;
        let Some(size) = size else {
            return Err(RegistryError::Missing {
                hash: hash.to_owned(),
                detail: "it has no manifest (never sealed, or collected)".into(),
            });
        };
        let entry = HistoryEntry {
            hash: hash.to_owned(),
            at: now_secs(),
            by: by.to_owned(),
            action: action.to_owned(),
            size,
        };
        let before: Option<String> = POINT
            .key(keys::CURRENT)
            .key(keys::history(task_type))
            .key(keys::CANARY)
            .arg(task_type)
            .arg(hash)
            .arg(serde_json::to_string(&entry).expect("an entry serializes"))
            .arg(HISTORY_KEPT)
            .arg(keys::CHANNEL)
            .invoke_async(&mut conn)
            .await?;
        Ok(match before {
            Some(before) => (before, true),
            None => (hash.to_owned(), false),
        })
    }

    /// Uploads `bytes` (unless the registry has them) and runs them for
    /// `percent` (0-100] of `task_type`'s tasks, beside the current version,
    /// until [`promote`](Self::promote) or [`end_canary`](Self::end_canary).
    pub async fn push_canary(
        &self,
        task_type: &str,
        bytes: &[u8],
        percent: f64,
        by: &str,
    ) -> Result<Pushed, RegistryError> {
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(RegistryError::Refused(format!(
                "a canary's share must be above 0 % and at most 100 %, not {percent} %"
            )));
        }
        let current = self.current_of(task_type).await?;
        let (hash, chunks_uploaded) = self.upload(bytes).await?;
        if hash == current {
            return Err(RegistryError::Refused(format!(
                "{task_type:?} already runs {}: a canary needs another version",
                &hash[..12]
            )));
        }
        let canary = Canary {
            hash: hash.clone(),
            percent,
            at: now_secs(),
            by: by.to_owned(),
        };
        let entry = HistoryEntry {
            hash: hash.clone(),
            at: canary.at,
            by: by.to_owned(),
            action: format!("canary {percent} %"),
            size: bytes.len() as u64,
        };
        let started = self
            .canary_step(
                task_type,
                &serde_json::to_string(&canary).expect("serializes"),
                &entry,
                &hash,
            )
            .await?;
        if started < 0 {
            return Err(RegistryError::Refused(format!(
                "{task_type:?} already runs {}: a canary needs another version",
                &hash[..12]
            )));
        }
        Ok(Pushed {
            hash,
            previous: current,
            changed: true,
            chunks_uploaded,
            collected: Vec::new(),
        })
    }

    /// Every type's canary.
    pub async fn canaries(&self) -> Result<BTreeMap<String, Canary>, RegistryError> {
        let mut conn = self.broker.conn();
        let raw: BTreeMap<String, String> = conn.hgetall(keys::CANARY).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(t, json)| Some((t, serde_json::from_str(&json).ok()?)))
            .collect())
    }

    /// Makes `task_type`'s canary its current version for every task.
    pub async fn promote(&self, task_type: &str, by: &str) -> Result<String, RegistryError> {
        let canary = self.canaries().await?.remove(task_type).ok_or_else(|| {
            RegistryError::Refused(format!("task type {task_type:?} has no canary to promote"))
        })?;
        self.point(task_type, &canary.hash, by, "promote").await?;
        Ok(canary.hash)
    }

    /// Ends `task_type`'s canary: every task runs the current version again.
    /// Returns the canary's hash, or `None` when there was none.
    pub async fn end_canary(
        &self,
        task_type: &str,
        by: &str,
    ) -> Result<Option<String>, RegistryError> {
        let Some(canary) = self.canaries().await?.remove(task_type) else {
            return Ok(None);
        };
        let entry = HistoryEntry {
            hash: canary.hash.clone(),
            at: now_secs(),
            by: by.to_owned(),
            action: "canary ended".into(),
            size: 0,
        };
        self.canary_step(task_type, "", &entry, "").await?;
        Ok(Some(canary.hash))
    }

    async fn canary_step(
        &self,
        task_type: &str,
        canary: &str,
        entry: &HistoryEntry,
        hash: &str,
    ) -> Result<i64, RegistryError> {
        let mut conn = self.broker.conn();
        Ok(CANARY
            .key(keys::CANARY)
            .key(keys::history(task_type))
            .key(keys::CURRENT)
            .arg(task_type)
            .arg(canary)
            .arg(serde_json::to_string(entry).expect("an entry serializes"))
            .arg(HISTORY_KEPT)
            .arg(keys::CHANNEL)
            .arg(hash)
            .invoke_async(&mut conn)
            .await?)
    }

    /// The canaries of `types` (one command), `None` for a type with none.
    pub async fn canaries_of(
        &self,
        types: &[String],
    ) -> Result<Vec<Option<Canary>>, RegistryError> {
        Ok(self
            .fields_of(keys::CANARY, types)
            .await?
            .into_iter()
            .map(|r| r.and_then(|j| serde_json::from_str(&j).ok()))
            .collect())
    }

    /// The current version of every type that has one.
    pub async fn current(&self) -> Result<BTreeMap<String, String>, RegistryError> {
        let mut conn = self.broker.conn();
        Ok(conn.hgetall(keys::CURRENT).await?)
    }

    /// The current version of `task_type`.
    pub async fn current_of(&self, task_type: &str) -> Result<String, RegistryError> {
        let mut conn = self.broker.conn();
        let hash: Option<String> = conn.hget(keys::CURRENT, task_type).await?;
        hash.ok_or_else(|| RegistryError::NoVersion(task_type.to_owned()))
    }

    /// The current versions of `types` (one command), `None` for a type
    /// with none.
    pub async fn current_of_all(
        &self,
        types: &[String],
    ) -> Result<Vec<Option<String>>, RegistryError> {
        self.fields_of(keys::CURRENT, types).await
    }

    /// The fields `types` of hash `key` (one `HMGET`), `None` where absent.
    async fn fields_of(
        &self,
        key: &str,
        types: &[String],
    ) -> Result<Vec<Option<String>>, RegistryError> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.broker.conn();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key).arg(types);
        Ok(cmd.query_async(&mut conn).await?)
    }

    /// `task_type`'s history, newest first.
    pub async fn history(&self, task_type: &str) -> Result<Vec<HistoryEntry>, RegistryError> {
        let mut conn = self.broker.conn();
        let raw: Vec<String> = conn.lrange(keys::history(task_type), 0, -1).await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Points `task_type` back at `to`, or at the version it ran before
    /// the current one. Returns the hash it now runs. (A canary is ended
    /// with [`end_canary`](Self::end_canary).)
    pub async fn rollback(
        &self,
        task_type: &str,
        to: Option<&str>,
        by: &str,
    ) -> Result<String, RegistryError> {
        let current = self.current_of(task_type).await?;
        let history = self.history(task_type).await?;
        let target = match to {
            Some(prefix) => {
                let matches: BTreeSet<&str> = history
                    .iter()
                    .map(|e| e.hash.as_str())
                    .filter(|h| h.starts_with(prefix))
                    .collect();
                match matches.len() {
                    1 => matches.into_iter().next().unwrap_or_default().to_owned(),
                    0 => {
                        return Err(RegistryError::Refused(format!(
                            "task type {task_type:?} never ran a version {prefix}… (see `wasq module history {task_type}`)"
                        )));
                    }
                    n => {
                        return Err(RegistryError::Refused(format!(
                            "{prefix} names {n} versions of {task_type:?}: give more of the hash"
                        )));
                    }
                }
            }
            None => history
                .iter()
                .filter(|e| !e.is_canary())
                .map(|e| e.hash.clone())
                .find(|h| *h != current)
                .ok_or_else(|| {
                    RegistryError::Refused(format!(
                        "task type {task_type:?} has no earlier version to roll back to"
                    ))
                })?,
        };
        if target == current {
            return Err(RegistryError::Refused(format!(
                "task type {task_type:?} already runs {}",
                &target[..12.min(target.len())]
            )));
        }
        self.point(task_type, &target, by, "rollback").await?;
        Ok(target)
    }

    /// Fetches module `hash`, chunk by chunk, and checks that the bytes
    /// are the module: the manifest's size, every chunk, and the SHA-256.
    pub async fn fetch(&self, hash: &str) -> Result<Vec<u8>, RegistryError> {
        let bytes = self.fetch_unverified(hash).await?;
        verify(hash, &bytes)?;
        Ok(bytes)
    }

    /// Fetches module `hash` on a connection of its own (a large module's
    /// replies never queue ahead of claims and acks on the shared one),
    /// checking the manifest's size and every chunk, but not the SHA-256:
    /// the caller runs [`verify`] where hashing does not hold up async work.
    pub async fn fetch_unverified(&self, hash: &str) -> Result<Vec<u8>, RegistryError> {
        let mut conn = self.broker.blocking_conn().await?;
        let manifest: BTreeMap<String, u64> = conn.hgetall(keys::manifest(hash)).await?;
        let (Some(&size), Some(&chunks)) = (manifest.get("size"), manifest.get("chunks")) else {
            return Err(RegistryError::Missing {
                hash: hash.to_owned(),
                detail: "it has no manifest (never sealed, or collected)".into(),
            });
        };
        if size > chunks.saturating_mul(CHUNK_SIZE as u64) {
            return Err(RegistryError::Corrupt {
                hash: hash.to_owned(),
                detail: format!("its manifest says {size} bytes in {chunks} chunk(s)"),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        for i in 0..chunks as usize {
            let chunk: Option<Vec<u8>> = conn.get(keys::chunk(hash, i)).await?;
            let Some(chunk) = chunk else {
                return Err(RegistryError::Missing {
                    hash: hash.to_owned(),
                    detail: format!("chunk {i} of {chunks} is gone"),
                });
            };
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != size {
            return Err(RegistryError::Corrupt {
                hash: hash.to_owned(),
                detail: format!(
                    "{} bytes in the chunks, {size} in the manifest",
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    /// Records what worker `report.server_id` runs.
    pub async fn report(&self, report: &WorkerReport) -> Result<(), RegistryError> {
        let mut conn = self.broker.conn();
        let () = conn
            .hset(
                keys::WORKERS,
                &report.server_id,
                serde_json::to_string(report).expect("a report serializes"),
            )
            .await?;
        Ok(())
    }

    /// Removes worker `server_id`'s report (it stopped).
    pub async fn forget_worker(&self, server_id: &str) -> Result<(), RegistryError> {
        let mut conn = self.broker.conn();
        let _: i64 = conn.hdel(keys::WORKERS, server_id).await?;
        Ok(())
    }

    /// The reports of the workers alive (reported within
    /// [`REPORT_STALE`]), by server id.
    pub async fn workers(&self) -> Result<Vec<WorkerReport>, RegistryError> {
        let mut conn = self.broker.conn();
        let raw: BTreeMap<String, String> = conn.hgetall(keys::WORKERS).await?;
        let now = now_secs();
        let mut alive = Vec::new();
        for (id, json) in raw {
            match serde_json::from_str::<WorkerReport>(&json) {
                Ok(r) if now - r.at <= REPORT_STALE.as_secs() as i64 => alive.push(r),
                _ => {
                    let _: i64 = conn.hdel(keys::WORKERS, &id).await?;
                }
            }
        }
        Ok(alive)
    }

    /// Deletes the modules no type needs: all but the last `keep` versions
    /// of each type's history, unless current or run by a live worker, and
    /// modules nobody points at older than [`ORPHAN_AGE`]. Returns the
    /// hashes removed.
    pub async fn collect_garbage(&self, keep: usize) -> Result<Vec<String>, RegistryError> {
        let mut conn = self.broker.conn();
        let current = self.current().await?;
        let mut kept: BTreeSet<String> = current.values().cloned().collect();
        for task_type in current.keys() {
            let mut distinct = Vec::new();
            for entry in self.history(task_type).await? {
                if !entry.is_canary() && !distinct.contains(&entry.hash) {
                    distinct.push(entry.hash);
                }
            }
            kept.extend(distinct.into_iter().take(keep.max(1)));
        }
        kept.extend(self.canaries().await?.into_values().map(|c| c.hash));
        for worker in self.workers().await? {
            for status in worker.types.into_values() {
                kept.insert(status.running);
                kept.extend(status.canary);
            }
        }
        let all: Vec<(String, i64)> = conn.zrange_withscores(keys::MODULES, 0, -1).await?;
        let now = now_secs();
        let mut removed = Vec::new();
        for (hash, uploaded) in all {
            if kept.contains(&hash) || now - uploaded < ORPHAN_AGE.as_secs() as i64 {
                continue;
            }
            self.delete_module(&hash).await?;
            removed.push(hash);
        }
        Ok(removed)
    }

    /// Deletes one module: the manifest first (so nobody starts fetching
    /// it), then its chunks, then its entry in [`keys::MODULES`]. Safe to
    /// repeat.
    async fn delete_module(&self, hash: &str) -> Result<(), RegistryError> {
        let mut conn = self.broker.conn();
        let chunks: Option<usize> = conn.hget(keys::manifest(hash), "chunks").await?;
        let _: i64 = conn.del(keys::manifest(hash)).await?;
        for i in 0..chunks.unwrap_or(0) {
            let _: i64 = conn.del(keys::chunk(hash, i)).await?;
        }
        let _: i64 = conn.zrem(keys::MODULES, hash).await?;
        Ok(())
    }
}
