//! `wasq check`: validate the config and every module, precompile them.

use std::process::ExitCode;

use wasq::runtime::CacheStatus;

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
    let types: Vec<_> = runtime.task_types().cloned().collect();
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
            "task_types": types.iter().map(|t| serde_json::json!({
                "name": t.name,
                "module": t.module,
                "module_hash": t.module_hash,
                "module_size": t.module_size,
                "cache": t.cache,
                "load_time_us": t.load_time.as_micros() as u64,
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
            CacheStatus::Hit => "cached",
            CacheStatus::Compiled => "compiled",
            CacheStatus::CompiledUncached => "compiled (cache not writable)",
            CacheStatus::Disabled => "compiled (cache off)",
        };
        let fuel = t
            .limits
            .fuel
            .map_or("unlimited".to_owned(), |f| f.to_string());
        println!(
            "  {:<24} {} ({} KiB, sha256 {}), {cache} in {:.1?}; fuel {fuel}, memory {} MiB, timeout {}",
            t.name,
            t.module.display(),
            t.module_size / 1024,
            &t.module_hash[..12],
            t.load_time,
            t.limits.memory >> 20,
            humantime::format_duration(t.limits.timeout),
        );
    }
    Ok(ExitCode::SUCCESS)
}
