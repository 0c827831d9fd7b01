//! `wasq stats`: counts by state per queue, processed and failed today with
//! the error rate, and the cluster's state.

use std::process::ExitCode;

/// Arguments of `wasq stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    redis: super::connect::RedisArgs,
    /// Print JSON: `{"queues": [...], "cluster": {...} | null}`.
    #[arg(long)]
    json: bool,
}

/// The error rate of a day's counts, in percent.
pub fn error_rate(processed: u64, failed: u64) -> f64 {
    if processed == 0 {
        0.0
    } else {
        failed as f64 / processed as f64 * 100.0
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let broker = args.redis.connect().await?;
    let mut all = Vec::new();
    for q in broker.queues().await? {
        all.push(broker.stats(&q).await?);
    }
    let cluster = broker.cluster_info().await?;
    if args.json {
        let out = serde_json::json!({ "queues": all, "cluster": cluster });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>7} {:>7} {:>9} {:>7} {:>8} {:>9} {:>15} {:>12} {:>10}  paused",
        "Queue",
        "pending",
        "active",
        "scheduled",
        "retry",
        "archived",
        "completed",
        "processed today",
        "failed today",
        "error rate"
    );
    for s in &all {
        println!(
            "{:<16} {:>7} {:>7} {:>9} {:>7} {:>8} {:>9} {:>15} {:>12} {:>9.1}%  {}",
            s.queue,
            s.pending,
            s.active,
            s.scheduled,
            s.retry,
            s.archived,
            s.completed,
            s.processed_today,
            s.failed_today,
            error_rate(s.processed_today, s.failed_today),
            if s.paused { "yes" } else { "no" }
        );
    }
    match cluster {
        Some(c) => println!(
            "\ncluster: state {}, {} known nodes, {} masters, {} of 16384 slots ok",
            c.state, c.known_nodes, c.size, c.slots_ok
        ),
        None => println!("\nsingle Redis (not a cluster)"),
    }
    Ok(ExitCode::SUCCESS)
}
