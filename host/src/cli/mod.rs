//! `wasq` subcommands, one module each; this module parses the command line,
//! sets up logging and the async runtime, and maps errors to exit codes.
//!
//! Shared by the commands: [`args`] (the config file, `--json`, `--yes`, a
//! queue), [`connect`] (the Redis options and connecting with retries) and
//! [`table`] (the look of every listing).

mod args;
mod bench;
mod build;
mod check;
mod completions;
mod connect;
mod cron;
mod dash;
mod enqueue;
mod exec;
mod module;
mod new;
mod queue;
mod server;
mod stats;
mod table;
mod task;
mod worker;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

/// What `wasq --version` prints after the name: the crate's version, the
/// WIT package the host implements and the git commit it was built from
/// (both found by `host/build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WASQ_WIT_PACKAGE"),
    ", commit ",
    env!("WASQ_COMMIT"),
    ")"
);

/// wasq runs background tasks from Redis in WebAssembly sandboxes.
///
/// Each task type is handled by a component built against the
/// `wasq:task/handler` world, with fuel, memory, time and grants set per
/// type in wasq.toml.
#[derive(Debug, Parser)]
#[command(name = "wasq", version = VERSION, propagate_version = true)]
struct Cli {
    /// Log filter for wasq's own logs (RUST_LOG syntax), e.g. `wasq=debug`.
    #[arg(long, global = true, env = "WASQ_LOG", default_value = "warn")]
    log: String,
    /// Print wasq's logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and every module, and precompile the modules.
    ///
    /// Fails on the first problem with the file, line and key it comes
    /// from, or the module and what it lacks. Compiled modules are cached,
    /// so the worker starts fast afterwards.
    Check(check::Args),
    /// Run one task through the same sandbox the worker uses, without Redis.
    ///
    /// Prints the outcome, the result, the fuel and time it took and what
    /// the handler logged. Exits 0 when the handler succeeded, 1 when the
    /// task failed.
    Exec(exec::Args),
    /// Build a handler (Rust crate, Python file or directory, JavaScript)
    /// into a component and check it against the world.
    ///
    /// Writes the WIT this wasq implements for the toolchain, then loads the
    /// component as `wasq check` does and reports its size and compile time.
    Build(build::Args),
    /// Create a handler project (Rust, Python or JavaScript) with a wasq.toml
    /// that runs it.
    New(new::Args),
    /// Measure the sandbox: per-task overhead against a naive embedding,
    /// and start-up with a cold and a warm module cache.
    Bench(bench::Args),
    /// Run a worker: pull tasks from Redis and run them in their sandboxes.
    ///
    /// Uses the `[redis]`, `[worker]` and `[queues]` sections of the config.
    /// SIGINT/SIGTERM stop it gracefully: no new tasks, running ones get
    /// `shutdown_timeout` to finish, the rest go back to pending.
    Worker(worker::Args),
    /// Enqueue a task (Asynq's options: queue, delay, retries, timeout,
    /// deadline, uniqueness, id, retention).
    Enqueue(enqueue::Args),
    /// Inspect and control queues.
    #[command(subcommand)]
    Queue(queue::Args),
    /// Counts by state per queue, processed and failed today with the
    /// error rate, and the cluster's state and known nodes.
    Stats(stats::Args),
    /// Inspect and act on tasks: ls, inspect, cancel, delete, archive, run,
    /// and deleteall, archiveall, runall per queue and state.
    #[command(subcommand)]
    Task(task::Args),
    /// Periodic tasks: the config's `[[periodic]]` entries with their next
    /// and previous ticks, and each entry's enqueue history.
    #[command(subcommand)]
    Cron(cron::Args),
    /// Inspect the registered workers (servers).
    #[command(subcommand)]
    Server(server::Args),
    /// Task types: module, hash, limits, grants and the last hour's
    /// outcomes (runs, failures by cause, median fuel and time).
    #[command(subcommand)]
    Module(module::Args),
    /// A live view of queues, servers and the cluster: in the terminal, or
    /// with --web as a web dashboard with actions (see --read-only).
    Dash(dash::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish or
    /// powershell) to stdout.
    #[command(after_help = completions::WHERE_TO_PUT_IT)]
    Completions(completions::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_json);
    // One thread for wasq's own async work (Redis I/O, dispatch, acks,
    // upkeep): it waits on Redis, not on the CPU. Guests run on the
    // worker's own sandbox threads, one per core; a second I/O thread only
    // adds cross-thread wake-ups (measured: see the README's Performance).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => check::run(args).await,
            Command::Exec(args) => exec::run(args).await,
            Command::Build(args) => build::run(args).await,
            Command::New(args) => new::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Enqueue(args) => enqueue::run(args).await,
            Command::Queue(args) => queue::run(args).await,
            Command::Stats(args) => stats::run(args).await,
            Command::Task(args) => task::run(args).await,
            Command::Server(args) => server::run(args).await,
            Command::Cron(args) => cron::run(args).await,
            Command::Module(args) => module::run(args).await,
            Command::Dash(args) => dash::run(args).await,
            Command::Completions(args) => Ok(completions::run(args, &mut Cli::command())),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(filter: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colours only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Loads the config and the runtime off the async threads (compiling is
/// CPU-bound).
async fn load_runtime(
    path: &std::path::Path,
) -> anyhow::Result<(wasq::config::Config, wasq::runtime::Runtime)> {
    use anyhow::Context as _;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let config = wasq::config::Config::load(&path)?;
        let runtime = wasq::runtime::Runtime::load(&config)?;
        Ok((config, runtime))
    })
    .await
    .context("loading the runtime panicked")?
}
