//! `wasq bench`: what the sandbox costs per task and at start-up, for one
//! or several no-op handlers (one per guest language), each against a
//! naive embedding of the same component measured in the same run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;
use wasq::runtime::bench::{self, HttpReport, OverheadReport, StartupReport};

use super::table::Table;

/// The executor's median per task must be at most this share of the naive
/// embedding's.
const OVERHEAD_TARGET: f64 = 1.0 / 3.0;
/// A warm start must take at most this share of a cold one.
const STARTUP_TARGET: f64 = 1.0 / 10.0;
/// A GET through the sandbox may take at most this many times the host's.
const HTTP_TARGET: f64 = 1.5;

/// Arguments of `wasq bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example, a no-op handler in each language (scripts/bench builds them):
  wasq bench --module rust=examples-wasm/target/wasm32-wasip2/release/noop.wasm \\
             --module python=target/wasq-bench/noop-python.wasm \\
             --module js=target/wasq-bench/noop-js.wasm --startup

Targets: the executor costs at most 1/3 of the naive embedding per task, and a
warm start takes at most 1/10 of a cold one.")]
pub struct Args {
    /// A no-op handler component to measure, as LABEL=PATH or PATH (the
    /// label is then the file's name); repeat for several.
    #[arg(
        long = "module",
        value_name = "[LABEL=]PATH",
        default_value = "rust=examples-wasm/target/wasm32-wasip2/release/noop.wasm"
    )]
    modules: Vec<String>,
    /// Tasks to run each way, per module.
    #[arg(long, default_value_t = 5000)]
    iterations: usize,
    /// Also time each module's start-up with an empty (cold) and a filled
    /// (warm) compiled-code cache; a cold start compiles the module.
    #[arg(long)]
    startup: bool,
    /// Also time a handler making one GET per task to a server on loopback
    /// against the same GET made by the host (hyper, a new connection per
    /// request in both).
    #[arg(long)]
    http: bool,
    /// The handler `--http` runs: it GETs the payload's `url`.
    #[arg(
        long,
        default_value = "examples-wasm/target/wasm32-wasip2/release/http_get.wasm"
    )]
    http_module: PathBuf,
    /// Also time the start-up of this whole config, cold and warm.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where both ways find the modules' compiled code before timing starts
    /// (default: the user's cache, ~/.cache/wasq).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    output: super::args::JsonArg,
}

/// The figures of one module.
#[derive(Debug, Serialize)]
struct ModuleReport {
    label: String,
    module: PathBuf,
    overhead: OverheadReport,
    startup: Option<StartupReport>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for spec in &args.modules {
        let (label, module) = label_and_path(spec);
        let overhead = bench::overhead(&module, args.iterations.max(10), args.cache_dir.as_deref())
            .await
            .with_context(|| format!("measuring {}", module.display()))?;
        let startup = if args.startup {
            let path = module.clone();
            Some(tokio::task::spawn_blocking(move || bench::module_startup(&path)).await??)
        } else {
            None
        };
        reports.push(ModuleReport {
            label,
            module,
            overhead,
            startup,
        });
    }
    let http = if args.http {
        Some(
            bench::http_overhead(
                &args.http_module,
                args.iterations.max(10),
                args.cache_dir.as_deref(),
            )
            .await
            .with_context(|| format!("measuring {}", args.http_module.display()))?,
        )
    } else {
        None
    };
    let config_startup = match &args.config {
        Some(path) => {
            let config = wasq::config::Config::load(path)?;
            Some(tokio::task::spawn_blocking(move || bench::startup(&config)).await??)
        }
        None => None,
    };
    if args.output.json {
        let report = serde_json::json!({
            "modules": reports,
            "config_startup": config_startup,
            "http": http,
            "targets": {
                "overhead_ratio": OVERHEAD_TARGET,
                "startup_ratio": STARTUP_TARGET,
                "http_ratio": HTTP_TARGET,
            },
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_text(&args, &reports, config_startup.as_ref());
    if let Some(h) = &http {
        print_http(h);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(args: &Args, reports: &[ModuleReport], config_startup: Option<&StartupReport>) {
    println!(
        "Per-task cost of a no-op handler: wasq's executor (pooled instance, \
         InstancePre, fuel, epoch deadline, journal) against a naive embedding \
         (new Linker and instantiation per task, on-demand allocator), {} tasks \
         each way per module, same run.",
        reports.first().map_or(0, |r| r.overhead.iterations)
    );
    let mut table =
        Table::new("Handler|>wasq p50|>wasq p99|>naive p50|>naive p99|>ratio p50|target ≤ 0.33");
    for r in reports {
        let o = &r.overhead;
        table.row([
            r.label.clone(),
            micros(o.wasq.median_us),
            micros(o.wasq.p99_us),
            micros(o.naive.median_us),
            micros(o.naive.p99_us),
            format!("{:.3}", o.ratio),
            met(o.ratio <= OVERHEAD_TARGET),
        ]);
    }
    println!("{table}");
    if args.startup {
        println!();
        println!("Start-up of one task type (Runtime::load): cold = compile, warm = cache hit.");
        let mut table = Table::new("Handler|>cold|>warm|>warm/cold|target ≤ 0.10");
        for r in reports {
            if let Some(s) = &r.startup {
                table.row(startup_row(&r.label, s));
            }
        }
        println!("{table}");
    }
    if let (Some(s), Some(path)) = (config_startup, &args.config) {
        println!();
        println!(
            "Start-up of {} ({} task types), as a worker starts:",
            path.display(),
            s.task_types
        );
        let mut table = Table::new("Config|>cold|>warm|>warm/cold|target ≤ 0.10");
        table.row(startup_row(&path.display().to_string(), s));
        println!("{table}");
    }
}

fn print_http(h: &HttpReport) {
    println!();
    println!(
        "One GET per task to a server on loopback (512-byte body, a new connection per \
         request both ways), {} requests each way, same run:",
        h.iterations
    );
    let mut table = Table::new("Way|>p50|>p99|>ratio p50|>added/host p50|target ≤ 1.5 (ratio)");
    table.row([
        "wasq task (http:get handler, wasi:http, host checks)".to_owned(),
        micros(h.wasq.median_us),
        micros(h.wasq.p99_us),
        format!("{:.2}", h.ratio),
        format!("{:.2}", h.ratio - 1.0),
        met(h.ratio <= HTTP_TARGET),
    ]);
    table.row([
        "host GET (hyper)".to_owned(),
        micros(h.host.median_us),
        micros(h.host.p99_us),
        String::new(),
        String::new(),
        String::new(),
    ]);
    println!("{table}");
}

fn startup_row(label: &str, s: &StartupReport) -> [String; 5] {
    let ratio = s.warm_ms / s.cold_ms;
    [
        label.to_owned(),
        format!("{:.1} ms", s.cold_ms),
        format!("{:.1} ms", s.warm_ms),
        format!("{ratio:.3}"),
        met(ratio <= STARTUP_TARGET),
    ]
}

fn micros(us: f64) -> String {
    format!("{us:.1} µs")
}

fn met(ok: bool) -> String {
    if ok { "met" } else { "missed" }.to_owned()
}

/// `python=path/noop.wasm` → ("python", path); `path/noop.wasm` →
/// ("noop", path).
fn label_and_path(spec: &str) -> (String, PathBuf) {
    match spec.split_once('=') {
        Some((label, path)) if !label.is_empty() && !label.contains('/') => {
            (label.to_owned(), PathBuf::from(path))
        }
        _ => {
            let path = PathBuf::from(spec);
            let label = path
                .file_stem()
                .map_or_else(|| spec.to_owned(), |s| s.to_string_lossy().into_owned());
            (label, path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::label_and_path;

    #[test]
    fn labels_come_from_the_spec_or_the_file_name() {
        assert_eq!(label_and_path("py=a/b.wasm").0, "py");
        assert_eq!(label_and_path("a/noop.wasm").0, "noop");
        assert_eq!(
            label_and_path("a=b/c.wasm").1.display().to_string(),
            "b/c.wasm"
        );
    }
}
