//! `wasq cron ls` and `wasq cron history`: the config's `[[periodic]]`
//! entries with their next and previous ticks, the latest tick each queue
//! received and the schedulers running them; and an entry's enqueues.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::args::ListArgs;
use super::table::Table;
use wasq::schedule::{self, Entry};

/// The subcommands of `wasq cron`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List the config's periodic entries: spec, zone, task type, queue,
    /// the next and previous tick, the latest tick enqueued and how many
    /// live schedulers run the entry.
    Ls(ListArgs),
    /// An entry's enqueues, newest first (at most 1000 are kept).
    History(HistoryArgs),
}

/// `wasq cron history NAME`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The entry's name, as in `[[periodic]]`.
    pub name: String,
    /// Show at most this many.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
    #[command(flatten)]
    pub list: ListArgs,
}

/// One entry as `wasq cron ls --json` and the dashboard show it.
#[derive(Serialize)]
pub(crate) struct Row {
    name: String,
    spec: String,
    timezone: String,
    task_type: String,
    queue: String,
    catch_up: &'static str,
    /// Unix seconds.
    next: Option<i64>,
    /// The latest tick at or before now, Unix seconds.
    previous: Option<i64>,
    /// The latest tick the queue received, Unix seconds.
    last_enqueued: Option<i64>,
    last_task_id: Option<String>,
    schedulers: usize,
    entry_id: String,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Ls(list) => ls(list).await,
        Args::History(history) => history_of(history).await,
    }
}

fn entries(list: &ListArgs) -> anyhow::Result<Vec<Entry>> {
    let path = &list.redis.config;
    let config = wasq::config::Config::load(path)
        .with_context(|| format!("reading the [[periodic]] entries of {}", path.display()))?;
    schedule::entries(&config).map_err(anyhow::Error::msg)
}

async fn ls(list: ListArgs) -> anyhow::Result<ExitCode> {
    let entries = entries(&list)?;
    let broker = list.redis.connect().await?;
    let rows = rows(&entries, &broker).await?;
    if list.output.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no [[periodic]] entries in {}", list.redis.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut table =
        Table::new("Name|Spec|Zone|Task type|Queue|Next|Previous|Last enqueued|>Schedulers");
    for row in rows {
        table.row([
            row.name,
            row.spec,
            row.timezone,
            row.task_type,
            row.queue,
            when(row.next),
            when(row.previous),
            when(row.last_enqueued),
            row.schedulers.to_string(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

async fn history_of(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let entries = entries(&args.list)?;
    let Some(entry) = entries.iter().find(|e| e.name() == args.name) else {
        let names: Vec<&str> = entries.iter().map(Entry::name).collect();
        bail!(
            "no [[periodic]] entry is named {:?} in {} (entries: {})",
            args.name,
            args.list.redis.config.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    };
    let broker = args.list.redis.connect().await?;
    let events = broker
        .tick_history(
            &entry.id,
            args.limit.min(wasq::broker::HISTORY_MAX as usize) as isize,
        )
        .await?;
    if args.list.output.json {
        let rows: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::json!({"task_id": e.task_id, "enqueued_at": e.enqueued_at}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        println!("{}: nothing enqueued yet", entry.name());
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new("Enqueued|Task id");
    for event in events {
        table.row([when(Some(event.enqueued_at)), event.task_id]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// The rows of `entries`: their ticks now, the latest tick each queue
/// received and the live schedulers that run them.
pub(crate) async fn rows(
    entries: &[Entry],
    broker: &wasq::broker::Broker,
) -> anyhow::Result<Vec<Row>> {
    let schedulers = broker.schedulers().await?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for entry in entries {
        let last = broker.last_tick(entry.config.queue(), entry.name()).await?;
        rows.push(Row {
            name: entry.name().to_owned(),
            spec: entry.schedule.text().to_owned(),
            timezone: entry.schedule.zone().to_owned(),
            task_type: entry.config.task_type.clone(),
            queue: entry.config.queue().to_owned(),
            catch_up: entry.config.catch_up.as_str(),
            next: entry.schedule.next_after(now).map(|t| t.as_second()),
            previous: entry
                .schedule
                .latest_at_or_before(now)
                .map(|t| t.as_second()),
            last_enqueued: last,
            last_task_id: last.map(|tick| entry.task_id(tick)),
            schedulers: schedulers
                .iter()
                .filter(|(_, listed)| listed.iter().any(|e| e.id == entry.id))
                .count(),
            entry_id: entry.id.clone(),
        });
    }
    Ok(rows)
}

/// A Unix time as RFC 3339 (UTC), or `-`.
fn when(secs: Option<i64>) -> String {
    secs.and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| "-".to_owned(), |t| t.to_string())
}
