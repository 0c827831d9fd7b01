//! Start-up validation: bad configs and bad modules are refused with errors
//! that name the file, line and key, or the module and what it lacks.

use wasq::runtime::{CacheStatus, RuntimeError};
use wasq_tests::TestConfig;

fn load_error(body: &str) -> (TestConfig, String) {
    let config = TestConfig::new(body);
    let error = match config.load() {
        Ok(_) => panic!("config loaded but should not:\n{body}"),
        Err(e) => e.to_string(),
    };
    (config, error)
}

#[test]
fn unknown_key_names_file_line_and_key() {
    // Line 1-3 are the harness's [runtime] section and a blank line.
    let (config, error) =
        load_error("[tasks.\"x:y\"]\nmodule = \"{guests}/misbehave.wasm\"\nmemroy = \"1MiB\"\n");
    assert!(
        error.contains(&config.path.display().to_string()),
        "{error}"
    );
    assert!(error.contains("line 7"), "{error}");
    assert!(error.contains("key `tasks.\"x:y\".memroy`"), "{error}");
    assert!(error.contains("unknown field `memroy`"), "{error}");
}

#[test]
fn bad_values_name_their_key() {
    let (_, error) = load_error("[defaults]\nmemory = \"lots\"\n");
    assert!(
        error.contains("line 6") && error.contains("key `defaults.memory`"),
        "{error}"
    );
    assert!(error.contains("is not a size"), "{error}");

    let (_, error) = load_error("[tasks.a]\nmodule = \"a.wasm\"\ntimeout = \"soon\"\n");
    assert!(
        error.contains("line 7") && error.contains("key `tasks.a.timeout`"),
        "{error}"
    );

    let (_, error) = load_error("[tasks.a]\nmodule = \"a.wasm\"\nfuel = -5\n");
    assert!(
        error.contains("key `tasks.a.fuel`") && error.contains("positive"),
        "{error}"
    );

    let (_, error) = load_error(
        "[tasks.a]\nmodule = \"a.wasm\"\ndirs = [{ host = \"/tmp\", guest = \"rel\" }]\n",
    );
    assert!(
        error.contains("tasks.a.dirs[0].guest") && error.contains("must be absolute"),
        "{error}"
    );
}

#[test]
fn syntax_errors_point_at_the_line() {
    let (_, error) = load_error("[tasks.a]\nmodule = \n");
    assert!(error.contains("line 6"), "{error}");
}

#[test]
fn missing_module_is_named() {
    let (_, error) = load_error("[tasks.a]\nmodule = \"nowhere/handler.wasm\"\n");
    assert!(
        error.contains("line 6") && error.contains("key `tasks.a.module`"),
        "{error}"
    );
    assert!(
        error.contains("cannot read module") && error.contains("nowhere/handler.wasm"),
        "{error}"
    );
}

#[test]
fn a_core_module_or_garbage_is_not_a_component() {
    let config = TestConfig::new("[tasks.a]\nmodule = \"core.wasm\"\n");
    std::fs::write(config.dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let error = config
        .load()
        .err()
        .expect("a core module must be refused")
        .to_string();
    assert!(
        error.contains("core WebAssembly module, not a component"),
        "{error}"
    );

    let config = TestConfig::new("[tasks.a]\nmodule = \"junk.wasm\"\n");
    std::fs::write(config.dir.path().join("junk.wasm"), b"#!/bin/sh\necho hi\n").unwrap();
    let error = config
        .load()
        .err()
        .expect("garbage must be refused")
        .to_string();
    assert!(error.contains("not a WebAssembly file"), "{error}");
}

#[test]
fn a_component_of_another_world_names_the_missing_export() {
    let config = TestConfig::new("[tasks.cmd]\nmodule = \"{guests}/not-a-handler.wasm\"\n");
    match config.load() {
        Err(RuntimeError::World {
            task_type, message, ..
        }) => {
            assert_eq!(task_type, "cmd");
            assert!(message.contains("missing export `handle`"), "{message}");
            assert!(message.contains("wasi:cli/run"), "{message}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a command component was accepted as a handler"),
    }
}

#[test]
fn a_missing_granted_directory_is_refused() {
    let (_, error) = load_error(
        "[tasks.a]\nmodule = \"{guests}/misbehave.wasm\"\ndirs = [{ host = \"no-such-dir\", guest = \"/d\" }]\n",
    );
    assert!(
        error.contains("task type a")
            && error.contains("no-such-dir")
            && error.contains("does not exist"),
        "{error}"
    );
}

#[test]
fn compiled_modules_are_cached_across_restarts() {
    let cache = tempfile::tempdir().unwrap();
    let body = format!(
        "[runtime]\ncache_dir = {:?}\n\n[tasks.a]\nmodule = {:?}\n",
        cache.path().display().to_string(),
        wasq_tests::example("noop").display().to_string()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasq.toml");
    std::fs::write(&path, body).unwrap();
    let load = || {
        let config = wasq::config::Config::load(&path).unwrap();
        let runtime = wasq::runtime::Runtime::load(&config).unwrap();
        runtime.task_types().next().unwrap().cache
    };
    assert_eq!(load(), CacheStatus::Compiled);
    assert_eq!(load(), CacheStatus::Hit);
    // A corrupt entry is recompiled, not trusted.
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    assert_eq!(load(), CacheStatus::Compiled);
    assert_eq!(load(), CacheStatus::Hit);
}
