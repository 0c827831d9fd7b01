//! `wasq task`: list a queue's tasks by state, inspect one, cancel running
//! ones, and delete, archive or run tasks, one by one or a whole state.

use std::process::ExitCode;

use wasq::TaskState;
use wasq::broker::{Broker, Move, StoredTask};

use super::args::{JsonArg, QueueTarget, YesArg};
use super::connect::RedisArgs;
use super::table::Table;

/// The subcommands of `wasq task`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List the tasks of a queue in one state, a page at a time.
    Ls {
        #[command(flatten)]
        redis: RedisArgs,
        /// The queue.
        #[arg(long, short)]
        queue: String,
        /// The state.
        #[arg(long, short, value_enum, default_value = "pending")]
        state: TaskState,
        /// Page number, from 0.
        #[arg(long, default_value_t = 0)]
        page: usize,
        /// Tasks per page.
        #[arg(long, default_value_t = 20)]
        size: usize,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Show one task: payload (pretty-printed when JSON), state, retries,
    /// error, times and result.
    Inspect {
        #[command(flatten)]
        target: QueueTarget,
        /// The task id.
        id: String,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Stop running tasks, on whichever worker runs them (within a second).
    /// A cancelled task is archived; `wasq task run` brings it back.
    Cancel {
        #[command(flatten)]
        redis: RedisArgs,
        /// Task ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        yes: YesArg,
    },
    /// Delete tasks (not active ones: cancel those first).
    Delete(Targets),
    /// Archive tasks that are pending, scheduled or waiting to retry.
    Archive(Targets),
    /// Run tasks now: scheduled, retry or archived tasks become pending.
    Run(Targets),
    /// Delete every task of a queue in one state.
    Deleteall(AllOf),
    /// Archive every task of a queue in one state.
    Archiveall(AllOf),
    /// Run every task of a queue in one state now.
    Runall(AllOf),
}

/// Tasks named by id.
#[derive(Debug, clap::Args)]
pub struct Targets {
    #[command(flatten)]
    target: QueueTarget,
    /// Task ids.
    #[arg(required = true)]
    ids: Vec<String>,
    #[command(flatten)]
    yes: YesArg,
}

/// Every task of a queue in one state.
#[derive(Debug, clap::Args)]
pub struct AllOf {
    #[command(flatten)]
    target: QueueTarget,
    /// The state.
    #[arg(long, short, value_enum)]
    state: TaskState,
    #[command(flatten)]
    yes: YesArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Ls {
            redis,
            queue,
            state,
            page,
            size,
            output,
        } => {
            let broker = redis.connect().await?;
            let tasks = broker.list_tasks(&queue, state, page, size).await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&tasks)?);
            } else {
                print_table(&tasks);
            }
            Ok(ExitCode::SUCCESS)
        }
        Args::Inspect { target, id, output } => {
            let broker = target.connect().await?;
            let queue = &target.queue;
            let Some(task) = broker.task(queue, &id).await? else {
                anyhow::bail!("no task {id:?} in queue {queue:?}");
            };
            if output.json {
                println!("{}", serde_json::to_string_pretty(&task)?);
            } else {
                print_task(&task);
            }
            Ok(ExitCode::SUCCESS)
        }
        Args::Cancel { redis, ids, yes } => {
            yes.confirm(&format!("cancel {} running task(s)", ids.len()))?;
            // In a cluster a publish reaches every node's subscribers, but
            // its count is only the local node's: not worth printing.
            redis.connect().await?.cancel(&ids).await?;
            println!("cancel sent for {} task(s)", ids.len());
            Ok(ExitCode::SUCCESS)
        }
        Args::Delete(t) => by_id(t, Move::Delete).await,
        Args::Archive(t) => by_id(t, Move::Archive).await,
        Args::Run(t) => by_id(t, Move::Run).await,
        Args::Deleteall(a) => all_of(a, Move::Delete).await,
        Args::Archiveall(a) => all_of(a, Move::Archive).await,
        Args::Runall(a) => all_of(a, Move::Run).await,
    }
}

fn verb(action: Move) -> &'static str {
    match action {
        Move::Delete => "deleted",
        Move::Archive => "archived",
        Move::Run => "now pending",
    }
}

async fn by_id(t: Targets, action: Move) -> anyhow::Result<ExitCode> {
    let queue = &t.target.queue;
    if action != Move::Run {
        t.yes.confirm(&format!(
            "{} {} task(s) of queue {queue}",
            if action == Move::Delete {
                "delete"
            } else {
                "archive"
            },
            t.ids.len(),
        ))?;
    }
    let broker = t.target.connect().await?;
    let mut failed = false;
    for id in &t.ids {
        match move_one(&broker, queue, id, action).await {
            Ok(()) => println!("task {id}: {}", verb(action)),
            Err(e) => {
                eprintln!("task {id}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn move_one(broker: &Broker, queue: &str, id: &str, action: Move) -> anyhow::Result<()> {
    let Some(task) = broker.task(queue, id).await? else {
        anyhow::bail!("no such task in queue {queue}");
    };
    let state: TaskState = task.state.parse().map_err(anyhow::Error::msg)?;
    let moved = broker
        .move_tasks(queue, state, action, &[id.to_owned()])
        .await?;
    if moved == 0 {
        anyhow::bail!("not moved: it is {} (or moved on meanwhile)", task.state);
    }
    Ok(())
}

async fn all_of(a: AllOf, action: Move) -> anyhow::Result<ExitCode> {
    let state = a.state;
    let queue = &a.target.queue;
    if action != Move::Run {
        a.yes.confirm(&format!(
            "{} every {state} task of queue {queue}",
            if action == Move::Delete {
                "delete"
            } else {
                "archive"
            },
        ))?;
    }
    let broker = a.target.connect().await?;
    let moved = broker.move_all(queue, state, action).await?;
    println!("{moved} {state} task(s) of queue {queue} {}", verb(action));
    Ok(ExitCode::SUCCESS)
}

fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let cut: String = one_line.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn when(secs: Option<i64>) -> String {
    secs.filter(|s| *s > 0)
        .map(|s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s as u64),
            )
            .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

fn print_table(tasks: &[StoredTask]) {
    if tasks.is_empty() {
        println!("no tasks");
        return;
    }
    let mut table = Table::new("ID|Type|State|>Retried|At|Error|Payload");
    for t in tasks {
        table.row([
            clip(&t.id, 36),
            clip(&t.task_type, 22),
            t.state.clone(),
            format!("{}/{}", t.retried, t.max_retry),
            when(t.score),
            clip(t.error.as_deref().unwrap_or("-"), 30),
            clip(&t.payload, 40),
        ]);
    }
    println!("{table}");
}

fn print_task(t: &StoredTask) {
    println!("ID:          {}", t.id);
    println!("Queue:       {}", t.queue);
    println!("Type:        {}", t.task_type);
    println!("State:       {}", t.state);
    if t.invalid_msg {
        println!("Message:     not a valid Asynq TaskMessage");
    }
    println!("Retried:     {}/{}", t.retried, t.max_retry);
    if let Some(error) = &t.error {
        println!("Last error:  {error}");
        println!("Failed at:   {}", when(t.last_failed_at));
    }
    let at_label = match t.state.as_str() {
        "active" => "Lease until:",
        "scheduled" | "retry" => "Runs at:    ",
        "archived" => "Archived at:",
        "completed" => "Deleted at: ",
        _ => "",
    };
    if !at_label.is_empty() {
        println!("{at_label} {}", when(t.score));
    }
    if let Some(owner) = &t.lease_owner {
        println!("Worker:      {owner}");
    }
    if let Some(module) = &t.module {
        println!("Module:      {module}");
    }
    if t.timeout_secs > 0 {
        println!("Timeout:     {}s", t.timeout_secs);
    }
    if t.deadline > 0 {
        println!("Deadline:    {}", when(Some(t.deadline)));
    }
    if t.retention_secs > 0 {
        println!("Retention:   {}s", t.retention_secs);
    }
    if t.completed_at.is_some() {
        println!("Completed:   {}", when(t.completed_at));
    }
    for (k, v) in &t.headers {
        println!("Header:      {k}: {v}");
    }
    println!("Payload:");
    println!("{}", pretty(&t.payload));
    if let Some(result) = &t.result {
        println!("Result:");
        println!("{}", pretty(result));
    }
}

/// JSON pretty-printed, anything else as is.
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}
