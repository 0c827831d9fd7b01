//! `wasq module ls`: each task type's module (file and hash), limits and
//! grants, and from the last hour (what workers recorded in Redis): runs,
//! failures by cause, and median fuel and time.

use std::collections::BTreeMap;
use std::process::ExitCode;

use redis::AsyncCommands as _;
use serde::Serialize;
use sha2::Digest as _;
use wasq::broker::{Broker, now_secs};
use wasq::config::{Config, DirMode};
use wasq::worker::usage;

use super::args::ListArgs;
use super::table::Table;

/// The subcommands of `wasq module`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List the task types of the config with their modules, limits,
    /// grants and the last hour's outcomes.
    Ls(ListArgs),
}

/// One task type, as `module ls --json` prints it.
#[derive(Debug, Serialize)]
pub(super) struct ModuleRow {
    task_type: String,
    module: String,
    sha256: String,
    bytes: u64,
    fuel: Option<u64>,
    memory: u64,
    timeout_secs: f64,
    grants: Vec<String>,
    last_hour: Option<LastHour>,
}

/// What workers recorded for a type over the last hour.
#[derive(Debug, Default, Serialize)]
pub(super) struct LastHour {
    runs: u64,
    ok: u64,
    failures: BTreeMap<String, u64>,
    /// Outbound HTTP requests by outcome (`ok`, `denied`, `error`).
    http: BTreeMap<String, u64>,
    median_fuel: Option<u64>,
    median_micros: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args::Ls(ListArgs { redis, output }) = args;
    let config = Config::load(&redis.config)?;
    // Usage comes from Redis; without it the rest is still worth showing.
    let broker = match redis.connect().await {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("warning: no usage figures: {e:#}");
            None
        }
    };
    let rows = rows(&config, broker.as_ref()).await?;
    if output.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_rows(rows);
    Ok(ExitCode::SUCCESS)
}

/// Every task type of `config`, with usage from `broker` when given.
pub(super) async fn rows(
    config: &Config,
    broker: Option<&Broker>,
) -> anyhow::Result<Vec<ModuleRow>> {
    let mut rows = Vec::new();
    for (name, task) in &config.tasks {
        let path = config.resolve(task.module.get_ref());
        let bytes = std::fs::read(&path).unwrap_or_default();
        let limits = config.limits_of(name).unwrap_or_default();
        let mut grants = Vec::new();
        for d in &task.dirs {
            let mode = if d.mode == DirMode::ReadWrite {
                "rw"
            } else {
                "ro"
            };
            grants.push(format!("dir {}={} ({mode})", d.guest, d.host.display()));
        }
        grants.extend(task.env.iter().map(|e| format!("env {e}")));
        if task.clock {
            grants.push("clock".into());
        }
        grants.extend(task.network.iter().map(|n| format!("net {n}")));
        grants.extend(task.enqueue.iter().map(|q| format!("enqueue {q}")));
        if let Some((http, _)) = config.http_of(name) {
            grants.extend(http.iter().map(|h| format!("http {h}")));
        }
        let last_hour = match broker {
            Some(b) => Some(last_hour(b, name).await?),
            None => None,
        };
        rows.push(ModuleRow {
            task_type: name.clone(),
            module: path.display().to_string(),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
            fuel: limits.fuel,
            memory: limits.memory,
            timeout_secs: limits.timeout.as_secs_f64(),
            grants,
            last_hour,
        });
    }
    Ok(rows)
}

fn print_rows(rows: Vec<ModuleRow>) {
    if rows.is_empty() {
        println!("no task types in the config");
        return;
    }
    let mut table = Table::new(
        "Task type|Module|>Size|SHA-256|>Fuel|>Memory|>Timeout|Grants|>Runs 1h|>OK 1h|Failures 1h|HTTP 1h|>Median fuel|>Median time",
    );
    for r in rows {
        let hour = r.last_hour.as_ref();
        let failures = hour.map_or("-".to_owned(), |h| {
            if h.failures.is_empty() {
                "none".to_owned()
            } else {
                let causes: Vec<String> =
                    h.failures.iter().map(|(c, n)| format!("{c} {n}")).collect();
                causes.join(", ")
            }
        });
        table.row([
            r.task_type,
            r.module,
            format!("{} KiB", r.bytes / 1024),
            r.sha256[..12].to_owned(),
            r.fuel.map_or("unlimited".to_owned(), |f| f.to_string()),
            format!("{} MiB", r.memory >> 20),
            format!("{}s", r.timeout_secs),
            if r.grants.is_empty() {
                "none".to_owned()
            } else {
                r.grants.join(", ")
            },
            hour.map_or("-".to_owned(), |h| h.runs.to_string()),
            hour.map_or("-".to_owned(), |h| h.ok.to_string()),
            failures,
            hour.map_or("-".to_owned(), |h| {
                if h.http.is_empty() {
                    "none".to_owned()
                } else {
                    let outcomes: Vec<String> =
                        h.http.iter().map(|(o, n)| format!("{o} {n}")).collect();
                    outcomes.join(", ")
                }
            }),
            hour.and_then(|h| h.median_fuel)
                .map_or("-".to_owned(), |f| f.to_string()),
            hour.and_then(|h| h.median_micros)
                .map_or("-".to_owned(), |m| format!("{:.2}ms", m as f64 / 1000.0)),
        ]);
    }
    println!("{table}");
}

/// Sums the last 60 per-minute hashes of `task_type` and takes the medians
/// of its recent samples.
async fn last_hour(broker: &Broker, task_type: &str) -> anyhow::Result<LastHour> {
    let now = now_secs();
    let mut out = LastHour::default();
    let mut conn = broker.conn();
    let mut pipe = redis::pipe();
    for back in 0..=60 {
        pipe.hgetall(usage::minute_key(task_type, now / 60 - back));
    }
    let minutes: Vec<BTreeMap<String, u64>> = pipe.query_async(&mut conn).await?;
    for m in minutes {
        for (field, n) in m {
            match field.as_str() {
                "runs" => out.runs += n,
                "ok" => out.ok += n,
                other => {
                    if let Some(cause) = other.strip_prefix("fail:") {
                        *out.failures.entry(cause.to_owned()).or_default() += n;
                    } else if let Some(outcome) = other.strip_prefix("http:") {
                        *out.http.entry(outcome.to_owned()).or_default() += n;
                    }
                }
            }
        }
    }
    let samples: Vec<String> = conn
        .lrange(usage::samples_key(task_type), 0, usage::SAMPLES - 1)
        .await?;
    let mut fuel = Vec::new();
    let mut micros = Vec::new();
    for s in samples {
        let parts: Vec<u64> = s.split(' ').filter_map(|p| p.parse().ok()).collect();
        if let [at, f, m] = parts[..]
            && at as i64 >= now - 3600
        {
            fuel.push(f);
            micros.push(m);
        }
    }
    out.median_fuel = median(&mut fuel);
    out.median_micros = median(&mut micros);
    Ok(out)
}

fn median(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[values.len() / 2])
}
