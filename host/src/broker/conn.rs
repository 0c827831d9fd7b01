//! One connection type over a Redis Cluster and a single Redis.
//!
//! The cluster side is redis-rs's async cluster client (MOVED/ASK
//! redirects, reconnects, topology refresh after a failover); the single
//! side is a `ConnectionManager` (reconnects). Both are multiplexed:
//! concurrent requests share one socket per node and are pipelined on the
//! wire.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub use crate::redis_config::RedisConfig;

impl RedisConfig {
    fn node_url(&self, node: &str) -> String {
        let scheme = if self.tls || self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        if node.contains("://") {
            node.to_owned()
        } else {
            format!("{scheme}://{node}")
        }
    }
}

/// Errors connecting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The `tls_ca` file could not be read.
    #[error("cannot read the TLS CA certificate {path}: {source}")]
    TlsCa {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Neither `cluster` nor `url` was given, or both.
    #[error("[redis] needs exactly one of `cluster = [...]` or `url = \"redis://...\"`")]
    Unconfigured,
    /// Redis refused or could not be reached.
    #[error("cannot connect to Redis at {target}: {source}")]
    Redis {
        /// Where.
        target: String,
        /// Why.
        source: redis::RedisError,
    },
}

/// A connection to a cluster or to one Redis; cheap to clone.
#[derive(Clone)]
pub enum Conn {
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
    /// One Redis.
    Single(redis::aio::ConnectionManager),
}

impl Conn {
    /// Connects. `response_timeout` bounds each request (blocking waits use
    /// a connection of their own with a longer one).
    pub async fn connect(
        config: &RedisConfig,
        response_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        match (config.is_cluster(), &config.url) {
            (true, None) => {
                let nodes: Vec<String> =
                    config.cluster.iter().map(|n| config.node_url(n)).collect();
                let target = config.cluster.join(",");
                let mut builder = ClusterClient::builder(nodes)
                    .response_timeout(response_timeout)
                    .connection_timeout(Duration::from_secs(2))
                    .retries(6);
                if let Some(user) = &config.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &config.password {
                    builder = builder.password(password);
                }
                if let Some(certs) = config.certificates()? {
                    builder = builder.certs(certs);
                }
                let client = builder.build().map_err(|source| ConnectError::Redis {
                    target: target.clone(),
                    source,
                })?;
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(|source| ConnectError::Redis { target, source })?;
                Ok(Conn::Cluster(conn))
            }
            (false, Some(url)) => {
                let mut info: redis::ConnectionInfo =
                    redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(
                        |source| ConnectError::Redis {
                            target: url.clone(),
                            source,
                        },
                    )?;
                let mut redis_settings = info.redis_settings().clone();
                if let Some(user) = &config.username {
                    redis_settings = redis_settings.set_username(user);
                }
                if let Some(password) = &config.password {
                    redis_settings = redis_settings.set_password(password);
                }
                info = info.set_redis_settings(redis_settings);
                let client = config.client(info).map_err(|source| ConnectError::Redis {
                    target: url.clone(),
                    source,
                })?;
                let manager_config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    // Callers retry connecting with their own backoff.
                    .set_number_of_retries(1);
                let conn = client
                    .get_connection_manager_with_config(manager_config)
                    .await
                    .map_err(|source| ConnectError::Redis {
                        target: url.clone(),
                        source,
                    })?;
                Ok(Conn::Single(conn))
            }
            _ => Err(ConnectError::Unconfigured),
        }
    }
}

impl RedisConfig {
    /// The CA to trust, from `tls_ca`.
    fn certificates(&self) -> Result<Option<redis::TlsCertificates>, ConnectError> {
        let Some(path) = &self.tls_ca else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|source| ConnectError::TlsCa {
            path: path.clone(),
            source,
        })?;
        Ok(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
    }

    /// A client for one node, trusting `tls_ca` when given.
    fn client(&self, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
        match self.certificates() {
            Ok(Some(certs)) => redis::Client::build_with_tls(info, certs),
            Ok(None) => redis::Client::open(info),
            Err(e) => Err(redis::RedisError::from(std::io::Error::other(
                e.to_string(),
            ))),
        }
    }

    /// A pub/sub connection to the first node that answers (any node of a
    /// cluster hears every publish).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, ConnectError> {
        let targets: Vec<String> = match (&self.url, self.is_cluster()) {
            (Some(url), _) => vec![url.clone()],
            (None, true) => self.cluster.iter().map(|n| self.node_url(n)).collect(),
            (None, false) => return Err(ConnectError::Unconfigured),
        };
        let mut last = None;
        for target in targets {
            let attempt = async {
                let mut info: redis::ConnectionInfo =
                    redis::IntoConnectionInfo::into_connection_info(target.as_str())?;
                let mut settings = info.redis_settings().clone();
                if let Some(user) = &self.username {
                    settings = settings.set_username(user);
                }
                if let Some(password) = &self.password {
                    settings = settings.set_password(password);
                }
                info = info.set_redis_settings(settings);
                self.client(info)?.get_async_pubsub().await
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(source)) => last = Some(ConnectError::Redis { target, source }),
                Err(_) => {
                    last = Some(ConnectError::Redis {
                        target,
                        source: redis::RedisError::from(std::io::Error::from(
                            std::io::ErrorKind::TimedOut,
                        )),
                    })
                }
            }
        }
        Err(last.unwrap_or(ConnectError::Unconfigured))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Single(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Cluster(c) => c.get_db(),
            Conn::Single(c) => c.get_db(),
        }
    }
}
