//! `wasq bench`: what the sandbox costs, against baselines measured in the
//! same run.

use std::path::PathBuf;
use std::process::ExitCode;

use wasq::runtime::bench;

/// Arguments of `wasq bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The no-op handler component to measure per-task overhead with.
    #[arg(
        long,
        default_value = "examples-wasm/target/wasm32-wasip2/release/noop.wasm"
    )]
    module: PathBuf,
    /// Tasks to run each way.
    #[arg(long, default_value_t = 5000)]
    iterations: usize,
    /// Also measure start-up of this config with a cold and a warm cache.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    output: super::args::JsonArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let overhead = bench::overhead(&args.module, args.iterations.max(10)).await?;
    let startup = match &args.config {
        Some(path) => {
            let config = wasq::config::Config::load(path)?;
            Some(tokio::task::spawn_blocking(move || bench::startup(&config)).await??)
        }
        None => None,
    };
    if args.output.json {
        let report = serde_json::json!({ "overhead": overhead, "startup": startup });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "per-task cost of a no-op handler ({} tasks each way, same run):",
        overhead.iterations
    );
    println!(
        "  {:<44} {:>9} {:>9} {:>12}",
        "", "median", "p99", "tasks/s/core"
    );
    for (name, t) in [
        (
            "wasq executor (pool + InstancePre + limits)",
            &overhead.wasq,
        ),
        (
            "naive embedding (Linker + instantiate/task)",
            &overhead.naive,
        ),
    ] {
        println!(
            "  {name:<44} {:>7.1}µs {:>7.1}µs {:>12.0}",
            t.median_us, t.p99_us, t.tasks_per_sec
        );
    }
    println!("  ratio wasq/naive (median): {:.3}", overhead.ratio);
    if let Some(s) = startup {
        println!(
            "start-up of {} task type(s): cold cache {:.1} ms, warm cache {:.1} ms ({:.0}x faster)",
            s.task_types,
            s.cold_ms,
            s.warm_ms,
            s.cold_ms / s.warm_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
