//! `wasq worker`: pull tasks and run them until SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context as _;

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
    /// Reload when the config file or a module file changes (checked twice
    /// a second). Modules, limits, grants, new task types and each queue's
    /// priority, concurrency and rate limits apply between tasks; anything
    /// else (the Redis address, [worker], [runtime], the set of queues) is
    /// refused with a message and the running config stays. SIGHUP reloads
    /// too, with or without --watch.
    #[arg(long)]
    watch: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = wasq::config::Config::load(&args.config.config)?;
    if args.metrics.is_some() {
        config.worker.metrics = args.metrics;
    }
    if let Some(redis) = &mut config.redis {
        args.credentials.apply(redis);
    }
    let registry = registry_modules(&config).await?;
    let runtime = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            match wasq::runtime::Runtime::load_with(&config, &registry) {
                Err(e) if !registry.is_empty() => {
                    // A registry version this host cannot run must not keep
                    // the worker down: start with the versions that load on
                    // their own, and the others' types without a version;
                    // the worker then reports why it refuses those.
                    let mut runnable = registry;
                    runnable.retain(|task_type, bytes| {
                        let one = BTreeMap::from([(task_type.clone(), bytes.clone())]);
                        wasq::runtime::Runtime::load_with(&config, &one).is_ok()
                    });
                    tracing::warn!(
                        "{e}; starting with the registry versions of {} only",
                        if runnable.is_empty() {
                            "no type".to_owned()
                        } else {
                            runnable.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    );
                    wasq::runtime::Runtime::load_with(&config, &runnable)
                }
                loaded => loaded,
            }
        })
        .await
        .context("loading the runtime panicked")??
    };
    let mut worker = Worker::connect_patiently(&config, runtime, shutdown_signal()).await?;
    let mut events = worker.events();
    let reloads = tokio::spawn(reloads(
        worker.reloader(),
        args.config.config.clone(),
        args.watch,
        args.metrics,
        args.credentials.clone(),
    ));
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
    reloads.abort();
    Ok(ExitCode::SUCCESS)
}

/// The current registry version of each `module = "registry"` type, so the
/// sandbox pool is sized for them at start. A type with no version yet, or
/// one that cannot be fetched, starts without one (logged); the worker
/// takes it as soon as it can.
async fn registry_modules(
    config: &wasq::config::Config,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let types: Vec<String> = config
        .tasks
        .iter()
        .filter(|(_, t)| t.from_registry())
        .map(|(name, _)| name.clone())
        .collect();
    let mut modules = BTreeMap::new();
    if types.is_empty() {
        return Ok(modules);
    }
    let Some(redis) = &config.redis else {
        anyhow::bail!("task types with module = \"registry\" need a [redis] section");
    };
    let broker = match wasq::broker::Broker::connect(redis).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(
                "cannot read the module registry yet ({e}); registry types start without a version"
            );
            return Ok(modules);
        }
    };
    let registry = wasq::registry::Registry::new(broker);
    for task_type in types {
        let fetched = match registry.current_of(&task_type).await {
            Ok(hash) => registry.fetch(&hash).await,
            Err(e) => Err(e),
        };
        match fetched {
            Ok(bytes) => {
                modules.insert(task_type, bytes);
            }
            Err(e) => tracing::warn!(task_type = %task_type, "{e}; its tasks wait for a version"),
        }
    }
    Ok(modules)
}

/// Reloads the config on SIGHUP, and with `watch` whenever the config file
/// or one of its module files changes.
async fn reloads(
    reloader: wasq::worker::Reloader,
    path: std::path::PathBuf,
    watch: bool,
    metrics: Option<std::net::SocketAddr>,
    credentials: super::connect::Credentials,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler; reload with --watch");
        return;
    };
    let mut seen = snapshot(&path);
    loop {
        tokio::select! {
            _ = hangup.recv() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)), if watch => {
                let now = snapshot(&path);
                if now == seen {
                    continue;
                }
            }
        }
        seen = snapshot(&path);
        let mut config = match wasq::config::Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "wasq worker: {} not applied: {e}; the running config stays",
                    path.display()
                );
                continue;
            }
        };
        if metrics.is_some() {
            config.worker.metrics = metrics;
        }
        if let Some(redis) = &mut config.redis {
            credentials.apply(redis);
        }
        match reloader.reload(config).await {
            Ok(changes) => {
                tracing::info!(?changes, "config reloaded");
                eprintln!(
                    "wasq worker: reloaded {} (types added {:?}, removed {:?}, new modules {:?}, new settings {:?})",
                    path.display(),
                    changes.added,
                    changes.removed,
                    changes.new_modules,
                    changes.resettled
                );
            }
            Err(e) => {
                tracing::warn!("config reload refused: {e}");
                eprintln!("wasq worker: {}: {e}", path.display());
            }
        }
    }
}

/// The modification time and size of the config file and of every module
/// file it names.
fn snapshot(
    path: &std::path::Path,
) -> Vec<(std::path::PathBuf, Option<(std::time::SystemTime, u64)>)> {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    let mut files = vec![(path.to_owned(), stamp(path))];
    if let Ok(config) = wasq::config::Config::load(path) {
        for task in config.tasks.values().filter(|t| !t.from_registry()) {
            let module = config.resolve(task.module.get_ref());
            let s = stamp(&module);
            files.push((module, s));
        }
    }
    files
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
