//! Arguments that several commands share, each a `clap::Args` struct that a
//! command flattens into its own: the config file, `--json`, `--yes`, a
//! queue on a Redis, and what every listing takes. The Redis connection
//! options themselves are [`RedisArgs`], next to the code that connects.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use wasq::broker::Broker;

use super::connect::RedisArgs;

/// Where the config is read from (`check`, `exec`, `worker`).
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(short, long, env = "WASQ_CONFIG", default_value = "wasq.toml")]
    pub config: PathBuf,
}

/// `--json`, taken by every command that prints something a script may
/// want to read.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--yes`, taken by every destructive command.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct YesArg {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
}

impl YesArg {
    /// Goes on with `--yes`; otherwise asks on the terminal (`what?
    /// [y/N]`), and refuses when stdin is not a terminal to ask on.
    pub fn confirm(self, what: &str) -> anyhow::Result<()> {
        if self.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("refusing to {what} without --yes (stdin is not a terminal to ask on)");
        }
        eprint!("{what}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            Ok(())
        } else {
            anyhow::bail!("not confirmed")
        }
    }
}

/// What every listing (`stats`, `queue ls`, `server ls`, `module ls`)
/// takes: where Redis is, and `--json`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub output: JsonArg,
}

/// One queue, named as the first positional argument, on a Redis.
#[derive(Debug, clap::Args)]
pub struct QueueTarget {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The queue.
    pub queue: String,
}

impl QueueTarget {
    /// Connects (see [`RedisArgs::connect`]).
    pub async fn connect(&self) -> anyhow::Result<Broker> {
        self.redis.connect().await
    }

    /// Connects, and fails with the known queues when the queue is not one
    /// of them.
    pub async fn connect_known(&self) -> anyhow::Result<Broker> {
        let broker = self.connect().await?;
        let queues = broker.queues().await?;
        if !queues.contains(&self.queue) {
            anyhow::bail!(
                "no queue named {:?}; known queues: {}",
                self.queue,
                if queues.is_empty() {
                    "none".to_owned()
                } else {
                    queues.join(", ")
                }
            );
        }
        Ok(broker)
    }
}
