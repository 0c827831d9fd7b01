//! Real Redis servers for the tests: a cluster (masters + replicas,
//! `cluster-enabled yes`, `appendonly yes`) and single nodes, on free
//! loopback ports in a temp dir.
//!
//! One cluster and one single node are started per test binary and shared
//! (tests use queue names of their own); every server this harness starts
//! is killed when the test process exits, and a [`RedisServer`] or
//! [`RedisCluster`] a test owns is killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasq::RedisConfig;

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn kill_all() {
    if let Ok(pids) = PIDS.lock() {
        for pid in pids.iter() {
            // SAFETY: kill(2) on pids of children this process started.
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
}

fn track(child: &Child) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function with atexit(3).
        unsafe {
            libc::atexit(kill_all);
        }
    });
    PIDS.lock().unwrap().push(child.id());
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// One `redis-server` process.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server; `cluster` enables cluster mode.
    pub fn start(base: &Path, cluster: bool) -> Self {
        Self::start_on(base, free_port(), cluster)
    }

    /// A free port for [`start_on`](Self::start_on).
    pub fn free_port() -> u16 {
        free_port()
    }

    /// Starts a server on `port` with its data in `base/<port>` (a restart
    /// on the same port finds its append-only file again).
    pub fn start_on(base: &Path, port: u16, cluster: bool) -> Self {
        let dir = base.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nsave \"\"\nappendonly yes\nlogfile redis.log\n",
            dir.display()
        );
        if cluster {
            conf.push_str(
                "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\nrepl-diskless-sync-delay 0\n",
            );
        }
        std::fs::write(dir.join("redis.conf"), conf).unwrap();
        let child = Command::new("redis-server")
            .arg(dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (scripts/setup installs it)");
        track(&child);
        let server = Self { port, child, dir };
        server.wait_until(|out| out.trim() == "PONG", &["PING"]);
        server
    }

    /// `redis-cli -p <port> <args>`.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_until(&self, ok: impl Fn(&str) -> bool, args: &[&str]) {
        let started = Instant::now();
        while !ok(&self.cli(args)) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis on port {} not ready; see {}/redis.log",
                self.port,
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again with its config and data (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .arg(self.dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restarting redis-server");
        track(&child);
        self.child = child;
        self.wait_until(|out| out.trim() == "PONG", &["PING"]);
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of real servers.
pub struct RedisCluster {
    /// Every node, masters and replicas.
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
    replicas: usize,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and waits for
    /// `cluster_state:ok` with every replica attached.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start(dir.path(), true))
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self {
            nodes,
            _dir: dir,
            replicas: masters * replicas,
        };
        cluster.wait_healthy();
        cluster
    }

    /// Waits until every node reports `cluster_state:ok` and every replica
    /// is attached and connected (after a start, or a failover and the old
    /// master's return as a replica).
    pub fn wait_healthy(&self) {
        for node in &self.nodes {
            node.wait_until(|out| out.contains("cluster_state:ok"), &["CLUSTER", "INFO"]);
        }
        for node in &self.nodes {
            node.wait_until(
                |out| {
                    out.lines()
                        .filter(|l| l.contains("slave") && l.contains("connected"))
                        .filter(|l| !l.contains("fail"))
                        .count()
                        == self.replicas
                },
                &["CLUSTER", "NODES"],
            );
        }
        // A replica that has not finished its first sync cannot take over.
        for node in &self.nodes {
            node.wait_until(
                |out| out.contains("role:master") || out.contains("master_link_status:up"),
                &["INFO", "replication"],
            );
        }
    }

    /// The key slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The index of the master serving `slot` now, if one does (none while a
    /// failed master's slots wait for a replica to take over).
    pub fn serving_master(&self, slot: u16) -> Option<usize> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| n.cli(&["CLUSTER", "NODES"]))
            .find(|out| out.contains("myself"))?;
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 8 && f[2].contains("master") && !f[2].contains("fail") {
                for range in &f[8..] {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                        && a <= slot
                        && slot <= b
                    {
                        let addr = f[1].split('@').next().unwrap();
                        return self.nodes.iter().position(|n| n.addr() == addr);
                    }
                }
            }
        }
        None
    }

    /// The index in [`nodes`](Self::nodes) of the master serving `slot`.
    pub fn master_index_of(&self, slot: u16) -> usize {
        let master = self.master_of(slot).addr();
        self.nodes.iter().position(|n| n.addr() == master).unwrap()
    }

    /// Seed addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// A `[redis]` config for the cluster.
    pub fn redis_config(&self) -> RedisConfig {
        RedisConfig::cluster(&self.addrs())
    }

    /// The `[redis]` section as TOML.
    pub fn toml(&self) -> String {
        let addrs: Vec<String> = self.addrs().iter().map(|a| format!("{a:?}")).collect();
        format!("[redis]\ncluster = [{}]\n", addrs.join(", "))
    }

    /// The node (by address) serving `slot` as master.
    pub fn master_of(&self, slot: u16) -> &RedisServer {
        // Ask a node that is up (the old master may be down after a failover).
        let nodes = self
            .nodes
            .iter()
            .map(|n| n.cli(&["CLUSTER", "NODES"]))
            .find(|out| out.contains("myself"))
            .expect("some node answers");
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 8 && f[2].contains("master") {
                for range in &f[8..] {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                        && !f[2].contains("fail")
                        && a <= slot
                        && slot <= b
                    {
                        let addr = f[1].split('@').next().unwrap();
                        return self.nodes.iter().find(|n| n.addr() == addr).unwrap();
                    }
                }
            }
        }
        panic!("no master for slot {slot}");
    }
}

/// The cluster shared by the tests of this process (3 masters, 3 replicas).
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3, 1))
}

/// The single Redis shared by the tests of this process.
pub fn shared_single() -> &'static RedisServer {
    static SINGLE: OnceLock<(tempfile::TempDir, RedisServer)> = OnceLock::new();
    &SINGLE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let server = RedisServer::start(dir.path(), false);
            (dir, server)
        })
        .1
}
