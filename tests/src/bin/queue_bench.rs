//! The queue benchmark: enqueue and drain rates, enqueue-to-start latency
//! (with wasq's client, and with a producer that writes Asynq's layout
//! without a wake token), the Redis commands an idle queue costs a worker,
//! worker memory and Redis CPU per task, on a local cluster of 3 masters
//! with a replica each (appendonly on) started by the test harness.
//! `redis-benchmark` measures LPUSH and RPOP on the queues' master in the
//! same run, and BullMQ (`tests/bullmq/bench.mjs`) runs the same workload
//! afterwards on the same cluster, with its keys on that same master; every
//! ratio printed is against figures of this run.
//!
//! Run it with `scripts/bench` (builds the release binary and installs the
//! BullMQ driver's node modules first). `WASQ_BENCH_TASKS` sets the size
//! (the sequential enqueue uses a tenth of it), `WASQ_BENCH_QUICK=1`
//! measures the drain only (`=latency`: the latency and idle cost only),
//! `WASQ_BENCH_DEBUG=1` prints the masters' command statistics for the
//! drain, `WASQ_BENCH_DRAIN=both` drains the two queues side by side
//! instead of one at a time. `WASQ_BENCH_QUICK=limits` measures only what
//! the queue limits cost: drains of one queue with a rate and a
//! `max_running` set too high to bind, against the same queue without
//! limits, alternating (see [`limits`]).

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use redis::AsyncCommands as _;
use wasq::broker::{Broker, QueueKeys, keys};
use wasq::proto::TaskMessage;
use wasq::{Client, Task, TaskOptions};
use wasq_tests::procfs::{cpu_seconds, status_kib};
use wasq_tests::redis::{RedisCluster, RedisServer};
use wasq_tests::{KillOnDrop, TestConfig};

const TASKS: usize = 100_000;
const CALLERS: usize = 50;
/// Filled by CALLERS concurrent callers, one task per call.
const CONCURRENT_QUEUE: &str = "bench-callers";
/// Filled by one caller, one call at a time (then removed, not drained).
const SEQUENTIAL_QUEUE: &str = "bench-seq";
/// Filled with `enqueue_batch`.
const BATCH_QUEUE: &str = "bench-batch";
/// BullMQ's key prefix: its hash tag puts BullMQ's keys on the master that
/// holds wasq's queues above (checked before anything runs).
const BULLMQ_PREFIX: &str = "{bench-bullmq}";

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

    // wasq's queues and BullMQ's keys on one master, or no comparison.
    let place = placement(&cluster);
    let master = &cluster.nodes[place.master];

    // LPUSH and RPOP on that master, same run.
    let ceiling = redis_ceiling(master.port);

    // WASQ_BENCH_QUICK=1: the drain figures only (both queues filled in
    // batches, no latency run, no BullMQ run), for comparing builds;
    // WASQ_BENCH_QUICK=latency: the latency run only.
    let quick = std::env::var_os("WASQ_BENCH_QUICK").is_some();
    if std::env::var("WASQ_BENCH_QUICK").is_ok_and(|v| v == "latency") {
        return latency(&cluster, &client, &wasq).await;
    }
    if std::env::var("WASQ_BENCH_QUICK").is_ok_and(|v| v == "limits") {
        return limits(&cluster, &client, &wasq, tasks / 5).await;
    }

    // Concurrent single enqueues: CALLERS callers, each with one task per
    // call and one call at a time; the client group-commits the calls that
    // meet in a queue's lane.
    let started = Instant::now();
    let results: Vec<_> = stream::iter(0..if quick { 0 } else { tasks })
        .map(|_| {
            client.enqueue(
                Task::new("noop", b"{}".to_vec()),
                TaskOptions::default().queue(CONCURRENT_QUEUE),
            )
        })
        .buffer_unordered(CALLERS)
        .collect()
        .await;
    let concurrent = tasks as f64 / started.elapsed().as_secs_f64();
    assert!(results.iter().all(Result::is_ok), "an enqueue failed");

    // Sequential single enqueues: one caller, each call awaited before the
    // next. The queue is removed afterwards; it takes no part in the drain.
    let sequential_tasks = (tasks / 10).max(1);
    let mut sequential = f64::NAN;
    if !quick {
        let started = Instant::now();
        for _ in 0..sequential_tasks {
            client
                .enqueue(
                    Task::new("noop", b"{}".to_vec()),
                    TaskOptions::default().queue(SEQUENTIAL_QUEUE),
                )
                .await?;
        }
        sequential = sequential_tasks as f64 / started.elapsed().as_secs_f64();
        let s = broker.stats(SEQUENTIAL_QUEUE).await?;
        assert_eq!(
            s.pending, sequential_tasks as u64,
            "queue {SEQUENTIAL_QUEUE} after the sequential enqueue: {s:?}"
        );
        broker.remove_queue(SEQUENTIAL_QUEUE, true).await?;
    }

    // enqueue_batch with 1000 tasks per call, one call at a time.
    let started = Instant::now();
    enqueue_batched(&client, BATCH_QUEUE, tasks).await?;
    let batched = tasks as f64 / started.elapsed().as_secs_f64();
    if quick {
        enqueue_batched(&client, CONCURRENT_QUEUE, tasks).await?;
    }

    // Drain both queues through the sandbox with `wasq worker`: one queue
    // at a time, as BullMQ's drain below does (CONCURRENT_QUEUE waits paused
    // until BATCH_QUEUE is done), or with WASQ_BENCH_DRAIN=both side by side.
    // A sandbox for each of the worker's CALLERS slots.
    let side_by_side = std::env::var("WASQ_BENCH_DRAIN").is_ok_and(|v| v == "both");
    let config = TestConfig::with_sandboxes(
        &format!(
            "{}\n[worker]\nconcurrency = {CALLERS}\nlease = \"30s\"\n\
             [queues.{CONCURRENT_QUEUE}]\n[queues.{BATCH_QUEUE}]\n\
             [tasks.noop]\nmodule = \"{{examples}}/noop.wasm\"\n",
            cluster.toml()
        ),
        CALLERS,
    );
    let config_path = config.path.display().to_string();
    run(&wasq, &["check", "--config", &config_path]);
    // The Redis CPU that counts is that of the master holding the queues.
    let queue_masters = [master.port];
    let debug = std::env::var_os("WASQ_BENCH_DEBUG").is_some();
    // Command statistics of the drain alone.
    for n in &cluster.nodes {
        n.cli(&["CONFIG", "RESETSTAT"]);
    }
    if !side_by_side {
        broker.pause(CONCURRENT_QUEUE).await?;
    }
    // The worker's /metrics counts its sandbox runs: read once the drain is
    // over, to check every processed task ran its guest exactly once.
    let metrics_addr = format!("127.0.0.1:{}", RedisServer::free_port());
    let cpu_before = masters_cpu(&cluster, &queue_masters);
    let scripts_before = masters_scripts(&cluster);
    let started = Instant::now();
    let mut worker = KillOnDrop(
        Command::new(&wasq)
            .args(["worker", "--quiet", "--config", &config_path])
            .args(["--metrics", &metrics_addr])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let total = 2 * tasks as u64;
    let mut peak_rss = 0;
    let mut paused = !side_by_side;
    loop {
        let first = processed(&broker, BATCH_QUEUE).await;
        if paused && first >= tasks as u64 {
            broker.resume(CONCURRENT_QUEUE).await?;
            paused = false;
        }
        let done = processed(&broker, CONCURRENT_QUEUE).await + first;
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
    let runs = guest_runs(&metrics_addr, &[CONCURRENT_QUEUE, BATCH_QUEUE]);
    stop(&mut worker.0);
    let drain = total as f64 / drain_secs;
    assert_eq!(
        (runs.sandbox_runs, runs.ok, runs.other),
        (total, total, 0),
        "the worker's /metrics does not show one successful guest run per processed task: {runs:?}"
    );
    for q in [CONCURRENT_QUEUE, BATCH_QUEUE] {
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
        "  master {} (slots {}) holds every queue measured:",
        master.addr(),
        place.range
    );
    println!(
        "    wasq {}; BullMQ prefix {BULLMQ_PREFIX} (slot {})",
        place
            .queues
            .iter()
            .map(|(q, slot)| format!("{q} (slot {slot})"))
            .collect::<Vec<_>>()
            .join(", "),
        place.bullmq_slot
    );
    row(
        &format!("redis-benchmark on that master, {CALLERS} clients, LPUSH / RPOP"),
        format!("{:.0} / {:.0} ops/s", ceiling.0, ceiling.1),
        "",
    );
    if !quick {
        row(
            &format!("enqueue, {CALLERS} concurrent callers, 1 task per call (group-committed)"),
            format!("{concurrent:.0} tasks/s"),
            "",
        );
        row(
            &format!(
                "enqueue, 1 caller, each call awaited before the next ({sequential_tasks} tasks)"
            ),
            format!("{sequential:.0} tasks/s"),
            "",
        );
    }
    row(
        "enqueue_batch, 1000 tasks per call, one call at a time",
        format!("{batched:.0} tasks/s"),
        "",
    );
    row(
        &format!(
            "drain through the wasm sandbox, concurrency {CALLERS}, {}",
            if side_by_side {
                "both queues side by side"
            } else {
                "one queue at a time"
            }
        ),
        format!("{drain:.0} tasks/s"),
        &format!(
            "({:.0}% of the LPUSH+RPOP pair rate)",
            100.0 * drain / (1.0 / (1.0 / ceiling.0 + 1.0 / ceiling.1))
        ),
    );
    println!(
        "  exactly once: {total} processed, 0 failed, 0 left; guest runs (worker's /metrics): {}, all ok",
        runs.sandbox_runs
    );
    row(
        "redis CPU per drained task on that master",
        format!("{cpu_us_per_task:.1} µs"),
        "",
    );
    row(
        "worker process CPU per drained task (its start-up included)",
        format!("{:.1} µs", worker_cpu * 1e6 / total as f64),
        "",
    );
    row(
        "Lua script calls per drained task, all masters",
        format!("{:.2}", (scripts - scripts_before) as f64 / total as f64),
        "",
    );
    row(
        "redis commands per drained task on that master, scripts' included",
        format!("{:.2}", commands as f64 / total as f64),
        "",
    );
    row(
        "worker peak RSS",
        format!("{:.1} MiB", peak_rss as f64 / 1024.0),
        "",
    );
    if quick {
        return Ok(());
    }

    latency(&cluster, &client, &wasq).await?;

    // BullMQ on the same cluster, its keys on the same master, in the same
    // run: every ratio below is wasq's figure over BullMQ's.
    let Some(b) = bullmq(&cluster, &master.addr(), tasks, sequential_tasks)? else {
        return Ok(());
    };
    let num = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<LABEL$} {:>FIGURE$} {:>12}",
        format!(
            "BullMQ {}, same master, same run (no-op jobs):",
            b["bullmq"].as_str().unwrap_or("?")
        ),
        "BullMQ",
        "wasq/BullMQ"
    );
    let compare = |label: &str, theirs: String, ratio: f64| {
        row(label, theirs, &format!("{ratio:>12.2}"));
    };
    compare(
        &format!("add, {CALLERS} concurrent callers, 1 job per call"),
        format!("{:.0} jobs/s", num("enqueue_concurrent_per_s")),
        concurrent / num("enqueue_concurrent_per_s"),
    );
    compare(
        &format!(
            "add, 1 caller, each call awaited before the next ({} jobs)",
            b["sequential_jobs"]
        ),
        format!("{:.0} jobs/s", num("enqueue_sequential_per_s")),
        sequential / num("enqueue_sequential_per_s"),
    );
    compare(
        "addBulk, 1000 jobs per call, one call at a time",
        format!("{:.0} jobs/s", num("enqueue_bulk_per_s")),
        batched / num("enqueue_bulk_per_s"),
    );
    compare(
        &format!("drain, no-op processor, concurrency {CALLERS}, one queue at a time"),
        format!("{:.0} jobs/s", num("drain_per_s")),
        drain / num("drain_per_s"),
    );
    assert_eq!(
        b["handler_calls"].as_u64(),
        Some(total),
        "BullMQ's processor did not run once per job"
    );
    println!("  exactly once: {total} handler calls, each job once");
    compare(
        "master CPU per drained job",
        format!("{:.1} µs", num("master_cpu_us_per_job")),
        cpu_us_per_task / num("master_cpu_us_per_job"),
    );
    Ok(())
}

/// Width of a row's label, indent included.
const LABEL: usize = 72;
/// Width of a row's figure.
const FIGURE: usize = 18;

/// One figure, its label padded so that the figures line up, then `tail`.
fn row(label: &str, figure: String, tail: &str) {
    let line = format!("{:<LABEL$} {figure:>FIGURE$} {tail}", format!("  {label}:"));
    println!("{}", line.trim_end());
}

/// Where the benchmark's keys live.
struct Placement {
    /// Index in `cluster.nodes` of the master holding them all.
    master: usize,
    /// That master's slot ranges, as CLUSTER NODES lists them.
    range: String,
    /// wasq's queues and the slots of their keys.
    queues: Vec<(&'static str, u16)>,
    /// The slot of BullMQ's keys.
    bullmq_slot: u16,
}

/// Checks that wasq's benchmark queues and BullMQ's keys (with
/// [`BULLMQ_PREFIX`]) are served by one master, with `CLUSTER KEYSLOT` and
/// `CLUSTER NODES`; panics if not, since the CPU per task of two masters
/// would not compare.
fn placement(cluster: &RedisCluster) -> Placement {
    let queues: Vec<(&str, u16)> = [CONCURRENT_QUEUE, SEQUENTIAL_QUEUE, BATCH_QUEUE]
        .into_iter()
        .map(|q| (q, cluster.slot_of(&format!("asynq:{{{q}}}:pending"))))
        .collect();
    let master = cluster.master_index_of(queues[0].1);
    for (q, slot) in &queues {
        assert_eq!(
            cluster.master_index_of(*slot),
            master,
            "wasq's queue {q} (slot {slot}) is not on the master of {} (slot {})",
            queues[0].0,
            queues[0].1
        );
    }
    // BullMQ 6.7 names a queue's keys `<prefix>:<queue>:<type>`.
    let bullmq_slot = cluster.slot_of(&format!("{BULLMQ_PREFIX}:{CONCURRENT_QUEUE}:wait"));
    let bullmq_master = cluster.master_index_of(bullmq_slot);
    assert_eq!(
        bullmq_master,
        master,
        "BullMQ's prefix {BULLMQ_PREFIX} hashes to slot {bullmq_slot} on master {}, \
         but wasq's queues are on master {}: pick a hash tag in that master's slots",
        cluster.nodes[bullmq_master].addr(),
        cluster.nodes[master].addr()
    );
    let addr = cluster.nodes[master].addr();
    let range = cluster.nodes[master]
        .cli(&["CLUSTER", "NODES"])
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 8 && f[1].split('@').next() == Some(addr.as_str())).then(|| f[8..].join(" "))
        })
        .unwrap_or_default();
    Placement {
        master,
        range,
        queues,
        bullmq_slot,
    }
}

/// What the worker's /metrics says it ran.
#[derive(Debug)]
struct GuestRuns {
    /// Sandbox runs (`wasq_task_duration_seconds_count`, observed once per
    /// run of a guest).
    sandbox_runs: u64,
    /// Tasks whose run ended `ok` (`wasq_tasks_total{outcome="ok"}`).
    ok: u64,
    /// Tasks with any other outcome.
    other: u64,
}

/// Reads `queues`' figures from the worker's /metrics at `addr`.
fn guest_runs(addr: &str, queues: &[&str]) -> GuestRuns {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect(addr).expect("connecting to the worker's /metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("asking for /metrics");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("reading /metrics");
    let mut runs = GuestRuns {
        sandbox_runs: 0,
        ok: 0,
        other: 0,
    };
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !queues
            .iter()
            .any(|q| series.contains(&format!("queue=\"{q}\"")))
        {
            continue;
        }
        let value: u64 = value.parse().unwrap_or(0);
        if series.starts_with("wasq_task_duration_seconds_count{") {
            runs.sandbox_runs += value;
        } else if series.starts_with("wasq_tasks_total{") {
            if series.contains("outcome=\"ok\"") {
                runs.ok += value;
            } else {
                runs.other += value;
            }
        }
    }
    runs
}

/// Enqueue-to-start latency at a fixed 500 tasks/s into an idle queue,
/// printed as p50 and p99: once with wasq's client, once with a producer
/// that writes Asynq's layout without a wake token. Then what one idle
/// queue costs one worker in Redis commands.
async fn latency(
    cluster: &RedisCluster,
    client: &Client,
    wasq: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "  enqueue-to-start latency at {LATENCY_RATE} tasks/s into an idle queue \
         ({LATENCY_TASKS} tasks each), p50 / p99:"
    );
    for producer in [Producer::Wasq, Producer::Asynq] {
        let latencies = latency_run(cluster, client, wasq, producer).await?;
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        row(
            &format!("  {}", producer.label()),
            format!("{:.2} / {:.2} ms", at(0.5), at(0.99)),
            "",
        );
    }
    idle_cost(cluster, wasq).await
}

/// Tasks per second of the latency runs.
const LATENCY_RATE: u64 = 500;
/// Tasks in each latency run.
const LATENCY_TASKS: usize = 2500;

/// Who writes the latency run's tasks.
#[derive(Clone, Copy)]
enum Producer {
    /// wasq's client: the task and a wake token.
    Wasq,
    /// What Asynq's Go client writes for a pending task, with no wake
    /// token: the worker sees these tasks only by probing the pending list.
    Asynq,
}

impl Producer {
    fn label(self) -> &'static str {
        match self {
            Producer::Wasq => "wasq's client (the task and a wake token)",
            Producer::Asynq => "Asynq's layout (HSET + LPUSH), no wake token",
        }
    }

    fn queue(self) -> &'static str {
        match self {
            Producer::Wasq => "bench-latency",
            Producer::Asynq => "bench-latency-asynq",
        }
    }
}

/// Asynq's enqueue script (`enqueueCmd` in Asynq's `internal/rdb`), as its
/// Go client runs it for a pending task: the task hash, then its id on the
/// pending list. KEYS: the task hash, the pending list; ARGV: the encoded
/// `TaskMessage`, the id, the time in Unix nanoseconds.
const ASYNQ_ENQUEUE: &str = r#"
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "msg", ARGV[1], "state", "pending", "pending_since", ARGV[3])
redis.call("LPUSH", KEYS[2], ARGV[2])
return 1
"#;

/// One latency run: a fresh worker on `producer`'s queue, LATENCY_TASKS
/// tasks at LATENCY_RATE, each with the time it was sent in its id; the
/// `started` guest returns the time its sandbox started (the guest's wall
/// clock is frozen at the start). Returns the latencies in ms, sorted.
async fn latency_run(
    cluster: &RedisCluster,
    client: &Client,
    wasq: &str,
    producer: Producer,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let queue = producer.queue();
    let config = TestConfig::new(&format!(
        "{}\n[worker]\nconcurrency = {CALLERS}\n[queues.{queue}]\n\
         [tasks.started]\nmodule = \"{{guests}}/misbehave.wasm\"\n",
        cluster.toml()
    ));
    let config_path = config.path.display().to_string();
    run(wasq, &["check", "--config", &config_path]);
    let mut worker = KillOnDrop(
        Command::new(wasq)
            .args(["worker", "--json", "--config", &config_path])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = worker.0.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .take(LATENCY_TASKS)
            .collect::<Vec<_>>()
    });
    let queue_keys = QueueKeys::new(queue);
    let mut conn = client.broker().conn();
    let script = redis::Script::new(ASYNQ_ENQUEUE);
    if let Producer::Asynq = producer {
        // Asynq's client adds the queue to the set of all queues.
        let _: () = conn.sadd(keys::ALL_QUEUES, queue).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let payload = br#"{"do": "started"}"#;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / LATENCY_RATE as u32);
    for _ in 0..LATENCY_TASKS {
        tick.tick().await;
        let sent = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let id = format!("lat-{sent}");
        match producer {
            Producer::Wasq => {
                client
                    .enqueue(
                        Task::new("started", payload.to_vec()),
                        TaskOptions::default().queue(queue).task_id(id),
                    )
                    .await?;
            }
            Producer::Asynq => {
                // Asynq's defaults for a task enqueued with no options:
                // 25 retries, a 30-minute timeout.
                let msg = TaskMessage {
                    r#type: "started".into(),
                    payload: payload.to_vec(),
                    id: id.clone(),
                    queue: queue.into(),
                    retry: 25,
                    timeout: 1800,
                    ..Default::default()
                };
                let added: i64 = script
                    .key(queue_keys.task(&id))
                    .key(queue_keys.pending())
                    .arg(encode_task_message(&msg))
                    .arg(&id)
                    .arg(sent.to_string())
                    .invoke_async(&mut conn)
                    .await?;
                assert_eq!(added, 1, "Asynq's enqueue script refused {id}");
            }
        }
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
    assert_eq!(
        latencies.len(),
        LATENCY_TASKS,
        "{} latency run: not every task reported its start",
        producer.label()
    );
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Encodes `msg` as protobuf, as prost (and Asynq's Go client) does: the
/// fields in tag order, those at their default left out. The benchmark
/// binary has no prost of its own; the test below pins this to prost.
fn encode_task_message(msg: &TaskMessage) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes(out: &mut Vec<u8>, tag: u64, b: &[u8]) {
        if !b.is_empty() {
            varint(out, tag << 3 | 2);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    }
    fn int(out: &mut Vec<u8>, tag: u64, v: i64) {
        if v != 0 {
            varint(out, tag << 3);
            // Negative int32 and int64 alike: ten bytes, sign-extended.
            varint(out, v as u64);
        }
    }
    assert!(msg.headers.is_empty(), "headers are not encoded here");
    let mut out = Vec::new();
    bytes(&mut out, 1, msg.r#type.as_bytes());
    bytes(&mut out, 2, &msg.payload);
    bytes(&mut out, 3, msg.id.as_bytes());
    bytes(&mut out, 4, msg.queue.as_bytes());
    int(&mut out, 5, msg.retry.into());
    int(&mut out, 6, msg.retried.into());
    bytes(&mut out, 7, msg.error_msg.as_bytes());
    int(&mut out, 8, msg.timeout);
    int(&mut out, 9, msg.deadline);
    bytes(&mut out, 10, msg.unique_key.as_bytes());
    int(&mut out, 11, msg.last_failed_at);
    int(&mut out, 12, msg.retention);
    int(&mut out, 13, msg.completed_at);
    bytes(&mut out, 14, msg.group_key.as_bytes());
    out
}

/// Seconds an idle worker is watched for [`idle_cost`].
const IDLE_SECS: u64 = 10;

/// What one idle queue costs one worker: the commands the queue's master
/// runs per second while a worker serves a fresh queue that never gets a
/// task, counted from `INFO commandstats` before and after IDLE_SECS (no
/// MONITOR). The wait for work is the waker's BLPOP and its probe (LLEN
/// and EXISTS); the total adds the rest of the worker's upkeep on that
/// master, leaving out the benchmark's own INFO calls and the replica's
/// REPLCONF.
async fn idle_cost(cluster: &RedisCluster, wasq: &str) -> Result<(), Box<dyn std::error::Error>> {
    let queue = "bench-idle";
    let config = TestConfig::new(&format!(
        "{}\n[worker]\nconcurrency = {CALLERS}\n[queues.{queue}]\n\
         [tasks.started]\nmodule = \"{{guests}}/misbehave.wasm\"\n",
        cluster.toml()
    ));
    let config_path = config.path.display().to_string();
    run(wasq, &["check", "--config", &config_path]);
    let master = cluster.master_of(cluster.slot_of(&QueueKeys::new(queue).pending()));
    let mut worker = KillOnDrop(
        Command::new(wasq)
            .args(["worker", "--quiet", "--config", &config_path])
            .stdout(Stdio::null())
            .spawn()?,
    );
    // Past start-up: the waker's first wait and the first claims.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = command_calls(master);
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let after = command_calls(master);
    let exited = worker.0.try_wait()?;
    stop(&mut worker.0);
    assert!(exited.is_none(), "the idle worker exited: {exited:?}");
    let mut per_s: Vec<(String, f64)> = after
        .iter()
        .map(|(name, calls)| {
            let was = before.get(name).copied().unwrap_or(0);
            (name.clone(), (calls - was) as f64 / IDLE_SECS as f64)
        })
        .filter(|(name, rate)| *rate > 0.0 && name != "info" && name != "replconf")
        .collect();
    per_s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let rate = |names: &[&str]| -> f64 {
        per_s
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .map(|(_, r)| r)
            .sum()
    };
    row(
        &format!("one idle queue, one worker ({IDLE_SECS} s): BLPOP + LLEN + EXISTS"),
        format!("{:.1} commands/s", rate(&["blpop", "llen", "exists"])),
        "on the queue's master",
    );
    row(
        "  every command on that master, those inside scripts included",
        format!(
            "{:.1} commands/s",
            per_s.iter().map(|(_, r)| r).sum::<f64>()
        ),
        "",
    );
    println!(
        "    ({})",
        per_s
            .iter()
            .map(|(n, r)| format!("{} {r:.1}", n.to_uppercase()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Calls per command (`INFO commandstats`) of one server.
fn command_calls(server: &RedisServer) -> std::collections::BTreeMap<String, u64> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
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

/// Runs `tests/bullmq/bench.mjs` against `cluster`, its keys required on
/// the master at `master`, and returns its JSON line; `None` (and a note
/// why) when BullMQ is not installed.
fn bullmq(
    cluster: &RedisCluster,
    master: &str,
    jobs: usize,
    sequential_jobs: usize,
) -> Result<Option<serde_json::Value>, Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bullmq");
    if !dir.join("node_modules/bullmq").is_dir() {
        println!(
            "BullMQ comparison skipped: run `npm ci` in {} (scripts/bench does)",
            dir.display()
        );
        return Ok(None);
    }
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    eprintln!("running BullMQ on the same cluster ...");
    let out = Command::new("node")
        .current_dir(&dir)
        .args(["bench.mjs", "--nodes", &nodes.join(",")])
        .args(["--prefix", BULLMQ_PREFIX, "--master", master])
        .args([
            "--jobs",
            &jobs.to_string(),
            "--sequential-jobs",
            &sequential_jobs.to_string(),
            "--concurrency",
            &CALLERS.to_string(),
        ])
        // One queue at a time at the full concurrency, as wasq's drain.
        .args(["--drain", "sequential"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("node: {e}"))?;
    if !out.status.success() {
        return Err(format!("bench.mjs failed ({})", out.status).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bench.mjs printed {line:?}: {e}"))?;
    if result["master"].as_str() != Some(master) {
        return Err(format!("BullMQ ran on master {}, not {master}", result["master"]).into());
    }
    Ok(Some(result))
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

/// (LPUSH/s, RPOP/s) from redis-benchmark against the master on `port`,
/// CALLERS clients, on a list in the slot of CONCURRENT_QUEUE (as many pops
/// as pushes, so the list is gone afterwards).
fn redis_ceiling(port: u16) -> (f64, f64) {
    let key = format!("bench-ceiling:{{{CONCURRENT_QUEUE}}}");
    let rate = |command: &[&str]| {
        let out = Command::new("redis-benchmark")
            .args(["-p", &port.to_string(), "-c", &CALLERS.to_string()])
            .args(["-n", "200000", "-q"])
            .args(command)
            .output()
            .expect("running redis-benchmark");
        // The last line: "LPUSH <key> xxx: 169635.28 requests per second, ...".
        String::from_utf8_lossy(&out.stdout)
            .split(['\r', '\n'])
            .rfind(|l| l.contains(" requests per second"))
            .and_then(|l| l.rsplit_once(": "))
            .and_then(|(_, figures)| figures.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (rate(&["LPUSH", &key, "xxx"]), rate(&["RPOP", &key]))
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
        .flat_map(command_calls)
        .filter(|(name, _)| command(name))
        .map(|(_, calls)| calls)
        .sum()
}

/// The queue the limits benchmark drains.
const LIMITS_QUEUE: &str = "bench-limits";
/// Drains per configuration in the limits benchmark.
const LIMITS_ROUNDS: usize = 6;

/// What the queue limits cost: `tasks` no-op tasks drained through the
/// sandbox by one `wasq worker` (concurrency CALLERS) from one queue, with
/// and without `rate = "10000000/s"`, `burst = 100000`, `max_running =
/// 100000` (limits that never bind, so every claim pays for checking them:
/// the bucket's read and write, the active list's length, the start time),
/// alternating the two for LIMITS_ROUNDS drains each, on the same queue of
/// the same master. Each drain is timed from the queue's resume, with the
/// worker started and idle on the paused queue, to its last task.
async fn limits(
    cluster: &RedisCluster,
    client: &Client,
    wasq: &str,
    tasks: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let broker = client.broker();
    let make = |limits: &str| {
        TestConfig::with_sandboxes(
            &format!(
                "{}\n[worker]\nconcurrency = {CALLERS}\nscheduler = false\n\
                 [queues.{LIMITS_QUEUE}]\n{limits}\n\
                 [tasks.noop]\nmodule = \"{{examples}}/noop.wasm\"\n",
                cluster.toml()
            ),
            CALLERS,
        )
    };
    let plain = make("");
    let limited = make("rate = \"10000000/s\"\nburst = 100000\nmax_running = 100000");
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    eprintln!("limits: {LIMITS_ROUNDS} drains of {tasks} tasks each way, alternating ...");
    for round in 0..2 * LIMITS_ROUNDS {
        let which = round % 2;
        let config = if which == 0 { &plain } else { &limited };
        broker.pause(LIMITS_QUEUE).await?;
        enqueue_batched(client, LIMITS_QUEUE, tasks).await?;
        let before = processed(broker, LIMITS_QUEUE).await;
        let path = config.path.display().to_string();
        let mut worker = KillOnDrop(
            Command::new(wasq)
                .args(["worker", "--quiet", "--config", &path])
                .stdout(Stdio::null())
                .spawn()?,
        );
        // Started and idle: the worker has registered itself.
        let pid = worker.0.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !broker.servers().await?.iter().any(|s| s.pid == pid) {
            assert!(Instant::now() < deadline, "the worker did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let started = Instant::now();
        broker.resume(LIMITS_QUEUE).await?;
        loop {
            let done = processed(broker, LIMITS_QUEUE).await - before;
            if done >= tasks as u64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "drain stalled at {done}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rates[which].push(tasks as f64 / started.elapsed().as_secs_f64());
        stop(&mut worker.0);
        // The limits were checked on every claim and never held one back.
        let status = broker.limit_status(LIMITS_QUEUE).await?;
        if which == 1 {
            assert!(
                status.rate.as_deref() == Some("10000000/s")
                    && status.max_running == Some(100_000)
                    && status.deferred_rate == 0
                    && status.deferred_running == 0,
                "the limited drain ran without its limits, or they bound: {status:?}"
            );
        }
    }
    let bucket: Option<String> = broker
        .conn()
        .hget(QueueKeys::new(LIMITS_QUEUE).limit(), "at")
        .await?;
    assert!(bucket.is_some(), "no claim went through the rate's bucket");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    let each = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "drain without limits, {tasks} no-op tasks, concurrency {CALLERS}: {} tasks/s",
        each(&rates[0])
    );
    println!(
        "drain with a rate and max_running that never bind, same queue: {} tasks/s",
        each(&rates[1])
    );
    let (plain, limited) = (median(&mut rates[0]), median(&mut rates[1]));
    let cost = 1.0 - limited / plain;
    println!(
        "medians {plain:.0} vs {limited:.0} tasks/s: the limiter costs {:.1} % of drain \
         throughput (target: at most 10 %) {}",
        100.0 * cost,
        if cost <= 0.10 { "met" } else { "NOT met" }
    );

    // The claims alone, without a worker or a sandbox: one client claims
    // 64 tasks at a time and acknowledges them, as a worker's dispatcher
    // and acker do, with and without the limits, alternating. Redis's own
    // time in the scripts (INFO commandstats, usec of EVALSHA and EVAL on
    // every master) moves much less with the machine's load than wall time.
    let keys = QueueKeys::new(LIMITS_QUEUE);
    let never_binding = wasq::broker::QueueLimits {
        rate: Some("10000000/s".parse()?),
        burst: 100_000,
        max_running: Some(100_000),
    };
    let mut claim_rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut script_us: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..2 * LIMITS_ROUNDS {
        let which = round % 2;
        let limits = if which == 0 {
            wasq::broker::QueueLimits::default()
        } else {
            never_binding
        };
        enqueue_batched(client, LIMITS_QUEUE, tasks).await?;
        broker.resume(LIMITS_QUEUE).await?;
        for n in &cluster.nodes {
            n.cli(&["CONFIG", "RESETSTAT"]);
        }
        let expiry = wasq::broker::now_secs() + 600;
        let mut hint = Vec::new();
        let mut claimed = 0;
        let started = Instant::now();
        loop {
            let claim = broker
                .claim_within(&keys, 64, expiry, &mut hint, &limits)
                .await?;
            assert!(claim.held.is_none(), "a never-binding limit held a claim");
            if claim.tasks.is_empty() && hint.is_empty() {
                break;
            }
            let done: Vec<(String, i64)> =
                claim.tasks.iter().map(|t| (t.id.clone(), expiry)).collect();
            claimed += done.len();
            broker.finish_many(&keys, &done).await?;
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(claimed, tasks, "the claim loop lost tasks");
        claim_rates[which].push(tasks as f64 / secs);
        script_us[which].push(scripts_usec(cluster) / tasks as f64);
    }
    println!(
        "claims alone (claim 64 + acknowledge, one client), without limits: {} tasks/s; \
         Redis script time {} µs per task",
        each(&claim_rates[0]),
        each_f(&script_us[0])
    );
    println!(
        "claims alone, with limits that never bind: {} tasks/s; Redis script time {} µs per task",
        each(&claim_rates[1]),
        each_f(&script_us[1])
    );
    let (plain, limited) = (median(&mut claim_rates[0]), median(&mut claim_rates[1]));
    let (plain_us, limited_us) = (median(&mut script_us[0]), median(&mut script_us[1]));
    println!(
        "medians {plain:.0} vs {limited:.0} claimed tasks/s ({:.1} % fewer); Redis script time \
         {plain_us:.2} vs {limited_us:.2} µs per task ({:.1} % more)",
        100.0 * (1.0 - limited / plain),
        100.0 * (limited_us / plain_us - 1.0)
    );
    Ok(())
}

fn each_f(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Microseconds the masters spent in EVALSHA and EVAL since their stats
/// were reset.
fn scripts_usec(cluster: &RedisCluster) -> f64 {
    cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["ROLE"]).starts_with("master"))
        .flat_map(|n| {
            n.cli(&["INFO", "commandstats"])
                .lines()
                .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
                .filter_map(|l| {
                    l.split(',')
                        .find_map(|f| f.strip_prefix("usec="))
                        .and_then(|v| v.parse::<f64>().ok())
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

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use wasq::proto::TaskMessage;

    #[test]
    fn the_hand_encoding_of_a_task_message_is_prosts() {
        let full = TaskMessage {
            r#type: "email:send".into(),
            payload: vec![0, 1, 0x80, 0xff],
            id: "a".repeat(200),
            queue: "default".into(),
            retry: -1,
            retried: 3,
            error_msg: "boom".into(),
            last_failed_at: 1_700_000_000,
            timeout: 1800,
            deadline: -5,
            unique_key: "asynq:{default}:unique:x".into(),
            group_key: "g".into(),
            retention: 86_400,
            completed_at: i64::MAX,
            ..Default::default()
        };
        for msg in [full, TaskMessage::default()] {
            assert_eq!(
                super::encode_task_message(&msg),
                msg.encode_to_vec(),
                "{msg:?}"
            );
        }
    }
}
