//! The soak run: a million tasks (`WASQ_SOAK_TASKS`) through a local
//! cluster of 3 masters with a replica each (appendonly on), fed as a steady
//! stream to one `wasq worker`, with a mix of outcomes:
//!
//! | share | task                                   | ends as                  |
//! |-------|----------------------------------------|--------------------------|
//! | 70 %  | succeeds                               | deleted                  |
//! | 10 %  | succeeds, retention 1 h                | completed                |
//! | 10 %  | panics, max retry 1, retry delay 1 s   | runs twice, archived     |
//! | 10 %  | loops until out of fuel, max retry 0   | archived                 |
//!
//! At the end the counts must add up exactly (processed, failed, completed,
//! archived), no key of the queue may be left but archived and completed
//! tasks and counters, and the worker's RSS after warm-up is compared with
//! its RSS at the end. Run it with `scripts/soak`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasq::{Client, Task, TaskOptions};
use wasq_tests::procfs::status_kib;
use wasq_tests::redis::RedisCluster;
use wasq_tests::{KillOnDrop, TestConfig};

const QUEUE: &str = "soak";
/// Most tasks waiting at once: the feeder keeps the backlog below this.
const BACKLOG: u64 = 50_000;

#[derive(Default, Debug)]
struct Expected {
    ok: u64,
    kept: u64,
    retried: u64,
    trapped: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks: u64 = std::env::var("WASQ_SOAK_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let wasq = std::env::var("WASQ_BIN").unwrap_or_else(|_| "target/release/wasq".into());
    eprintln!("starting a 3-master cluster with replicas and AOF ...");
    let cluster = RedisCluster::start(3, 1);
    let client = Client::connect(&cluster.redis_config()).await?;
    let broker = client.broker().clone();
    let config = TestConfig::new(&format!(
        r#"{}
[worker]
concurrency = 50
[queues.{QUEUE}]
[tasks.soak]
module = "{{guests}}/misbehave.wasm"
retry_delay = "1s"
[tasks.soak-fuel]
module = "{{guests}}/misbehave.wasm"
fuel = 2_000_000
"#,
        cluster.toml()
    ));
    let config_path = config.path.display().to_string();
    // A failing task logs a warning: 300,000 of them go to a file.
    let log_path = config.dir.path().join("worker.log");
    let mut worker = KillOnDrop(
        Command::new(&wasq)
            .args(["worker", "--quiet", "--config", &config_path])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    let pid = worker.0.id();

    let started = Instant::now();
    let mut expected = Expected::default();
    let mut fed = 0u64;
    let mut warm_rss = None;
    let mut peak_rss = 0u64;
    let mut samples: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last_report = Instant::now();
    loop {
        let stats = broker.stats(QUEUE).await?;
        let rss = status_kib(pid, "VmRSS");
        peak_rss = peak_rss.max(rss);
        let processed = stats.processed_total;
        if warm_rss.is_none() && processed >= tasks / 10 {
            warm_rss = Some(rss);
        }
        samples.insert(processed / (tasks / 20).max(1), rss);
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  {:>5.0} s: fed {fed}, processed {processed}, pending {}, retry {}, RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                stats.pending,
                stats.retry,
                rss as f64 / 1024.0
            );
        }
        if fed < tasks && stats.pending < BACKLOG {
            let n = (tasks - fed).min(5_000);
            let batch = (fed..fed + n)
                .map(|i| task(i, QUEUE, &mut expected))
                .collect();
            for result in client.enqueue_batch(batch).await {
                result?;
            }
            fed += n;
            continue;
        }
        let runs = expected.ok + expected.kept + 2 * expected.retried + expected.trapped;
        if fed == tasks && processed >= runs && stats.retry == 0 && stats.active == 0 {
            break;
        }
        assert!(
            worker.0.try_wait()?.is_none(),
            "the worker exited during the soak"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let end_rss = status_kib(pid, "VmRSS");
    // SAFETY: kill(2) with SIGTERM on the worker this run started.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = worker.0.wait();

    let stats = broker.stats(QUEUE).await?;
    let runs = expected.ok + expected.kept + 2 * expected.retried + expected.trapped;
    let failures = 2 * expected.retried + expected.trapped;
    let mut problems = Vec::new();
    let mut check = |what: &str, got: u64, want: u64| {
        if got != want {
            problems.push(format!("{what}: {got}, expected {want}"));
        }
    };
    check("processed", stats.processed_total, runs);
    check("failed", stats.failed_total, failures);
    check("completed", stats.completed, expected.kept);
    check(
        "archived",
        stats.archived,
        expected.retried + expected.trapped,
    );
    check("pending", stats.pending, 0);
    check("active", stats.active, 0);
    check("retry", stats.retry, 0);
    check("scheduled", stats.scheduled, 0);
    let leftovers = leftover_keys(&cluster, QUEUE);
    let task_keys = leftovers.iter().filter(|k| k.contains(":t:")).count() as u64;
    check(
        "task hashes left",
        task_keys,
        stats.completed + stats.archived,
    );
    let allowed = |k: &str| {
        let rest = k.trim_start_matches(&format!("asynq:{{{QUEUE}}}:"));
        rest.starts_with("t:")
            || ["completed", "archived", "processed", "failed", "wake"].contains(&rest)
            || rest.starts_with("processed:")
            || rest.starts_with("failed:")
    };
    let stray: Vec<&String> = leftovers.iter().filter(|k| !allowed(k)).collect();
    if !stray.is_empty() {
        problems.push(format!("keys left behind: {stray:?}"));
    }

    println!(
        "soak: {tasks} tasks ({expected:?}) in {secs:.0} s ({:.0} runs/s)",
        runs as f64 / secs
    );
    println!(
        "  counts: processed {} (expected {runs}), failed {} (expected {failures}), completed {}, archived {}",
        stats.processed_total, stats.failed_total, stats.completed, stats.archived
    );
    println!(
        "  keys left: {} task hashes (completed + archived) and counters; stray: {}",
        task_keys,
        stray.len()
    );
    let log_lines = std::fs::read_to_string(&log_path)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    println!("  worker log: {log_lines} lines (one warning per failed run)");
    let warm = warm_rss.unwrap_or(end_rss);
    println!(
        "  worker RSS: {:.1} MiB after warm-up (10 % processed), {:.1} MiB at the end ({:+.1} %), peak {:.1} MiB",
        warm as f64 / 1024.0,
        end_rss as f64 / 1024.0,
        (end_rss as f64 / warm as f64 - 1.0) * 100.0,
        peak_rss as f64 / 1024.0
    );
    let curve: Vec<String> = samples
        .values()
        .map(|kib| format!("{:.0}", *kib as f64 / 1024.0))
        .collect();
    println!("  RSS (MiB) at each 5 % of the run: {}", curve.join(" "));
    if end_rss > warm + warm / 4 + 4096 {
        problems.push(format!(
            "RSS grew from {warm} KiB after warm-up to {end_rss} KiB"
        ));
    }
    if problems.is_empty() {
        println!("  OK: every count adds up, nothing stray is left, RSS is flat");
        Ok(())
    } else {
        for p in &problems {
            println!("  FAILED: {p}");
        }
        std::process::exit(1);
    }
}

/// Task number `i` of the mix.
fn task(i: u64, queue: &str, expected: &mut Expected) -> (Task, TaskOptions) {
    let opts = TaskOptions::default().queue(queue);
    match i % 10 {
        0..=6 => {
            expected.ok += 1;
            (Task::new("soak", br#"{"do": "ok"}"#.to_vec()), opts)
        }
        7 => {
            expected.kept += 1;
            (
                Task::new("soak", br#"{"do": "ok"}"#.to_vec()),
                opts.retention(Duration::from_secs(3600)),
            )
        }
        8 => {
            expected.retried += 1;
            (
                Task::new("soak", br#"{"do": "panic"}"#.to_vec()),
                opts.max_retry(1),
            )
        }
        _ => {
            expected.trapped += 1;
            (
                Task::new("soak-fuel", br#"{"do": "loop"}"#.to_vec()),
                opts.max_retry(0),
            )
        }
    }
}

/// Every key of `queue` on its master (SCAN with the queue's hash tag).
fn leftover_keys(cluster: &RedisCluster, queue: &str) -> Vec<String> {
    let slot = cluster.slot_of(&format!("asynq:{{{queue}}}:pending"));
    let master = cluster.master_of(slot);
    let mut keys = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let out = master.cli(&[
            "SCAN",
            &cursor,
            "MATCH",
            &format!("asynq:{{{queue}}}:*"),
            "COUNT",
            "10000",
        ]);
        let mut lines = out.lines();
        cursor = lines.next().unwrap_or("0").trim().to_owned();
        keys.extend(lines.map(str::to_owned));
        if cursor == "0" {
            break;
        }
    }
    keys
}
