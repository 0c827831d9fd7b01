//! `wasq queue`: list, pause and resume queues.

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
