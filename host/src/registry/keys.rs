//! The registry's keys. Everything about task types lives in one slot
//! (hash tag `{registry}`), so pointing a type at a version, and its
//! history, is one script; each module's manifest and chunks live in the
//! slot of the module's own hash (`{module:<sha256>}`), so sealing a module
//! is one script too. The two meet only through the hash, which makes every
//! step of a push safe to repeat (see the module docs of `push`).

/// Hash: task type → the SHA-256 of the version its workers should run.
pub const CURRENT: &str = "wasq:{registry}:current";
/// Hash: task type → its canary (JSON, see `Canary`): a share of its tasks
/// run another version than the current one.
pub const CANARY: &str = "wasq:{registry}:canary";
/// Sorted set: every module ever uploaded (sealed or not) → when it was
/// last uploaded (Unix seconds); garbage collection starts from it.
pub const MODULES: &str = "wasq:{registry}:modules";
/// Hash: worker (server id) → what it runs (JSON, see `WorkerReport`).
pub const WORKERS: &str = "wasq:{registry}:workers";
/// The pub/sub channel a pointer change is announced on
/// (`<task type> <sha256>`).
pub const CHANNEL: &str = "wasq:registry";

/// List: the versions `task_type` was pointed at, newest first (JSON).
pub fn history(task_type: &str) -> String {
    format!("wasq:{{registry}}:history:{task_type}")
}

/// Hash: a sealed module's manifest (`size`, `chunks`, `chunk_size`,
/// `sealed_at`). Present only once every chunk is stored.
pub fn manifest(hash: &str) -> String {
    format!("wasq:{{module:{hash}}}:manifest")
}

/// String: chunk `index` of a module.
pub fn chunk(hash: &str, index: usize) -> String {
    format!("wasq:{{module:{hash}}}:{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modules_chunks_share_its_manifests_hash_tag() {
        let m = manifest("ab12");
        let c = chunk("ab12", 3);
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&m), tag(&c));
        assert_eq!(tag(CURRENT), tag(&history("t")));
        assert_eq!(tag(CURRENT), tag(WORKERS));
    }
}
