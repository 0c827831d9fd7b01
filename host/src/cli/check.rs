//! `wasq check`: validate the config and every module, precompile them, and
//! report what each costs: size, compile time, memory at start and the
//! instances one sandbox takes from the pool.

use std::process::ExitCode;

use wasq::runtime::CacheStatus;
use wasq::units::ByteSize;

/// Arguments of `wasq check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: super::args::ConfigArg,
    #[command(flatten)]
    output: super::args::JsonArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (config, runtime) = super::load_runtime(&args.config.config).await?;
    let types = runtime.task_types();
    let cache_dir = config.cache_dir();
    // The runtime turns the cache off when the directory is not safe (it
    // logs why); every task type is then compiled with the cache off.
    let refused = types.iter().any(|t| t.cache == CacheStatus::Disabled);
    let cache_on = cache_dir.is_some() && !refused;
    if args.output.json {
        let report = serde_json::json!({
            "config": args.config.config,
            "cache_dir": cache_dir,
            "cache": if cache_on { "on" } else { "off" },
            "registry_types": config
                .tasks
                .iter()
                .filter(|(_, t)| t.from_registry())
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>(),
            "task_types": types.iter().map(|t| serde_json::json!({
                "name": t.name,
                "module": t.module,
                "module_hash": t.module_hash,
                "module_size": t.module_size,
                "world": format!("wasq:task/handler@{}", t.world_version),
                "cache": t.cache,
                "load_time_us": t.load_time.as_micros() as u64,
                "initial_memory": t.footprint.initial_memory,
                "footprint": t.footprint,
                "limits": {
                    "fuel": t.limits.fuel,
                    "memory": t.limits.memory,
                    "timeout_ms": t.limits.timeout.as_millis() as u64,
                    "max_payload": t.limits.max_payload,
                    "max_result": t.limits.max_result,
                    "max_log": t.limits.max_log,
                },
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: ok, {} task type(s)",
        args.config.config.display(),
        types.len()
    );
    match &cache_dir {
        None => {
            println!("  compiled-code cache: off (no [runtime] cache_dir, XDG_CACHE_HOME or HOME)")
        }
        Some(dir) if refused => println!(
            "  compiled-code cache: off ({} is not safe to load code from, see the warning)",
            dir.display()
        ),
        Some(dir) => println!("  compiled-code cache: {}", dir.display()),
    }
    for t in &types {
        let cache = match t.cache {
            CacheStatus::Hit => "loaded from the cache",
            CacheStatus::Compiled => "compiled (now cached)",
            CacheStatus::CompiledUncached => "compiled (cache not writable)",
            CacheStatus::Disabled => "compiled (cache off)",
        };
        let fuel = t
            .limits
            .fuel
            .map_or("unlimited".to_owned(), |f| f.to_string());
        let f = &t.footprint;
        println!(
            "  {}  {}  (wasq:task@{})",
            t.name,
            t.module.display(),
            t.world_version
        );
        println!(
            "      {}, sha256 {}, {cache} in {:.1?}",
            ByteSize(t.module_size),
            &t.module_hash[..12],
            t.load_time,
        );
        println!(
            "      each sandbox: {} of linear memory at start, {}, {}, {}",
            ByteSize(f.initial_memory),
            count(f.core_instances, "core instance", "core instances"),
            count(f.memories, "memory", "memories"),
            count(f.tables, "table", "tables"),
        );
        println!(
            "      limits: fuel {fuel}, memory {}, timeout {}",
            ByteSize(t.limits.memory),
            humantime::format_duration(t.limits.timeout),
        );
    }
    for (name, _) in config.tasks.iter().filter(|(_, t)| t.from_registry()) {
        println!(
            "  {name}  module = \"registry\": checked when pushed (`wasq module push FILE --type {name}`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `1 table`, `2 tables`.
fn count(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
