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

/// A CA and a server certificate for 127.0.0.1 signed by it (made with the
/// `openssl` command), for Redis over TLS.
#[derive(Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM), what clients trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Makes a fresh CA and server certificate in `dir`.
    pub fn generate(dir: &Path) -> Self {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("running openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=wasq test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// One `redis-server` process.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Child,
    dir: PathBuf,
    /// The CA to trust when the server speaks only TLS.
    tls_ca: Option<PathBuf>,
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
        Self::start_with(base, port, cluster, None)
    }

    /// Starts a server that speaks only TLS (with `tls`'s certificate) on a
    /// free port; in a cluster, the bus and replication use TLS too.
    pub fn start_tls(base: &Path, cluster: bool, tls: &TlsFiles) -> Self {
        Self::start_with(base, free_port(), cluster, Some(tls))
    }

    fn start_with(base: &Path, port: u16, cluster: bool, tls: Option<&TlsFiles>) -> Self {
        let dir = base.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nsave \"\"\nappendonly yes\nlogfile redis.log\n",
            dir.display()
        );
        if let Some(tls) = tls {
            conf = conf.replacen(&format!("port {port}\n"), "port 0\n", 1);
            conf.push_str(&format!(
                "tls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
                tls.cert.display(),
                tls.key.display(),
                tls.ca.display()
            ));
            if cluster {
                conf.push_str("tls-cluster yes\ntls-replication yes\n");
            }
        }
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
        let server = Self {
            port,
            child,
            dir,
            tls_ca: tls.map(|t| t.ca.clone()),
        };
        server.wait_until(|out| out.trim() == "PONG", &["PING"]);
        server
    }

    /// `redis-cli -p <port> <args>`.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(ca) = &self.tls_ca {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd.args(args).output().expect("running redis-cli");
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
        Self::start_with(masters, replicas, None)
    }

    /// Like [`start`](Self::start), every node speaking only TLS.
    pub fn start_tls(masters: usize, replicas: usize, tls: &TlsFiles) -> Self {
        Self::start_with(masters, replicas, Some(tls))
    }

    fn start_with(masters: usize, replicas: usize, tls: Option<&TlsFiles>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| match tls {
                Some(tls) => RedisServer::start_tls(dir.path(), true, tls),
                None => RedisServer::start(dir.path(), true),
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let mut create = Command::new("redis-cli");
        if let Some(tls) = tls {
            create.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        let out = create
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
