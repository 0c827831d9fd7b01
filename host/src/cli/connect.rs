//! How a command finds Redis: `--redis-url`, `--cluster` (with
//! `--cluster-addrs`), or the `[redis]` section of the config.

use std::path::PathBuf;

use anyhow::Context as _;
use wasq::RedisConfig;
use wasq::broker::Broker;

/// Redis connection flags shared by commands that talk to Redis.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// A config file with a [redis] section (used when neither --redis-url
    /// nor --cluster is given).
    #[arg(short, long, env = "WASQ_CONFIG", default_value = "wasq.toml")]
    pub config: PathBuf,
    /// A single Redis, e.g. redis://127.0.0.1:6379/0.
    #[arg(long, env = "WASQ_REDIS_URL", conflicts_with = "cluster")]
    pub redis_url: Option<String>,
    /// Talk to a Redis Cluster (seed nodes from --cluster-addrs).
    #[arg(long)]
    pub cluster: bool,
    /// Seed nodes of the cluster.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005"
    )]
    pub cluster_addrs: Vec<String>,
}

impl RedisArgs {
    /// The Redis to use.
    pub fn redis_config(&self) -> anyhow::Result<RedisConfig> {
        if let Some(url) = &self.redis_url {
            return Ok(RedisConfig::single(url));
        }
        if self.cluster {
            return Ok(RedisConfig::cluster(&self.cluster_addrs));
        }
        if self.config.exists() {
            let config = wasq::config::Config::load(&self.config)?;
            if let Some(redis) = config.redis {
                return Ok(redis);
            }
        }
        Ok(RedisConfig::single("redis://127.0.0.1:6379"))
    }

    /// Connects, naming where on failure.
    pub async fn connect(&self) -> anyhow::Result<Broker> {
        let config = self.redis_config()?;
        Broker::connect(&config)
            .await
            .context("connecting to Redis")
    }
}
