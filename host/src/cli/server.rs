//! `wasq server ls`: the worker processes registered in Redis.

use std::process::ExitCode;

/// Arguments of `wasq server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List servers: host, pid, state, active workers, queues, start time.
    Ls {
        #[command(flatten)]
        redis: super::connect::RedisArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Ls { redis, json } => {
            let servers = redis.connect().await?.servers().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&servers)?);
                return Ok(ExitCode::SUCCESS);
            }
            if servers.is_empty() {
                println!("no servers");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<20}  {:>7}  {:<8}  {:>7}  {:<20}  Queues",
                "Host", "PID", "State", "Active", "Started"
            );
            for s in servers {
                let queues: Vec<String> =
                    s.queues.iter().map(|(q, p)| format!("{q}:{p}")).collect();
                let started = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(s.started_at.max(0) as u64),
                );
                println!(
                    "{:<20}  {:>7}  {:<8}  {:>7}  {:<20}  {}",
                    s.host,
                    s.pid,
                    s.status,
                    format!("{}/{}", s.active_workers, s.concurrency),
                    started.to_string(),
                    queues.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
