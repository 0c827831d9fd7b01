//! The module registry benchmark, on a local cluster of 3 masters with a
//! replica each (appendonly on) and three `wasq worker` processes whose
//! task type comes from the registry:
//!
//! 1. **switch-over**: `PUSHES` pushes of a new version (the no-op handler
//!    under a fresh hash each time, so every worker fetches and compiles
//!    it); for each, the time from the pointer moving (the push's last
//!    step) until all three workers report running it;
//! 2. **the longest Redis command during a 40 MB push**: the masters'
//!    slow logs record every command (`slowlog-log-slower-than 0`) while a
//!    40 MB component is uploaded and the three workers fetch it;
//! 3. **drain throughput during a push**: drains of `DRAIN_TASKS` no-op
//!    tasks through the three workers, alternating drains with a 40 MB
//!    push starting as the drain starts and drains without one; medians
//!    compared.
//!
//! Run it with `scripts/bench-registry` (release builds first).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasq::broker::Broker;
use wasq::registry::Registry;
use wasq::{Client, Task, TaskOptions};
use wasq_tests::redis::RedisCluster;
use wasq_tests::{KillOnDrop, TestConfig, example};

const TYPE: &str = "bench:registry";
const QUEUE: &str = "bench-registry";
const PUSHES: usize = 30;
const DRAIN_TASKS: usize = 50_000;
const DRAIN_ROUNDS: usize = 3;
const BIG: usize = 40 << 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let wasq = std::env::var("WASQ_BIN").unwrap_or_else(|_| "target/release/wasq".into());
    eprintln!("starting a 3-master cluster with replicas and AOF ...");
    let cluster = RedisCluster::start(3, 1);
    let client = Client::connect(&cluster.redis_config()).await?;
    let broker = client.broker().clone();
    let registry = Registry::new(broker.clone());
    let noop = std::fs::read(example("noop"))?;
    registry
        .push(TYPE, &with_section(&noop, 0, 0), "bench@local")
        .await?;

    let config = TestConfig::with_sandboxes(
        &format!(
            "{}\n[worker]\nconcurrency = 20\nscheduler = false\n[queues.{QUEUE:?}]\n\
             [tasks.{TYPE:?}]\nmodule = \"registry\"\n",
            cluster.toml()
        ),
        20,
    );
    let path = config.path.display().to_string();
    let workers: Vec<KillOnDrop> = (0..3)
        .map(|_| {
            KillOnDrop(
                Command::new(&wasq)
                    .args(["worker", "--quiet", "--config", &path])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("starting wasq worker"),
            )
        })
        .collect();
    let current = registry.current_of(TYPE).await?;
    all_running(&registry, &current, Duration::from_secs(60)).await?;

    // 1. Switch-over.
    eprintln!("switch-over: {PUSHES} pushes ...");
    let mut switch = Vec::new();
    let mut push_times = Vec::new();
    for i in 0..PUSHES {
        let bytes = with_section(&noop, i + 1, 0);
        let started = Instant::now();
        let pushed = registry.push(TYPE, &bytes, "bench@local").await?;
        let pointed = Instant::now();
        push_times.push(pointed.duration_since(started).as_secs_f64() * 1000.0);
        all_running(&registry, &pushed.hash, Duration::from_secs(10)).await?;
        switch.push(pointed.elapsed().as_secs_f64() * 1000.0);
    }

    // 2. The longest command during a 40 MB push.
    eprintln!("the longest command during a 40 MB push ...");
    let masters = masters(&cluster);
    for port in &masters {
        slowlog(*port, &["CONFIG", "SET", "slowlog-log-slower-than", "0"])?;
        slowlog(*port, &["CONFIG", "SET", "slowlog-max-len", "100000"])?;
        slowlog(*port, &["SLOWLOG", "RESET"])?;
    }
    let big = with_section(&noop, 1_000, BIG);
    let worker_pids: Vec<u32> = workers.iter().map(|w| w.0.id()).collect();
    let redis_pids: Vec<u32> = cluster.nodes.iter().map(|n| n.pid()).collect();
    let cpu_before = (
        cpu_seconds(&worker_pids),
        cpu_seconds(&redis_pids),
        cpu_seconds(&[std::process::id()]),
    );
    let started = Instant::now();
    let pushed = registry.push(TYPE, &big, "bench@local").await?;
    let big_push = started.elapsed();
    all_running(&registry, &pushed.hash, Duration::from_secs(60)).await?;
    let big_switch = started.elapsed();
    let cpu = (
        cpu_seconds(&worker_pids) - cpu_before.0,
        cpu_seconds(&redis_pids) - cpu_before.1,
        cpu_seconds(&[std::process::id()]) - cpu_before.2,
    );
    let mut longest = (0u64, String::new());
    let (mut commands, mut over_1ms) = (0, 0);
    for port in &masters {
        for (micros, command) in slow_entries(*port)? {
            commands += 1;
            over_1ms += usize::from(micros > 1000);
            if micros > longest.0 {
                longest = (micros, command);
            }
        }
        slowlog(
            *port,
            &["CONFIG", "SET", "slowlog-log-slower-than", "10000"],
        )?;
    }

    // 3. Drain throughput with and without a 40 MB push.
    eprintln!("drains: {DRAIN_ROUNDS} of {DRAIN_TASKS} tasks each way, alternating ...");
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // (all 3 workers ran the pushed version at, the drain ended at), s.
    let mut swaps = Vec::new();
    for round in 0..2 * DRAIN_ROUNDS {
        let with_push = round % 2 == 1;
        broker.pause(QUEUE).await?;
        for chunk in (0..DRAIN_TASKS).collect::<Vec<_>>().chunks(1000) {
            let batch = chunk
                .iter()
                .map(|_| {
                    (
                        Task::new(TYPE, b"{}".to_vec()),
                        TaskOptions::default().queue(QUEUE),
                    )
                })
                .collect();
            for r in client.enqueue_batch(batch).await {
                r?;
            }
        }
        let before = processed(&broker).await;
        let next = with_section(&noop, 2_000 + round, BIG);
        let started = Instant::now();
        broker.resume(QUEUE).await?;
        let push = with_push.then(|| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let pushed = registry.push(TYPE, &next, "bench@local").await?;
                all_running(&registry, &pushed.hash, Duration::from_secs(60)).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(started.elapsed())
            })
        });
        loop {
            if processed(&broker).await - before >= DRAIN_TASKS as u64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the drain stalled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained = started.elapsed();
        rates[usize::from(with_push)].push(DRAIN_TASKS as f64 / drained.as_secs_f64());
        if let Some(push) = push {
            let swapped = push.await?.map_err(|e| e.to_string())?;
            swaps.push((swapped.as_secs_f64(), drained.as_secs_f64()));
        }
    }

    switch.sort_by(f64::total_cmp);
    push_times.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    let (mut plain, mut pushing) = (rates[0].clone(), rates[1].clone());
    let (plain_m, pushing_m) = (median(&mut plain), median(&mut pushing));
    println!("module registry, 3 workers, 3-master cluster with replicas and AOF");
    println!(
        "  switch-over, pointer moved -> all 3 workers run it ({PUSHES} pushes of a {} KiB module): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        noop.len() / 1024,
        pct(&switch, 0.5),
        pct(&switch, 0.99),
        switch[switch.len() - 1]
    );
    println!(
        "  the push itself (upload, seal, point, gc): p50 {:.1} ms",
        pct(&push_times, 0.5)
    );
    println!(
        "  40 MB push: {:.2} s to store, {:.2} s until all 3 workers run it",
        big_push.as_secs_f64(),
        big_switch.as_secs_f64()
    );
    println!(
        "  CPU time the 40 MB push took, until all 3 workers ran it: workers {:.2} s (3 together), Redis {:.2} s (6 nodes), the pushing client {:.2} s",
        cpu.0, cpu.1, cpu.2
    );
    println!(
        "  longest Redis command during it: {:.2} ms ({}), of {commands} commands on the masters ({over_1ms} over 1 ms)",
        longest.0 as f64 / 1000.0,
        longest.1
    );
    println!(
        "  drain of {DRAIN_TASKS} no-op tasks: {:.0} tasks/s without a push, {:.0} with a 40 MB push ({:+.1} %); rounds: {:?} / {:?}",
        plain_m,
        pushing_m,
        (pushing_m / plain_m - 1.0) * 100.0,
        rates[0].iter().map(|r| r.round()).collect::<Vec<_>>(),
        rates[1].iter().map(|r| r.round()).collect::<Vec<_>>(),
    );
    println!(
        "  in each drain with a push, all 3 workers ran the new version at / the drain ended at: {}",
        swaps
            .iter()
            .map(|(s, d)| format!("{s:.2} s / {d:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `component` with a custom section appended that holds `tag` and `pad`
/// bytes: the same handler under a new hash, as large as needed.
fn with_section(component: &[u8], tag: usize, pad: usize) -> Vec<u8> {
    let mut body = format!("{tag}:{}", uuid::Uuid::new_v4()).into_bytes();
    body.reserve(pad);
    // Bytes that do not repeat, as a real module's code does not.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ tag as u64;
    body.extend((0..pad).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    wasq_tests::with_custom_section(component, "wasq-bench", &body)
}

/// Waits until the three workers report running `hash`.
async fn all_running(
    registry: &Registry,
    hash: &str,
    within: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let deadline = Instant::now() + within;
    loop {
        let reports = registry.workers().await?;
        let running = reports
            .iter()
            .filter(|r| r.types.get(TYPE).is_some_and(|t| t.running == hash))
            .count();
        if running >= 3 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{running} of 3 workers run {hash}: {reports:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn masters(cluster: &RedisCluster) -> Vec<u16> {
    cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["ROLE"]).starts_with("master"))
        .map(|n| n.port)
        .collect()
}

fn slowlog(port: u16, args: &[&str]) -> redis::RedisResult<()> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(&mut conn).map(drop)
}

/// Every slow log entry of the master on `port`: (microseconds, command).
fn slow_entries(port: u16) -> redis::RedisResult<Vec<(u64, String)>> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection()?;
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query(&mut conn)?;
    let mut out = Vec::new();
    for entry in entries {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let micros = match fields.get(2) {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => continue,
        };
        let command = match fields.get(3) {
            Some(redis::Value::Array(args)) => args
                .iter()
                .take(2)
                .map(|a| match a {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        out.push((micros, command));
    }
    Ok(out)
}

/// User + system CPU seconds the processes `pids` have used so far.
fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf(3) has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may hold spaces): state
            // is the 3rd field, utime the 14th and stime the 15th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
            field(14).unwrap_or(0.0) + field(15).unwrap_or(0.0)
        })
        .sum::<f64>()
        / ticks
}

async fn processed(broker: &Broker) -> u64 {
    broker
        .stats(QUEUE)
        .await
        .map(|s| s.processed_total)
        .unwrap_or(0)
}
