//! `wasq dash`: a live view of the queues. In the terminal it redraws a
//! table of queues (counts by state, throughput, latency), servers and the
//! cluster's state every `--interval`; with `--web` it serves a dashboard
//! page and the JSON API behind it (see [`web`], which also says who may
//! use it). Beyond loopback the web dashboard wants `--auth-token` (or
//! `WASQ_DASH_TOKEN`), or `--insecure`.

mod web;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wasq::broker::Broker;

use super::table::Table;

/// Arguments of `wasq dash`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    redis: super::connect::RedisArgs,
    /// Serve the web dashboard instead of drawing in the terminal.
    ///
    /// The page sends a token embedded in it when it was served (random
    /// per start) with every action, and the dashboard refuses requests
    /// from another site's page (their Origin) and requests for a Host
    /// that is not the listen address (DNS rebinding), so a page open in
    /// the same browser cannot act on the queues.
    #[arg(long)]
    web: bool,
    /// Where the web dashboard listens.
    ///
    /// Anything but a loopback address (127.0.0.1, ::1) needs --auth-token
    /// (or WASQ_DASH_TOKEN), or --insecure. Open the dashboard by this
    /// address (on loopback `localhost` works too; listening on every
    /// address, any IP address of the machine): requests naming another
    /// host are refused.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "web")]
    listen: SocketAddr,
    /// A token every request to the web dashboard must carry.
    ///
    /// In a browser open http://ADDR/?token=TOKEN once: an HttpOnly,
    /// SameSite=Strict cookie then keeps the session until the dashboard
    /// stops. Scripts send `Authorization: Bearer TOKEN`. Required to
    /// listen beyond loopback.
    #[arg(
        long,
        env = "WASQ_DASH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    auth_token: Option<String>,
    /// Listen beyond loopback without --auth-token: anyone who reaches the
    /// address can then act on every queue.
    #[arg(long, requires = "web")]
    insecure: bool,
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
    if args.web {
        // Before Redis: a refused start says so at once.
        let auth_token = auth_token(&args)?;
        let broker = args.redis.connect().await?;
        let config = args.redis.config_file()?;
        web::serve(broker, config, args.listen, args.read_only, auth_token).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let broker = args.redis.connect().await?;
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

/// The web dashboard's auth token, once checked that the listen address
/// may be served with it: beyond loopback only with a token or
/// `--insecure`.
fn auth_token(args: &Args) -> anyhow::Result<Option<String>> {
    if args.auth_token.as_deref() == Some("") {
        anyhow::bail!(
            "the auth token is empty: pass --auth-token TOKEN (or set WASQ_DASH_TOKEN) with a \
             token, or neither (then only on loopback, or with --insecure)"
        );
    }
    if args.auth_token.is_none() && !args.insecure && !args.listen.ip().to_canonical().is_loopback()
    {
        anyhow::bail!(
            "refusing to serve the web dashboard on {} without an auth token: anyone who reaches \
             it could delete every task. Pass --auth-token TOKEN (or set WASQ_DASH_TOKEN) and \
             open http://ADDR/?token=TOKEN, or listen on loopback (--listen 127.0.0.1:8080), or \
             pass --insecure to serve it to anyone who reaches the address",
            args.listen
        );
    }
    Ok(args.auth_token.clone())
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
    let mut queues = Table::new(
        "Queue|>pending|>active|>scheduled|>retry|>archived|>completed|>tasks/s|>latency|state",
    );
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
        let counts = s.by_state().map(|n| n.to_string());
        queues.row(std::iter::once(q).chain(counts).chain([
            format!("{rate:.0}"),
            format!("{latency:.2}s"),
            if s.paused { "paused" } else { "run" }.to_owned(),
        ]));
    }
    out.push_str(&format!("{queues}\n"));
    let servers = broker.servers().await?;
    out.push_str(&format!("\n{} server(s)\n", servers.len()));
    if !servers.is_empty() {
        let mut table = Table::new("Server|State|>Busy|Queues");
        for s in servers {
            table.row([
                format!("{}:{}", s.host, s.pid),
                s.status,
                format!("{}/{}", s.active_workers, s.concurrency),
                s.queues.keys().cloned().collect::<Vec<_>>().join(","),
            ]);
        }
        out.push_str(&format!("{table}\n"));
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
