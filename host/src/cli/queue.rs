//! `wasq queue`: list, inspect, pause, resume and remove queues, and show
//! their daily history.

use std::process::ExitCode;

use super::args::{JsonArg, ListArgs, QueueTarget, YesArg};
use super::table::Table;

/// The subcommands of `wasq queue`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List queues; with --cluster, each queue's key slot and the nodes
    /// (address and id, master first) that hold it.
    Ls(ListArgs),
    /// One queue in full: counts by state, paused, latency (age of the
    /// oldest pending task), processed and failed today, its task groups
    /// waiting to be aggregated, its cluster-wide limits (rate and
    /// max_running) with their use and the task claims they deferred, where
    /// it lives.
    Inspect {
        #[command(flatten)]
        target: QueueTarget,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Processed and failed counts per day (UTC), today first.
    History {
        #[command(flatten)]
        target: QueueTarget,
        /// How many days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Remove a queue with its counters. Refuses a queue with tasks unless
    /// --force (then they are deleted too), and one with active tasks.
    Rm {
        #[command(flatten)]
        target: QueueTarget,
        /// Delete its tasks too.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        yes: YesArg,
    },
    /// Pause a queue: workers stop taking its tasks.
    Pause(QueueTarget),
    /// Resume a paused queue.
    Resume(QueueTarget),
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Ls(ListArgs { redis, output }) => {
            let broker = redis.connect().await?;
            let queues = broker.queues().await?;
            let mut rows = Vec::new();
            for q in &queues {
                rows.push((q.clone(), broker.locate(q).await?));
            }
            if output.json {
                let out: Vec<_> = rows
                    .iter()
                    .map(|(q, loc)| serde_json::json!({ "queue": q, "slot": loc.as_ref().map(|l| l.slot), "nodes": loc.as_ref().map(|l| &l.nodes) }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
            if rows.is_empty() {
                println!("no queues");
                return Ok(ExitCode::SUCCESS);
            }
            if !broker.is_cluster() {
                let mut table = Table::new("Queue");
                for (q, _) in rows {
                    table.row([q]);
                }
                println!("{table}");
                return Ok(ExitCode::SUCCESS);
            }
            // Asynq's headers and node format (`{id address}`, master
            // first), so what its users know reads the same.
            let mut table = Table::new("Queue|>Cluster KeySlot|Cluster Nodes");
            for (q, loc) in rows {
                let loc = loc.expect("cluster queues have a location");
                let nodes: Vec<String> = loc
                    .nodes
                    .iter()
                    .map(|n| format!("{{{} {}}}", n.id, n.addr))
                    .collect();
                table.row([q, loc.slot.to_string(), format!("[{}]", nodes.join(" "))]);
            }
            println!("{table}");
            Ok(ExitCode::SUCCESS)
        }
        Args::Inspect { target, output } => {
            let broker = target.connect_known().await?;
            let queue = target.queue;
            let stats = broker.stats(&queue).await?;
            let latency = broker.latency(&queue).await?;
            let location = broker.locate(&queue).await?;
            let limits = broker.limit_status(&queue).await?;
            let groups = broker.groups(&queue).await?;
            if output.json {
                let out = serde_json::json!({
                    "stats": stats,
                    "latency_secs": latency,
                    "limits": limits,
                    "groups": groups
                        .iter()
                        .map(|(group, size)| serde_json::json!({"group": group, "size": size}))
                        .collect::<Vec<_>>(),
                    "location": location,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "Queue:      {queue}{}",
                if stats.paused { " (paused)" } else { "" }
            );
            println!(
                "Tasks:      {} pending, {} active, {} scheduled, {} retry, {} archived, {} completed",
                stats.pending,
                stats.active,
                stats.scheduled,
                stats.retry,
                stats.archived,
                stats.completed
            );
            println!("Latency:    {latency:.3}s (the oldest pending task's wait)");
            let rate = super::stats::error_rate(stats.processed_today, stats.failed_today);
            println!(
                "Today:      {} processed, {} failed ({rate:.1} % error rate)",
                stats.processed_today, stats.failed_today
            );
            println!(
                "All time:   {} processed, {} failed",
                stats.processed_total, stats.failed_total
            );
            if !groups.is_empty() {
                let waiting: u64 = groups.iter().map(|(_, size)| size).sum();
                println!(
                    "Groups:     {} ({waiting} task(s) aggregating)",
                    groups.len()
                );
            }
            if let Some(rate) = &limits.rate {
                println!(
                    "Rate:       {rate}, burst {} ({:.1} token(s) now; {} task claim(s) deferred)",
                    limits.burst.unwrap_or(1),
                    limits.tokens.unwrap_or(0.0),
                    limits.deferred_rate
                );
            }
            if let Some(max) = limits.max_running {
                println!(
                    "Running:    {} of max_running {max} across all workers ({} task claim(s) deferred)",
                    limits.running, limits.deferred_running
                );
            }
            if let Some(loc) = location {
                let nodes: Vec<String> = loc
                    .nodes
                    .iter()
                    .map(|n| format!("{} {}", n.addr, n.id))
                    .collect();
                println!("Key slot:   {}", loc.slot);
                println!("Nodes:      {}", nodes.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Args::History {
            target,
            days,
            output,
        } => {
            let broker = target.connect_known().await?;
            let history = broker.history(&target.queue, days).await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&history)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new("Date|>Processed|>Failed|>Error rate");
            for day in history {
                let rate = super::stats::error_rate(day.processed, day.failed);
                table.row([
                    day.date.to_string(),
                    day.processed.to_string(),
                    day.failed.to_string(),
                    format!("{rate:.1}%"),
                ]);
            }
            println!("{table}");
            Ok(ExitCode::SUCCESS)
        }
        Args::Rm { target, force, yes } => {
            let broker = target.connect_known().await?;
            let queue = target.queue;
            yes.confirm(&format!("remove queue {queue}"))?;
            let deleted = broker.remove_queue(&queue, force).await?;
            println!("queue {queue} removed ({deleted} task(s) deleted)");
            Ok(ExitCode::SUCCESS)
        }
        Args::Pause(target) => {
            target.connect_known().await?.pause(&target.queue).await?;
            println!("queue {} paused", target.queue);
            Ok(ExitCode::SUCCESS)
        }
        Args::Resume(target) => {
            target.connect_known().await?.resume(&target.queue).await?;
            println!("queue {} resumed", target.queue);
            Ok(ExitCode::SUCCESS)
        }
    }
}
