//! `wasq module ls`: each task type's module (file, or the registry's
//! current version), limits and grants, what each worker runs of the
//! registry types (and any version it refused, with why), and from the last
//! hour (what workers recorded in Redis): runs by module version, failures
//! by cause, and median fuel and time.

use std::collections::BTreeMap;
use std::process::ExitCode;

use redis::AsyncCommands as _;
use serde::Serialize;
use sha2::Digest as _;
use wasq::broker::{Broker, now_secs};
use wasq::config::{Config, DirMode};
use wasq::registry::Registry;
use wasq::worker::usage;

use super::super::args::ListArgs;
use super::super::table::Table;

/// One task type, as `module ls --json` prints it.
#[derive(Debug, Serialize)]
pub(in crate::cli) struct ModuleRow {
    task_type: String,
    module: String,
    sha256: String,
    bytes: u64,
    fuel: Option<u64>,
    memory: u64,
    timeout_secs: f64,
    grants: Vec<String>,
    /// For a registry type: its canary, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<wasq::registry::Canary>,
    /// For a registry type: what each live worker runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    workers: Vec<WorkerVersion>,
    last_hour: Option<LastHour>,
}

/// What one worker runs of a registry type.
#[derive(Debug, Serialize)]
pub(in crate::cli) struct WorkerVersion {
    worker: String,
    server_id: String,
    running: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<wasq::registry::Refusal>,
}

/// One module version's runs over the last hour.
#[derive(Debug, Default, Serialize)]
pub(in crate::cli) struct VersionRuns {
    runs: u64,
    failures: u64,
}

/// What workers recorded for a type over the last hour.
#[derive(Debug, Default, Serialize)]
pub(in crate::cli) struct LastHour {
    runs: u64,
    ok: u64,
    failures: BTreeMap<String, u64>,
    /// Outbound HTTP requests by outcome (`ok`, `denied`, `error`).
    http: BTreeMap<String, u64>,
    /// Runs and failures by module version (SHA-256).
    modules: BTreeMap<String, VersionRuns>,
    median_fuel: Option<u64>,
    median_micros: Option<u64>,
}

pub async fn run(ListArgs { redis, output }: ListArgs) -> anyhow::Result<ExitCode> {
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
pub(in crate::cli) async fn rows(
    config: &Config,
    broker: Option<&Broker>,
) -> anyhow::Result<Vec<ModuleRow>> {
    let mut rows = Vec::new();
    let registry = broker.map(|b| Registry::new(b.clone()));
    let (current, reports, mut canaries) = match &registry {
        Some(r) if config.tasks.values().any(|t| t.from_registry()) => {
            (r.current().await?, r.workers().await?, r.canaries().await?)
        }
        _ => Default::default(),
    };
    for (name, task) in &config.tasks {
        let (module, sha256, size) = if task.from_registry() {
            match current.get(name) {
                Some(hash) => {
                    let size = match &registry {
                        Some(r) => r
                            .history(name)
                            .await?
                            .into_iter()
                            .find(|e| e.hash == *hash)
                            .map_or(0, |e| e.size),
                        None => 0,
                    };
                    ("registry".to_owned(), hash.clone(), size)
                }
                None => ("registry (no version pushed)".to_owned(), String::new(), 0),
            }
        } else {
            let path = config.resolve(task.module.get_ref());
            let bytes = std::fs::read(&path).unwrap_or_default();
            (
                path.display().to_string(),
                hex::encode(sha2::Sha256::digest(&bytes)),
                bytes.len() as u64,
            )
        };
        let workers = reports
            .iter()
            .filter_map(|r| {
                let status = r.types.get(name)?;
                Some(WorkerVersion {
                    worker: r.process.clone(),
                    server_id: r.server_id.clone(),
                    running: status.running.clone(),
                    canary: status.canary.clone(),
                    refused: status.refused.clone(),
                })
            })
            .collect();
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
            module,
            sha256,
            bytes: size,
            fuel: limits.fuel,
            memory: limits.memory,
            timeout_secs: limits.timeout.as_secs_f64(),
            grants,
            canary: canaries.remove(name),
            workers,
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
    let short = |h: &str| {
        if h.is_empty() {
            "-".to_owned()
        } else {
            h[..12.min(h.len())].to_owned()
        }
    };
    let mut versions = Table::new("Task type|Worker|Runs|Canary|Refused|Why");
    let mut any_version = false;
    let mut outcomes = Table::new("Task type|Version|Role|>Runs 1h|>Failed 1h|>Failure rate");
    let mut any_outcome = false;
    for r in &rows {
        for w in &r.workers {
            any_version = true;
            versions.row([
                r.task_type.clone(),
                w.worker.clone(),
                short(&w.running),
                w.canary.as_deref().map_or("-".to_owned(), short),
                w.refused
                    .as_ref()
                    .map_or("-".to_owned(), |f| short(&f.hash)),
                w.refused
                    .as_ref()
                    .map_or("-".to_owned(), |f| f.reason.clone()),
            ]);
        }
        let Some(hour) = &r.last_hour else { continue };
        if r.canary.is_none() && hour.modules.len() < 2 {
            continue;
        }
        for (hash, v) in &hour.modules {
            any_outcome = true;
            let role = match &r.canary {
                Some(c) if c.hash == *hash => format!("canary {} %", c.percent),
                _ if *hash == r.sha256 => "current".to_owned(),
                _ => "earlier".to_owned(),
            };
            outcomes.row([
                r.task_type.clone(),
                short(hash),
                role,
                v.runs.to_string(),
                v.failures.to_string(),
                format!("{:.1} %", 100.0 * v.failures as f64 / v.runs.max(1) as f64),
            ]);
        }
    }
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
            if r.sha256.is_empty() {
                "-".to_owned()
            } else {
                r.sha256.chars().take(12).collect()
            },
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
    if any_version {
        println!("\nRegistry versions by worker:");
        println!("{versions}");
    }
    if any_outcome {
        println!("\nOutcomes by version, last hour:");
        println!("{outcomes}");
    }
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
                    } else if let Some(module) = other.strip_prefix("module:") {
                        out.modules.entry(module.to_owned()).or_default().runs += n;
                    } else if let Some(module) = other.strip_prefix("module_fail:") {
                        out.modules.entry(module.to_owned()).or_default().failures += n;
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
