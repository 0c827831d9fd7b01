//! `wasq stats`: counts by state per queue, processed and failed today with
//! the error rate, and the cluster's state. With `--json`:
//! `{"queues": [...], "cluster": {...} | null}`.

use std::process::ExitCode;

use super::args::ListArgs;
use super::table::Table;

/// Arguments of `wasq stats`.
pub type Args = ListArgs;

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
    if args.output.json {
        let out = serde_json::json!({ "queues": all, "cluster": cluster });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no queues");
    } else {
        let mut table = Table::new(
            "Queue|>pending|>active|>scheduled|>retry|>archived|>completed|>processed today|>failed today|>error rate|paused",
        );
        for s in &all {
            let counts = s.by_state().map(|n| n.to_string());
            table.row(std::iter::once(s.queue.clone()).chain(counts).chain([
                s.processed_today.to_string(),
                s.failed_today.to_string(),
                format!("{:.1}%", error_rate(s.processed_today, s.failed_today)),
                if s.paused { "yes" } else { "no" }.to_owned(),
            ]));
        }
        println!("{table}");
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
