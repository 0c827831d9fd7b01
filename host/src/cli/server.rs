//! `wasq server ls`: the worker processes registered in Redis.

use std::process::ExitCode;

use super::args::ListArgs;
use super::table::Table;

/// The subcommands of `wasq server`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List servers: host, pid, state, active workers, queues, start time.
    Ls(ListArgs),
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args::Ls(ListArgs { redis, output }) = args;
    let servers = redis.connect().await?.servers().await?;
    if output.json {
        println!("{}", serde_json::to_string_pretty(&servers)?);
        return Ok(ExitCode::SUCCESS);
    }
    if servers.is_empty() {
        println!("no servers");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new("Host|>PID|State|>Active|Started|Queues");
    for s in servers {
        let queues: Vec<String> = s.queues.iter().map(|(q, p)| format!("{q}:{p}")).collect();
        let started = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.started_at.max(0) as u64),
        );
        table.row([
            s.host,
            s.pid.to_string(),
            s.status,
            format!("{}/{}", s.active_workers, s.concurrency),
            started.to_string(),
            queues.join(" "),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
