//! How a command finds Redis: `--redis-url`, `--cluster` (with
//! `--cluster-addrs`), or the `[redis]` section of the config; then
//! `--username`, `--password`, `--tls` and `--tls-ca` (or their
//! `WASQ_REDIS_*` environment variables) override its credentials and TLS.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasq::RedisConfig;
use wasq::backoff::Backoff;
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
    #[command(flatten)]
    pub credentials: Credentials,
    /// Use TLS for the cluster's nodes (for --redis-url, write rediss://).
    #[arg(long)]
    pub tls: bool,
    /// A PEM file with the CA certificate of the Redis servers, when it is
    /// not in the system's trust store.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// How long to keep trying while Redis is unreachable, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub connect_timeout: std::time::Duration,
}

/// `--username` and `--password` (or `WASQ_REDIS_USERNAME` and
/// `WASQ_REDIS_PASSWORD`): the Redis credentials, over the config's.
#[derive(Debug, Clone, clap::Args)]
pub struct Credentials {
    /// ACL user name (overrides the config's).
    #[arg(long, env = "WASQ_REDIS_USERNAME")]
    pub username: Option<String>,
    /// Password (overrides the config's; prefer the environment variable).
    #[arg(long, env = "WASQ_REDIS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl Credentials {
    /// Puts the credentials given into `config`.
    pub fn apply(&self, config: &mut RedisConfig) {
        if let Some(user) = &self.username {
            config.username = Some(user.clone());
        }
        if let Some(password) = &self.password {
            config.password = Some(password.clone());
        }
    }
}

impl RedisArgs {
    /// The Redis to use, with the credential and TLS flags applied.
    pub fn redis_config(&self) -> anyhow::Result<RedisConfig> {
        let mut config = self.where_redis_is()?;
        self.credentials.apply(&mut config);
        config.tls |= self.tls;
        if let Some(ca) = &self.tls_ca {
            config.tls_ca = Some(ca.clone());
        }
        Ok(config)
    }

    fn where_redis_is(&self) -> anyhow::Result<RedisConfig> {
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
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            match Broker::connect(&config).await {
                Ok(broker) => return Ok(broker),
                Err(e) if started.elapsed() + backoff.peek() < self.connect_timeout => {
                    let delay = backoff.next_delay();
                    tracing::warn!("Redis is unreachable, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
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
