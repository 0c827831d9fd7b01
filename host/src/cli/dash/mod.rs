//! `wasq dash`: a live view of the queues. In the terminal it redraws a
//! table of queues (counts by state, throughput, latency), servers and the
//! cluster's state every `--interval`; with `--web` it serves a dashboard
//! page and the JSON API behind it (see [`web`]).

mod web;

use std::collections::HashMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wasq::broker::Broker;

/// Arguments of `wasq dash`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    redis: super::connect::RedisArgs,
    /// Serve the web dashboard instead of drawing in the terminal.
    #[arg(long)]
    web: bool,
    /// Where the web dashboard listens.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "web")]
    listen: std::net::SocketAddr,
    /// Web dashboard without actions (run, delete, archive, cancel, pause).
    #[arg(long, requires = "web")]
    read_only: bool,
    /// How often the terminal view refreshes, e.g. `2s`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    interval: Duration,
    /// Draw the terminal view once and exit (for scripts and tests).
    #[arg(long, conflicts_with = "web")]
    once: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let broker = args.redis.connect().await?;
    if args.web {
        let config = args.redis.config_file()?;
        web::serve(broker, config, args.listen, args.read_only).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
    loop {
        let frame = frame(&broker, &mut last).await?;
        if args.once {
            print!("{frame}");
            return Ok(ExitCode::SUCCESS);
        }
        // Clear the screen, home the cursor, draw.
        print!("\x1b[2J\x1b[H{frame}");
        std::io::stdout().flush()?;
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// One frame of the terminal view; `last` keeps each queue's processed
/// count to compute throughput between frames.
async fn frame(
    broker: &Broker,
    last: &mut HashMap<String, (u64, Instant)>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    out.push_str(&format!("wasq dash   {now}   (Ctrl-C to quit)\n\n"));
    out.push_str(&format!(
        "{:<18} {:>8} {:>7} {:>9} {:>7} {:>8} {:>9} {:>8} {:>9}  {:<6}\n",
        "Queue",
        "pending",
        "active",
        "scheduled",
        "retry",
        "archived",
        "completed",
        "tasks/s",
        "latency",
        "state"
    ));
    for q in broker.queues().await? {
        let s = broker.stats(&q).await?;
        let latency = broker.latency(&q).await?;
        let rate = match last.insert(q.clone(), (s.processed_total, Instant::now())) {
            Some((before, at)) => {
                (s.processed_total.saturating_sub(before)) as f64
                    / at.elapsed().as_secs_f64().max(0.001)
            }
            None => 0.0,
        };
        out.push_str(&format!(
            "{:<18} {:>8} {:>7} {:>9} {:>7} {:>8} {:>9} {:>8.0} {:>8.2}s  {:<6}\n",
            q,
            s.pending,
            s.active,
            s.scheduled,
            s.retry,
            s.archived,
            s.completed,
            rate,
            latency,
            if s.paused { "paused" } else { "run" }
        ));
    }
    let servers = broker.servers().await?;
    out.push_str(&format!("\n{} server(s)\n", servers.len()));
    for s in servers {
        out.push_str(&format!(
            "  {}:{}  {}  {}/{} busy  queues {}\n",
            s.host,
            s.pid,
            s.status,
            s.active_workers,
            s.concurrency,
            s.queues.keys().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    match broker.cluster_info().await? {
        Some(c) => out.push_str(&format!(
            "\ncluster: {} · {} nodes · {} masters · {} slots ok\n",
            c.state, c.known_nodes, c.size, c.slots_ok
        )),
        None => out.push_str("\nsingle Redis\n"),
    }
    Ok(out)
}
