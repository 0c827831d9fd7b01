//! How a command finds Redis: `--redis-url`, `--cluster` (with
//! `--cluster-addrs`), or the `[redis]` section of the config.

use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// How long to keep trying while Redis is unreachable, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub connect_timeout: std::time::Duration,
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

    /// The config file, when it exists (for task types' limits).
    pub fn config_file(&self) -> anyhow::Result<Option<wasq::config::Config>> {
        if self.redis_url.is_none() && !self.cluster && self.config.exists() {
            return Ok(Some(wasq::config::Config::load(&self.config)?));
        }
        Ok(None)
    }

    /// Connects, retrying with backoff for `--connect-timeout` while Redis
    /// is unreachable (each failure is logged), then failing with an error
    /// that names where it tried.
    pub async fn connect(&self) -> anyhow::Result<Broker> {
        let config = self.redis_config()?;
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match Broker::connect(&config).await {
                Ok(broker) => return Ok(broker),
                Err(e) if started.elapsed() + delay < self.connect_timeout => {
                    tracing::warn!("Redis is unreachable, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "connecting to Redis (gave up after {:.1?}; see --connect-timeout)",
                            started.elapsed()
                        )
                    });
                }
            }
        }
    }
}
