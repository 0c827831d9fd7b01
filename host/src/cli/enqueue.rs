//! `wasq enqueue`: put one task into a queue.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use wasq::{Client, Task, TaskOptions};

/// Arguments of `wasq enqueue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    redis: super::connect::RedisArgs,
    /// The task type, e.g. `notifications:email`.
    task_type: String,
    /// The payload (JSON by convention).
    #[arg(long, short, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the payload from a file.
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// The queue.
    #[arg(long, short, default_value = "default")]
    queue: String,
    /// Run after this delay, e.g. `5m`.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "process_at")]
    process_in: Option<Duration>,
    /// Run at this time (RFC 3339 with a zone, e.g. 2026-12-01T09:00:00Z
    /// or 2026-12-01T10:00:00+01:00).
    #[arg(long, value_parser = parse_time)]
    process_at: Option<SystemTime>,
    /// Retries allowed (default 25).
    #[arg(long)]
    max_retry: Option<u32>,
    /// Timeout per attempt, e.g. `30s` (default 30m without a deadline).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Deadline (RFC 3339 with a zone, as for `--process-at`).
    #[arg(long, value_parser = parse_time)]
    deadline: Option<SystemTime>,
    /// Refuse a duplicate (same type, payload, queue) for this long, e.g. `1h`.
    #[arg(long, value_parser = humantime::parse_duration)]
    unique: Option<Duration>,
    /// The task id (default: a random UUID).
    #[arg(long)]
    task_id: Option<String>,
    /// Keep the task as completed for this long after success, e.g. `24h`.
    #[arg(long, value_parser = humantime::parse_duration)]
    retention: Option<Duration>,
    /// Add the task to this group of its queue: it waits until the group is
    /// due (the queue's group_grace, group_max_delay, group_max_size) and
    /// then reaches a handler with the group's other tasks, as one task.
    #[arg(long, conflicts_with_all = ["process_in", "process_at"])]
    group: Option<String>,
    #[command(flatten)]
    output: super::args::JsonArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let payload = match (&args.payload, &args.payload_file) {
        (Some(p), _) => p.clone().into_bytes(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => b"{}".to_vec(),
    };
    let mut opts = TaskOptions::default().queue(&args.queue);
    opts.max_retry = args.max_retry;
    opts.timeout = args.timeout;
    opts.deadline = args.deadline;
    opts.unique = args.unique;
    opts.task_id = args.task_id.clone();
    opts.retention = args.retention;
    opts.group = args.group.clone();
    opts.process_at = args
        .process_at
        .or(args.process_in.map(|d| SystemTime::now() + d));
    // The task type's payload limit from the config, when there is one, so
    // the client refuses what the worker would refuse.
    let limit = args
        .redis
        .config_file()?
        .and_then(|config| config.limits_of(&args.task_type))
        .map_or(wasq::client::DEFAULT_MAX_PAYLOAD, |l| {
            l.max_payload as usize
        });
    let client = Client::from_broker(args.redis.connect().await?).max_payload(limit);
    let info = client
        .enqueue(Task::new(&args.task_type, payload), opts)
        .await?;
    if args.output.json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!(
            "enqueued task {} into queue {} ({})",
            info.id, info.queue, info.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An RFC 3339 time with its zone: `Z` (UTC) or an offset such as
/// `+02:00`. A time without a zone is refused rather than guessed.
fn parse_time(text: &str) -> Result<SystemTime, String> {
    const EXPECTED: &str =
        "expected RFC 3339 with a zone, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00";
    let text = text.trim();
    match text.parse::<jiff::Timestamp>() {
        // jiff takes offsets up to ±25:59:59; RFC 3339's hours end at 23.
        Ok(_) if offset_secs(text).is_some_and(|s| s.unsigned_abs() >= 24 * 3600) => {
            Err(format!("{text:?}: the offset is beyond ±23:59; {EXPECTED}"))
        }
        Ok(at) => Ok(at.into()),
        Err(_) if text.parse::<jiff::civil::DateTime>().is_ok() => {
            Err(format!("{text:?} has no time zone; {EXPECTED}"))
        }
        Err(e) => Err(format!("{text:?}: {e}; {EXPECTED}")),
    }
}

/// The zone offset written in `text`, in seconds.
fn offset_secs(text: &str) -> Option<i32> {
    let pieces = jiff::fmt::temporal::Pieces::parse(text).ok()?;
    Some(pieces.offset()?.to_numeric_offset().seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_need_a_zone_and_offsets_are_applied() {
        let utc = parse_time("2026-12-01T09:00:00Z").unwrap();
        assert_eq!(parse_time("2026-12-01T10:00:00+01:00").unwrap(), utc);
        assert_eq!(parse_time("2026-12-01T03:30:00-05:30").unwrap(), utc);
        assert_eq!(parse_time("2026-12-01T09:00:00.000+00:00").unwrap(), utc);
        let no_zone = parse_time("2026-12-01T09:00:00").unwrap_err();
        assert!(no_zone.contains("no time zone"), "{no_zone}");
        assert!(parse_time("2026-12-01T09:00:00+25:00").is_err());
        assert!(parse_time("tomorrow").is_err());
    }
}
