//! `wasq exec`: run one task through the sandbox, without Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use wasq::runtime::{Invocation, Outcome};

/// Arguments of `wasq exec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: super::args::ConfigArg,
    /// The task type, e.g. `notifications:email`.
    task_type: String,
    /// The payload (JSON by convention).
    #[arg(long, short, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the payload from a file (`-` for stdin).
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// The queue the task pretends to come from.
    #[arg(long, default_value = "default")]
    queue: String,
    /// The task's own timeout, e.g. `5s` (the task type's limit still applies).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    #[command(flatten)]
    output: super::args::JsonArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let payload = match (&args.payload, &args.payload_file) {
        (Some(p), _) => p.clone().into_bytes(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            use std::io::Read as _;
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the payload from stdin")?;
            buf
        }
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("reading payload file {}", path.display()))?,
        (None, None) => b"{}".to_vec(),
    };
    let (_config, runtime) = super::load_runtime(&args.config.config).await?;
    let mut invocation = Invocation::new(args.task_type, payload);
    invocation.queue = args.queue;
    invocation.timeout = args.timeout;
    let run = runtime.execute(invocation).await;
    let code = if run.outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
        return Ok(code);
    }
    println!("task     {} {}", run.task_type, run.task_id);
    match &run.outcome {
        Outcome::Success { result } => {
            println!("outcome  ok");
            match std::str::from_utf8(result) {
                Ok(text) => println!("result   {text}"),
                Err(_) => println!("result   ({} bytes, not UTF-8)", result.len()),
            }
        }
        Outcome::Failed { failure } => {
            println!("outcome  failed ({}): {failure}", failure.cause_name());
            println!("action   {:?}", failure.action());
        }
    }
    if run.fuel_measured {
        println!("fuel     {}", run.fuel_consumed);
    } else {
        println!("fuel     not measured (the run was interrupted)");
    }
    println!("time     {:.3?}", run.wall_time);
    println!("memory   {} KiB peak", run.memory_peak / 1024);
    if let Some(p) = run.progress {
        println!("progress {p}%");
    }
    if !run.follow_ups.is_empty() {
        println!("follow-up tasks (a worker enqueues them before acknowledging this one):");
        for f in &run.follow_ups {
            println!(
                "  {} {} into {} ({} bytes)",
                f.id,
                f.task_type,
                f.queue,
                f.payload.len()
            );
        }
    }
    if !run.logs.is_empty() || run.logs_dropped > 0 {
        println!("logs:");
        for line in &run.logs {
            println!("  {line}");
        }
        if run.logs_dropped > 0 {
            println!(
                "  ... {} more line(s) dropped past max_log",
                run.logs_dropped
            );
        }
    }
    Ok(code)
}
