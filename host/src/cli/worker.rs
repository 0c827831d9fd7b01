//! `wasq worker`: pull tasks and run them until SIGINT/SIGTERM.

use std::process::ExitCode;

use wasq::worker::{Disposition, Worker};

/// Arguments of `wasq worker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: super::args::ConfigArg,
    #[command(flatten)]
    credentials: super::connect::Credentials,
    /// Print one JSON line per task instead of text.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print nothing per task (logs still go to stderr).
    #[arg(long, short)]
    quiet: bool,
    /// Serve Prometheus /metrics and /healthz here, e.g. 127.0.0.1:9464
    /// (overrides `[worker] metrics`).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mut config, runtime) = super::load_runtime(&args.config.config).await?;
    if args.metrics.is_some() {
        config.worker.metrics = args.metrics;
    }
    if let Some(redis) = &mut config.redis {
        args.credentials.apply(redis);
    }
    let mut worker = Worker::connect_patiently(&config, runtime, shutdown_signal()).await?;
    let mut events = worker.events();
    let json = args.json;
    let quiet = args.quiet;
    let printer = tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if quiet {
                continue;
            }
            if json {
                if let Ok(line) = serde_json::to_string(&e) {
                    println!("{line}");
                }
                continue;
            }
            let what = match e.disposition {
                Disposition::Done | Disposition::Completed => {
                    format!("ok: {}", e.result.unwrap_or_default())
                }
                other => format!("{other:?}: {}", e.error.unwrap_or_default()).to_lowercase(),
            };
            println!(
                "{:<14} {:<22} {}  {:>8.1}ms  {what}",
                e.queue,
                e.task_type,
                e.id,
                e.micros as f64 / 1000.0
            );
        }
    });
    eprintln!(
        "wasq worker: {} task type(s), queues {}; Ctrl-C to stop",
        config.tasks.len(),
        if config.queues.is_empty() {
            "default".to_owned()
        } else {
            config.queues.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    );
    worker.run(shutdown_signal()).await?;
    printer.abort();
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
