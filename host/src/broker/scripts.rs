//! The Lua scripts, one per state change, each declaring every key it
//! touches in KEYS (all in one queue's slot). Loaded once; redis-rs sends
//! EVALSHA and falls back to EVAL when a node does not know the script yet
//! (a fresh replica after a failover, for one).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!($file)));
    };
    // A script that uses the shared helpers (`release_lease`, `wake`,
    // `count_daily`), which are prepended to it.
    ($name:ident, $file:literal, with common) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/common.lua"),
                include_str!($file)
            ))
        });
    };
    // A script that calls the claim step, which is prepended to it.
    ($name:ident, $file:literal, with claim_step) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/claim_step.lua"),
                include_str!($file)
            ))
        });
    };
}

script!(ENQUEUE, "scripts/enqueue.lua", with common);
script!(TICK, "scripts/tick.lua", with common);
script!(CLAIM, "scripts/claim.lua", with claim_step);
script!(FINISH, "scripts/finish.lua", with common);
script!(FINISH_MANY, "scripts/finish_many.lua", with claim_step);
script!(FAIL, "scripts/fail.lua", with common);
script!(DROP, "scripts/drop.lua", with common);
script!(FORGET, "scripts/forget.lua");
script!(REMOVE_QUEUE, "scripts/remove_queue.lua");
script!(REQUEUE, "scripts/requeue.lua", with common);
script!(FORWARD, "scripts/forward.lua", with common);
script!(EXPIRE, "scripts/expire.lua");
script!(EXTEND, "scripts/extend.lua");
script!(TRIM_ARCHIVE, "scripts/trim_archive.lua");
script!(TRANSITION, "scripts/transition.lua", with common);
script!(GROUP_ADD, "scripts/group_add.lua");
script!(GROUP_CHECK, "scripts/group_check.lua");
script!(GROUP_DONE, "scripts/group_done.lua", with common);
script!(GROUP_RECLAIM, "scripts/group_reclaim.lua");
