//! `wasq module`: task types and their modules. `ls` lists them (and what
//! each worker runs); `push`, `history`, `rollback` and `gc` manage the
//! module registry in Redis (see [`wasq::registry`]).

mod ls;
mod registry;

use std::process::ExitCode;

pub(super) use ls::rows;

use super::args::ListArgs;

/// The subcommands of `wasq module`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List the task types of the config with their modules, limits,
    /// grants and the last hour's outcomes; for registry types, the
    /// version each live worker runs and any version it refused, with why.
    Ls(ListArgs),
    /// Check a component and store it in Redis as task type T's new
    /// version; every worker with `module = "registry"` for T swaps to it
    /// between tasks, within about a second.
    ///
    /// The component is checked as `wasq check` does (the world, its
    /// imports, its memory at start against T's limit in the config), then
    /// stored by SHA-256 in chunks of at most 1 MiB. Pushing the version T
    /// already runs changes nothing. With `--canary 10%` only that share of
    /// T's tasks runs it, until `wasq module promote T` (all of them) or
    /// `wasq module rollback T` (none).
    Push(registry::PushArgs),
    /// Make task type T's canary its version for every task.
    Promote(registry::TypeArgs),
    /// The versions task type T was pointed at: when, by whom, which hash.
    History(registry::TypeArgs),
    /// End task type T's canary if it has one; otherwise point T back at the
    /// version before the current one, or at `--to HASH` (a prefix of a hash
    /// in its history).
    Rollback(registry::RollbackArgs),
    /// Delete stored versions no type needs: all but the last `--keep` of
    /// each type, unless current or run by a live worker (`push` does this
    /// with the default of 5).
    Gc(registry::GcArgs),
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Ls(a) => ls::run(a).await,
        Args::Push(a) => registry::push(a).await,
        Args::Promote(a) => registry::promote(a).await,
        Args::History(a) => registry::history(a).await,
        Args::Rollback(a) => registry::rollback(a).await,
        Args::Gc(a) => registry::gc(a).await,
    }
}
