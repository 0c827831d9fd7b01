//! `wasq module push | history | rollback | gc`: the module registry from
//! the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use wasq::config::Config;
use wasq::registry::{self, Registry};

use super::super::args::JsonArg;
use super::super::connect::RedisArgs;
use super::super::table::Table;

/// Arguments of `wasq module push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The component (`.wasm`).
    file: PathBuf,
    /// The task type it handles (a `[tasks.<type>]` of the config, whose
    /// limits it is checked against).
    #[arg(long = "type", short = 't', value_name = "T")]
    task_type: String,
    /// Run it for this share of T's tasks only (e.g. `10%`), beside the
    /// current version; `wasq module ls` compares their failure rates.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    canary: Option<f64>,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    output: JsonArg,
}

/// `10%`, `10` or `2.5%`, within (0, 100].
fn percent(text: &str) -> Result<f64, String> {
    let n: f64 = text
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage (e.g. 10%)"))?;
    if n > 0.0 && n <= 100.0 {
        Ok(n)
    } else {
        Err(format!(
            "{text:?}: a canary's share is above 0% and at most 100%"
        ))
    }
}

/// Arguments of the commands that take one task type: `wasq module
/// promote` and `wasq module history`.
#[derive(Debug, clap::Args)]
pub struct TypeArgs {
    /// The task type.
    task_type: String,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    output: JsonArg,
}

/// Arguments of `wasq module rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The task type.
    task_type: String,
    /// The version to go back to: its hash, or enough of its start to name
    /// one version of the history.
    #[arg(long, value_name = "HASH")]
    to: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    output: JsonArg,
}

/// Arguments of `wasq module gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Versions kept per task type.
    #[arg(long, default_value_t = registry::DEFAULT_KEEP)]
    keep: usize,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    output: JsonArg,
}

pub async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let config = Config::load(&args.redis.config)?;
    check(&config, &args.task_type, &args.file, bytes.clone()).await?;
    let broker = args.redis.connect().await?;
    let registry = Registry::new(broker);
    let pushed = match args.canary {
        Some(percent) => registry
            .push_canary(&args.task_type, &bytes, percent, &registry::who())
            .await
            .with_context(|| format!("pushing {} as a canary", args.file.display()))?,
        None => registry
            .push(&args.task_type, &bytes, &registry::who())
            .await
            .with_context(|| format!("pushing {}", args.file.display()))?,
    };
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&pushed)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(percent) = args.canary {
        println!(
            "{}: {} runs {percent}% of the tasks beside {} ({} bytes); `wasq module ls` compares \
             them, `wasq module promote {}` or `wasq module rollback {}` ends the trial",
            args.task_type,
            short(&pushed.hash),
            short(&pushed.previous),
            bytes.len(),
            args.task_type,
            args.task_type,
        );
    } else if !pushed.changed {
        println!(
            "{} already runs {} ({}): nothing changed",
            args.task_type,
            short(&pushed.hash),
            args.file.display()
        );
    } else {
        println!(
            "{}: {} → {} ({} bytes, {} chunk(s) uploaded); workers swap to it between tasks",
            args.task_type,
            if pushed.previous.is_empty() {
                "none".to_owned()
            } else {
                short(&pushed.previous)
            },
            short(&pushed.hash),
            bytes.len(),
            pushed.chunks_uploaded,
        );
    }
    if !pushed.collected.is_empty() {
        println!("collected {} old version(s)", pushed.collected.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks `bytes` as `wasq check` checks task type `task_type`'s module:
/// a component of the world, its memory at start within the type's limit.
async fn check(
    config: &Config,
    task_type: &str,
    file: &std::path::Path,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let Some(task) = config.tasks.get(task_type) else {
        anyhow::bail!(
            "task type {task_type:?} is not in {}: add a [tasks.\"{task_type}\"] with \
             module = \"registry\" (its limits and grants apply to every version)",
            config
                .source
                .as_deref()
                .unwrap_or(std::path::Path::new("the config"))
                .display()
        );
    };
    if !task.from_registry() {
        eprintln!(
            "note: {task_type} has module = {:?} in this config: workers run that file, not the \
             registry, until it says module = \"registry\"",
            task.module.get_ref()
        );
    }
    let mut only = config.clone();
    only.tasks.retain(|name, _| name == task_type);
    only.periodic.clear();
    if let Some(t) = only.tasks.get_mut(task_type) {
        t.module = toml::Spanned::new(t.module.span(), PathBuf::from("registry"));
    }
    // Small: the pool needs one sandbox to check one module.
    only.runtime.max_sandboxes = 1;
    let name = task_type.to_owned();
    tokio::task::spawn_blocking(move || {
        let modules = BTreeMap::from([(name, bytes)]);
        wasq::runtime::Runtime::load_with(&only, &modules).map(drop)
    })
    .await
    .context("checking the module panicked")?
    .with_context(|| format!("{} is refused", file.display()))
}

pub async fn history(args: TypeArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::new(args.redis.connect().await?);
    let history = registry.history(&args.task_type).await?;
    let current = registry.current().await?.remove(&args.task_type);
    if args.output.json {
        let out = serde_json::json!({
            "task_type": args.task_type,
            "current": current,
            "history": history,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if history.is_empty() {
        anyhow::bail!(registry::RegistryError::NoVersion(args.task_type));
    }
    let mut table = Table::new("When|Action|By|SHA-256|>Size|Current");
    for e in &history {
        table.row([
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.at.max(0) as u64),
            )
            .to_string(),
            e.action.clone(),
            e.by.clone(),
            e.hash.clone(),
            format!("{} KiB", e.size / 1024),
            if current.as_deref() == Some(&e.hash) {
                "*".into()
            } else {
                String::new()
            },
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub async fn promote(args: TypeArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::new(args.redis.connect().await?);
    let hash = registry.promote(&args.task_type, &registry::who()).await?;
    say(
        args.output.json,
        serde_json::json!({"task_type": args.task_type, "hash": hash}),
        || {
            format!(
                "{} now runs {} for every task; workers swap to it between tasks",
                args.task_type,
                short(&hash)
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::new(args.redis.connect().await?);
    if args.to.is_none()
        && let Some(ended) = registry
            .end_canary(&args.task_type, &registry::who())
            .await?
    {
        say(
            args.output.json,
            serde_json::json!({"task_type": args.task_type, "canary_ended": ended}),
            || {
                format!(
                    "{}: the canary {} ended; every task runs the current version again",
                    args.task_type,
                    short(&ended)
                )
            },
        );
        return Ok(ExitCode::SUCCESS);
    }
    let hash = registry
        .rollback(&args.task_type, args.to.as_deref(), &registry::who())
        .await?;
    say(
        args.output.json,
        serde_json::json!({"task_type": args.task_type, "hash": hash}),
        || {
            format!(
                "{} now runs {}; workers swap to it between tasks",
                args.task_type,
                short(&hash)
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::new(args.redis.connect().await?);
    let removed = registry.collect_garbage(args.keep).await?;
    if args.output.json {
        println!("{}", serde_json::json!({ "removed": removed }));
    } else if removed.is_empty() {
        println!("nothing to collect");
    } else {
        for hash in &removed {
            println!("removed {hash}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a command's outcome: `json` (one line) with `--json`, else the
/// sentence `text` makes.
fn say(as_json: bool, json: serde_json::Value, text: impl FnOnce() -> String) {
    if as_json {
        println!("{json}");
    } else {
        println!("{}", text());
    }
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}
