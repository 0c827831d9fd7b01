//! `[redis]`: how to reach Redis (a cluster or one server), with the
//! credentials, TLS and durability settings. A leaf: it imports nothing of
//! wasq's but [`units`](crate::units).

use std::time::Duration;

use serde::Deserialize;

use crate::units::HumanDuration;

/// `[redis]`: where Redis is.
///
/// ```toml
/// [redis]
/// cluster = ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
/// # or: url = "redis://127.0.0.1:6379/0"
/// # username = "default"
/// # password = "secret"
/// # tls = false                    # or give the CA that signed the servers' certificates:
/// # tls_ca = "certs/redis-ca.pem"   # (implies TLS; default: the system's trust store)
/// # Durable enqueues: wait until a replica has each task (Redis WAIT).
/// # wait_replicas = 1
/// # wait_timeout = "1s"
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Seed nodes of a Redis Cluster (`host:port`).
    #[serde(default)]
    pub cluster: Vec<String>,
    /// A single Redis (`redis://` or `rediss://` URL).
    pub url: Option<String>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Use TLS for cluster nodes (for a URL, use `rediss://`).
    #[serde(default)]
    pub tls: bool,
    /// A PEM file with the CA certificate that signed the Redis servers'
    /// certificates, when it is not in the system's trust store. Implies
    /// TLS (for a URL, still write `rediss://`).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Durable enqueues: after writing tasks, wait until this many replicas
    /// of the queue's master have them (Redis `WAIT`), so a failover right
    /// after an enqueue cannot lose it. 0 (the default) does not wait:
    /// Redis replicates asynchronously, and a master that dies may take
    /// its last writes with it.
    #[serde(default)]
    pub wait_replicas: u32,
    /// How long a durable enqueue waits for its replicas (default 1s);
    /// past it the enqueue fails with [`NotReplicated`](crate::broker::BrokerError::NotReplicated).
    pub wait_timeout: Option<HumanDuration>,
}

impl RedisConfig {
    /// A single Redis at `url`.
    pub fn single(url: &str) -> Self {
        Self {
            url: Some(url.to_owned()),
            ..Self::default()
        }
    }

    /// A cluster with these seed nodes.
    pub fn cluster<S: AsRef<str>>(nodes: &[S]) -> Self {
        Self {
            cluster: nodes.iter().map(|n| n.as_ref().to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Durable enqueues: wait for `replicas` replicas (at most `timeout`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = wasq::RedisConfig::single("redis://127.0.0.1:6379")
    ///     .durable(1, Duration::from_secs(1));
    /// assert_eq!(config.wait_replicas, 1);
    /// ```
    pub fn durable(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_replicas = replicas;
        self.wait_timeout = Some(HumanDuration(timeout));
        self
    }

    /// How long a durable enqueue waits for its replicas.
    pub fn wait_timeout(&self) -> Duration {
        self.wait_timeout
            .map_or(Duration::from_secs(1), |t| t.0)
            .max(Duration::from_millis(1))
    }

    /// True when this names a cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster.is_empty()
    }
}
