//! The queue benchmark: enqueue and drain rates, enqueue-to-start latency,
//! worker memory and Redis CPU per task, on a local cluster of 3 masters
//! with a replica each (appendonly on) started by the test harness.
//! Redis's own ceiling is measured in the same run with `redis-benchmark`,
//! and BullMQ (`tests/bullmq/bench.mjs`) runs the same workload on the same
//! cluster afterwards: the baseline the targets are ratios of.
//!
//! Run it with `scripts/bench` (builds the release binary and installs the
//! BullMQ driver's node modules first). `WASQ_BENCH_TASKS` sets the size,
//! `WASQ_BENCH_QUICK=1` measures the drain only (`=latency`: the latency
//! only), `WASQ_BENCH_DEBUG=1` prints
//! the masters' command statistics for the drain, `WASQ_BENCH_DRAIN=both`
//! drains the two queues side by side instead of one at a time.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use wasq::broker::Broker;
use wasq::{Client, Task, TaskOptions};
use wasq_tests::procfs::{cpu_seconds, status_kib};
use wasq_tests::redis::{RedisCluster, RedisServer};
use wasq_tests::{KillOnDrop, TestConfig};

const TASKS: usize = 100_000;
const CALLERS: usize = 50;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks: usize = std::env::var("WASQ_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TASKS);
    let wasq = std::env::var("WASQ_BIN").unwrap_or_else(|_| "target/release/wasq".into());
    eprintln!("starting a 3-master cluster with replicas and AOF ...");
    let cluster = RedisCluster::start(3, 1);
    let client = Client::connect(&cluster.redis_config()).await?;
    let broker = client.broker().clone();

    // Redis's own ceiling on one master, same run.
    let master = cluster.master_of(0);
    let ceiling = redis_ceiling(master.port);

    // WASQ_BENCH_QUICK=1: the drain figures only (both queues filled in
    // batches, no latency run, no BullMQ run), for comparing builds;
    // WASQ_BENCH_QUICK=latency: the latency run only.
    let quick = std::env::var_os("WASQ_BENCH_QUICK").is_some();
    if std::env::var("WASQ_BENCH_QUICK").is_ok_and(|v| v == "latency") {
        return latency(&cluster, &client, &wasq).await;
    }

    // Enqueue one by one: CALLERS concurrent callers, one task per call.
    let started = Instant::now();
    let results: Vec<_> = stream::iter(0..if quick { 0 } else { tasks })
        .map(|_| {
            client.enqueue(
                Task::new("noop", b"{}".to_vec()),
                TaskOptions::default().queue("bench-one"),
            )
        })
        .buffer_unordered(CALLERS)
        .collect()
        .await;
    let one_by_one = tasks as f64 / started.elapsed().as_secs_f64();
    assert!(results.iter().all(Result::is_ok), "an enqueue failed");

    // Enqueue in batches of 1000, pipelined.
    let started = Instant::now();
    enqueue_batched(&client, "bench-batch", tasks).await?;
    let batched = tasks as f64 / started.elapsed().as_secs_f64();
    if quick {
        enqueue_batched(&client, "bench-one", tasks).await?;
    }

    // Drain both queues through the sandbox with `wasq worker`: one queue
    // at a time, as BullMQ's drain below does (bench-one waits paused until
    // bench-batch is done), or with WASQ_BENCH_DRAIN=both side by side.
    let side_by_side = std::env::var("WASQ_BENCH_DRAIN").is_ok_and(|v| v == "both");
    let config = TestConfig::new(&format!(
        "{}\n[worker]\nconcurrency = {CALLERS}\nlease = \"30s\"\n[queues.bench-one]\n[queues.bench-batch]\n\
         [tasks.noop]\nmodule = \"{{examples}}/noop.wasm\"\n",
        cluster.toml()
    ));
    let config_path = config.path.display().to_string();
    run(&wasq, &["check", "--config", &config_path]);
    // The Redis CPU that counts is that of the masters holding the queues.
    let queue_masters = queue_masters(&cluster, &["bench-one", "bench-batch"]);
    let debug = std::env::var_os("WASQ_BENCH_DEBUG").is_some();
    // Command statistics of the drain alone.
    for n in &cluster.nodes {
        n.cli(&["CONFIG", "RESETSTAT"]);
    }
    if !side_by_side {
        broker.pause("bench-one").await?;
    }
    let cpu_before = masters_cpu(&cluster, &queue_masters);
    let scripts_before = masters_scripts(&cluster);
    let started = Instant::now();
    let mut worker = KillOnDrop(
        Command::new(&wasq)
            .args(["worker", "--quiet", "--config", &config_path])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let total = 2 * tasks as u64;
    let mut peak_rss = 0;
    let mut paused = !side_by_side;
    loop {
        let first = processed(&broker, "bench-batch").await;
        if paused && first >= tasks as u64 {
            broker.resume("bench-one").await?;
            paused = false;
        }
        let done = processed(&broker, "bench-one").await + first;
        peak_rss = peak_rss.max(status_kib(worker.0.id(), "VmHWM"));
        if done >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "drain stalled at {done}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let cpu_used = masters_cpu(&cluster, &queue_masters) - cpu_before;
    let worker_cpu = cpu_seconds(worker.0.id());
    if debug {
        for n in cluster
            .nodes
            .iter()
            .filter(|n| n.cli(&["ROLE"]).starts_with("master"))
        {
            eprintln!(
                "--- commandstats of {}\n{}",
                n.addr(),
                n.cli(&["INFO", "commandstats"])
            );
        }
    }
    let scripts = masters_scripts(&cluster);
    let commands = commands_run(&cluster, &queue_masters);
    peak_rss = peak_rss.max(status_kib(worker.0.id(), "VmHWM"));
    stop(&mut worker.0);
    let drain = total as f64 / drain_secs;
    for q in ["bench-one", "bench-batch"] {
        let s = broker.stats(q).await?;
        assert_eq!(
            (
                s.processed_total,
                s.failed_total,
                s.pending,
                s.active,
                s.retry,
                s.archived
            ),
            (tasks as u64, 0, 0, 0, 0, 0),
            "queue {q} was not processed exactly once: {s:?}"
        );
    }

    let cpu_us_per_task = cpu_used * 1e6 / total as f64;
    println!(
        "wasq queue benchmark: 3 masters + 3 replicas, appendonly yes, {tasks} no-op tasks per run"
    );
    println!(
        "  redis-benchmark ceiling, one master, {CALLERS} clients: LPUSH {:.0}/s, RPOP {:.0}/s",
        ceiling.0, ceiling.1
    );
    if !quick {
        println!("  enqueue one by one ({CALLERS} concurrent callers): {one_by_one:>9.0} tasks/s");
    }
    println!("  enqueue batched (1000 per batch, pipelined):  {batched:>9.0} tasks/s");
    println!(
        "  drain through the wasm sandbox (concurrency {CALLERS}, {}): {drain:>9.0} tasks/s ({:.0}% of the LPUSH+RPOP pair rate)",
        if side_by_side {
            "both queues side by side"
        } else {
            "one queue at a time"
        },
        100.0 * drain / (1.0 / (1.0 / ceiling.0 + 1.0 / ceiling.1))
    );
    println!("  exactly once: {total} processed, 0 failed, 0 left");
    println!(
        "  redis CPU per drained task on the queues' master ({} node): {cpu_us_per_task:.1} µs",
        queue_masters.len()
    );
    println!(
        "  worker CPU per drained task: {:.1} µs; Lua script calls per task: {:.2}",
        worker_cpu * 1e6 / total as f64,
        (scripts - scripts_before) as f64 / total as f64
    );
    println!(
        "  redis commands run per drained task on that master, those inside scripts included: {:.2}",
        commands as f64 / total as f64
    );
    println!("  worker peak RSS: {:.1} MiB", peak_rss as f64 / 1024.0);
    if quick {
        return Ok(());
    }

    latency(&cluster, &client, &wasq).await?;

    // BullMQ on the same cluster, in the same run: the baseline the issue's
    // targets are set against (2x its rates, under 15/49 of its master CPU).
    match bullmq(&cluster, tasks) {
        Ok(b) => {
            let num = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "BullMQ {} on the same cluster, same run (no-op jobs; drained one queue at a time, concurrency {CALLERS}):",
                b["bullmq"].as_str().unwrap_or("?")
            );
            println!(
                "  enqueue one by one {:>9.0} jobs/s   wasq {:.2}x",
                num("enqueue_one_per_s"),
                one_by_one / num("enqueue_one_per_s")
            );
            println!(
                "  enqueue bulk       {:>9.0} jobs/s   wasq {:.2}x",
                num("enqueue_bulk_per_s"),
                batched / num("enqueue_bulk_per_s")
            );
            println!(
                "  drain              {:>9.0} jobs/s   wasq {:.2}x (target 2x)",
                num("drain_per_s"),
                drain / num("drain_per_s")
            );
            println!(
                "  master CPU per job {:>9.1} µs       wasq {:.2}x (target 15/49 = 0.31x or less)",
                num("master_cpu_us_per_job"),
                cpu_us_per_task / num("master_cpu_us_per_job")
            );
        }
        Err(why) => println!("BullMQ comparison skipped: {why}"),
    }
    Ok(())
}

/// Enqueue-to-start latency at a fixed 500 tasks/s into an idle queue,
/// printed as p50 and p99.
async fn latency(
    cluster: &RedisCluster,
    client: &Client,
    wasq: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let latency = TestConfig::new(&format!(
        "{}\n[worker]\nconcurrency = {CALLERS}\n[queues.bench-latency]\n\
         [tasks.started]\nmodule = \"{{guests}}/misbehave.wasm\"\n",
        cluster.toml()
    ));
    let latency_path = latency.path.display().to_string();
    run(wasq, &["check", "--config", &latency_path]);
    let mut worker = KillOnDrop(
        Command::new(wasq)
            .args(["worker", "--json", "--config", &latency_path])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = worker.0.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .take(2500)
            .collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    for _ in 0..2500 {
        tick.tick().await;
        let sent = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        client
            .enqueue(
                Task::new("started", br#"{"do": "started"}"#.to_vec()),
                TaskOptions::default()
                    .queue("bench-latency")
                    .task_id(format!("lat-{sent}")),
            )
            .await?;
    }
    let events = reader.join().expect("reader thread");
    stop(&mut worker.0);
    let mut latencies: Vec<f64> = events
        .iter()
        .filter_map(|e| {
            let sent: u128 = e["id"].as_str()?.strip_prefix("lat-")?.parse().ok()?;
            let started: u128 = e["result"].as_str()?.parse().ok()?;
            Some(started.saturating_sub(sent) as f64 / 1e6)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];

    println!(
        "  enqueue-to-start latency at 500 tasks/s ({} tasks): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        at(0.5),
        at(0.99)
    );
    Ok(())
}

async fn enqueue_batched(
    client: &Client,
    queue: &str,
    tasks: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    for chunk in (0..tasks).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|_| {
                (
                    Task::new("noop", b"{}".to_vec()),
                    TaskOptions::default().queue(queue),
                )
            })
            .collect();
        for r in client.enqueue_batch(batch).await {
            r?;
        }
    }
    Ok(())
}

/// Runs `tests/bullmq/bench.mjs` against `cluster` and returns its JSON
/// line, or why it could not run.
fn bullmq(cluster: &RedisCluster, jobs: usize) -> Result<serde_json::Value, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bullmq");
    if !dir.join("node_modules/bullmq").is_dir() {
        return Err(format!(
            "run `npm ci` in {} (scripts/bench does)",
            dir.display()
        ));
    }
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    eprintln!("running BullMQ on the same cluster ...");
    let out = Command::new("node")
        .current_dir(&dir)
        .args(["bench.mjs", "--nodes", &nodes.join(",")])
        .args([
            "--jobs",
            &jobs.to_string(),
            "--concurrency",
            &CALLERS.to_string(),
        ])
        // One queue at a time at the full concurrency, as in the issue's
        // reference run of BullMQ.
        .args(["--drain", "sequential"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("node: {e}"))?;
    if !out.status.success() {
        return Err(format!("bench.mjs failed ({})", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("bench.mjs printed {line:?}: {e}"))
}

fn run(bin: &str, args: &[&str]) {
    let status = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("running wasq");
    assert!(status.success(), "wasq {args:?} failed");
}

fn stop(child: &mut std::process::Child) {
    // SAFETY: kill(2) with SIGTERM on a child we started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}

/// (LPUSH/s, RPOP/s) from redis-benchmark against one master.
fn redis_ceiling(port: u16) -> (f64, f64) {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-c",
            &CALLERS.to_string(),
            "-n",
            "200000",
            "-t",
            "lpush,rpop",
            "-q",
        ])
        .output()
        .expect("running redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = |name: &str| {
        text.split(['\r', '\n'])
            .rfind(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (rate("LPUSH:"), rate("RPOP:"))
}

/// Ports of the masters serving these queues (deduplicated).
fn queue_masters(cluster: &RedisCluster, queues: &[&str]) -> Vec<u16> {
    let mut ports: Vec<u16> = queues
        .iter()
        .map(|q| {
            let slot: u16 = cluster.nodes[0]
                .cli(&["CLUSTER", "KEYSLOT", &format!("asynq:{{{q}}}:pending")])
                .trim()
                .parse()
                .expect("a slot");
            cluster.master_of(slot).port
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// used_cpu_sys + used_cpu_user of the masters on `ports`, seconds.
fn masters_cpu(cluster: &RedisCluster, ports: &[u16]) -> f64 {
    cluster
        .nodes
        .iter()
        .filter(|n| ports.contains(&n.port))
        .map(|n| {
            n.cli(&["INFO", "cpu"])
                .lines()
                .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

/// Commands the masters on `ports` ran since their stats were reset (those
/// run by scripts included): a count that, unlike CPU time, does not move
/// with the machine's load.
fn commands_run(cluster: &RedisCluster, ports: &[u16]) -> u64 {
    calls(cluster, |n| ports.contains(&n.port), |_| true)
}

/// EVALSHA + EVAL calls summed over the masters.
fn masters_scripts(cluster: &RedisCluster) -> u64 {
    calls(
        cluster,
        |n| n.cli(&["ROLE"]).starts_with("master"),
        |command| command == "evalsha" || command == "eval",
    )
}

/// Calls in `INFO commandstats`, summed over the nodes `node` picks and
/// the commands `command` picks.
fn calls(
    cluster: &RedisCluster,
    node: impl Fn(&RedisServer) -> bool,
    command: impl Fn(&str) -> bool,
) -> u64 {
    cluster
        .nodes
        .iter()
        .filter(|n| node(n))
        .flat_map(|n| {
            n.cli(&["INFO", "commandstats"])
                .lines()
                .filter_map(|l| {
                    let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                    if !command(name) {
                        return None;
                    }
                    stats
                        .strip_prefix("calls=")?
                        .split(',')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

async fn processed(broker: &Broker, queue: &str) -> u64 {
    broker
        .stats(queue)
        .await
        .map(|s| s.processed_total)
        .unwrap_or(0)
}
