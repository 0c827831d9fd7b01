//! `wasq queue`: list, inspect, pause, resume and remove queues, and show
//! their daily history.

use std::process::ExitCode;

/// Arguments of `wasq queue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List queues; with --cluster, each queue's key slot and the nodes
    /// (address and id, master first) that hold it.
    Ls {
        #[command(flatten)]
        redis: super::connect::RedisArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One queue in full: counts by state, paused, latency (age of the
    /// oldest pending task), processed and failed today, where it lives.
    Inspect {
        #[command(flatten)]
        redis: super::connect::RedisArgs,
        /// The queue.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Processed and failed counts per day (UTC), today first.
    History {
        #[command(flatten)]
        redis: super::connect::RedisArgs,
        /// The queue.
        queue: String,
        /// How many days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a queue with its counters. Refuses a queue with tasks unless
    /// --force (then they are deleted too), and one with active tasks.
    Rm {
        #[command(flatten)]
        redis: super::connect::RedisArgs,
        /// The queue.
        queue: String,
        /// Delete its tasks too.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Pause a queue: workers stop taking its tasks.
    Pause {
        #[command(flatten)]
        redis: super::connect::RedisArgs,
        /// The queue.
        queue: String,
    },
    /// Resume a paused queue.
    Resume {
        #[command(flatten)]
        redis: super::connect::RedisArgs,
        /// The queue.
        queue: String,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Ls { redis, json } => {
            let broker = redis.connect().await?;
            let queues = broker.queues().await?;
            let mut rows = Vec::new();
            for q in &queues {
                rows.push((q.clone(), broker.locate(q).await?));
            }
            if json {
                let out: Vec<_> = rows
                    .iter()
                    .map(|(q, loc)| serde_json::json!({ "queue": q, "slot": loc.as_ref().map(|l| l.slot), "nodes": loc.as_ref().map(|l| &l.nodes) }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
            if !broker.is_cluster() {
                for (q, _) in rows {
                    println!("{q}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let width = rows.iter().map(|(q, _)| q.len()).max().unwrap_or(5).max(5);
            println!(
                "{:<width$}  {:<15}  Cluster Nodes",
                "Queue", "Cluster KeySlot"
            );
            println!(
                "{:<width$}  {:<15}  -------------",
                "-----", "---------------"
            );
            for (q, loc) in rows {
                let loc = loc.expect("cluster queues have a location");
                let nodes: Vec<String> = loc
                    .nodes
                    .iter()
                    .map(|n| format!("{{{} {}}}", n.id, n.addr))
                    .collect();
                println!("{q:<width$}  {:<15}  [{}]", loc.slot, nodes.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { redis, queue, json } => {
            let broker = redis.connect().await?;
            known_queue(&broker, &queue).await?;
            let stats = broker.stats(&queue).await?;
            let latency = broker.latency(&queue).await?;
            let location = broker.locate(&queue).await?;
            if json {
                let out = serde_json::json!({
                    "stats": stats,
                    "latency_secs": latency,
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
        Command::History {
            redis,
            queue,
            days,
            json,
        } => {
            let broker = redis.connect().await?;
            known_queue(&broker, &queue).await?;
            let history = broker.history(&queue, days).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&history)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<10}  {:>10}  {:>8}  {:>10}",
                "Date", "Processed", "Failed", "Error rate"
            );
            for day in history {
                let rate = super::stats::error_rate(day.processed, day.failed);
                println!(
                    "{:<10}  {:>10}  {:>8}  {:>9.1}%",
                    day.date, day.processed, day.failed, rate
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rm {
            redis,
            queue,
            force,
            yes,
        } => {
            let broker = redis.connect().await?;
            known_queue(&broker, &queue).await?;
            super::task::confirm(yes, &format!("remove queue {queue}"))?;
            let deleted = broker.remove_queue(&queue, force).await?;
            println!("queue {queue} removed ({deleted} task(s) deleted)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { redis, queue } => {
            let broker = redis.connect().await?;
            known_queue(&broker, &queue).await?;
            broker.pause(&queue).await?;
            println!("queue {queue} paused");
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { redis, queue } => {
            let broker = redis.connect().await?;
            known_queue(&broker, &queue).await?;
            broker.resume(&queue).await?;
            println!("queue {queue} resumed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Fails with the known queues when `queue` is not one of them.
async fn known_queue(broker: &wasq::broker::Broker, queue: &str) -> anyhow::Result<()> {
    let queues = broker.queues().await?;
    if queues.iter().any(|q| q == queue) {
        return Ok(());
    }
    anyhow::bail!(
        "no queue named {queue:?}; known queues: {}",
        if queues.is_empty() {
            "none".to_owned()
        } else {
            queues.join(", ")
        }
    )
}
