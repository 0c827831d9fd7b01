//! The registry of running workers (Asynq's `asynq:servers`) and the
//! cluster's health as a node reports it.

use prost::Message as _;
use redis::AsyncCommands as _;
use serde::Serialize;

use super::{Broker, BrokerError, keys, now_secs};

/// The cluster as one of its nodes sees it (`CLUSTER INFO`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `ok` or `fail`.
    pub state: String,
    /// Nodes known, masters and replicas.
    pub known_nodes: u64,
    /// Masters serving slots.
    pub size: u64,
    /// Slots served and healthy.
    pub slots_ok: u64,
}

/// A registered worker process (Asynq's `ServerInfo`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerEntry {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i32,
    /// Server id.
    pub server_id: String,
    /// "active", or "stopped" while shutting down.
    pub status: String,
    /// Tasks running now.
    pub active_workers: i32,
    /// Concurrency.
    pub concurrency: i32,
    /// Queues and their priorities.
    pub queues: std::collections::BTreeMap<String, i32>,
    /// Strict priority?
    pub strict_priority: bool,
    /// Started at, Unix seconds.
    pub started_at: i64,
}

impl Broker {
    /// The cluster's state; `None` on a single Redis.
    pub async fn cluster_info(&self) -> Result<Option<ClusterInfo>, BrokerError> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let text: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut self.conn.clone())
            .await?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let number = |name: &str| field(name).parse().unwrap_or(0);
        Ok(Some(ClusterInfo {
            state: field("cluster_state"),
            known_nodes: number("cluster_known_nodes"),
            size: number("cluster_size"),
            slots_ok: number("cluster_slots_ok"),
        }))
    }

    /// Registered servers whose registration has not expired, by host and pid.
    pub async fn servers(&self) -> Result<Vec<ServerEntry>, BrokerError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn
            .zrangebyscore(keys::ALL_SERVERS, now_secs(), "+inf")
            .await?;
        let mut out = Vec::new();
        for key in keys {
            let raw: Option<Vec<u8>> = conn.get(&key).await?;
            let Some(info) = raw.and_then(|r| crate::proto::ServerInfo::decode(r.as_slice()).ok())
            else {
                continue;
            };
            out.push(ServerEntry {
                host: info.host,
                pid: info.pid,
                server_id: info.server_id,
                status: info.status,
                active_workers: info.active_worker_count,
                concurrency: info.concurrency,
                queues: info.queues.into_iter().collect(),
                strict_priority: info.strict_priority,
                started_at: info.start_time.map_or(0, |t| t.seconds),
            });
        }
        out.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
        Ok(out)
    }
}
