//! `wasq stats`: counts by state per queue, processed and failed today.

use std::process::ExitCode;

/// Arguments of `wasq stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    redis: super::connect::RedisArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let broker = args.redis.connect().await?;
    let mut all = Vec::new();
    for q in broker.queues().await? {
        all.push(broker.stats(&q).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>7} {:>7} {:>9} {:>7} {:>8} {:>9} {:>15} {:>12}  paused",
        "Queue",
        "pending",
        "active",
        "scheduled",
        "retry",
        "archived",
        "completed",
        "processed today",
        "failed today"
    );
    for s in all {
        println!(
            "{:<16} {:>7} {:>7} {:>9} {:>7} {:>8} {:>9} {:>15} {:>12}  {}",
            s.queue,
            s.pending,
            s.active,
            s.scheduled,
            s.retry,
            s.archived,
            s.completed,
            s.processed_today,
            s.failed_today,
            if s.paused { "yes" } else { "no" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
