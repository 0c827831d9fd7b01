//! Start-up validation: bad configs and bad modules are refused with errors
//! that name the file, line and key, or the module and what it lacks.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

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
fn a_module_whose_static_data_outgrows_the_sandbox_says_what_to_raise() {
    let small = "[tasks.big]\nmodule = \"{guests}/big_static.wasm\"\nmemory = \"16MiB\"\n";
    let error = TestConfig::new(small)
        .load()
        .err()
        .expect("a module larger than its sandbox must be refused")
        .to_string();
    assert!(
        error.contains("tasks.big.memory") && error.contains("raise `memory`"),
        "{error}"
    );
    // With room for it, the same module loads and runs.
    let roomy = "[tasks.big]\nmodule = \"{guests}/big_static.wasm\"\nmemory = \"96MiB\"\n";
    TestConfig::new(roomy).runtime();
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
        runtime.task_types().into_iter().next().unwrap().cache
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

/// A config with one task type per `(name, module)` and `cache` as the
/// cache dir (none: no `[runtime]` section at all).
fn write_config(dir: &Path, cache: Option<&Path>, tasks: &[(&str, PathBuf)]) -> PathBuf {
    let mut body = String::new();
    if let Some(cache) = cache {
        body += &format!(
            "[runtime]\ncache_dir = {:?}\n\n",
            cache.display().to_string()
        );
    }
    for (name, module) in tasks {
        body += &format!(
            "[tasks.{name}]\nmodule = {:?}\n",
            module.display().to_string()
        );
    }
    let path = dir.join("wasq.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// How each task type of the config at `path` was loaded, by name.
fn cache_statuses(path: &Path) -> Vec<(String, CacheStatus)> {
    let config = wasq::config::Config::load(path).unwrap();
    let runtime = wasq::runtime::Runtime::load(&config).unwrap();
    runtime
        .task_types()
        .into_iter()
        .map(|t| (t.name.clone(), t.cache))
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn a_cache_dir_others_can_write_is_not_loaded_from() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Compile `noop` into the (private) cache and note its entry.
    let noop = [("a", wasq_tests::example("noop"))];
    let path = write_config(dir.path(), Some(cache.path()), &noop);
    assert_eq!(cache_statuses(&path), [("a".into(), CacheStatus::Compiled)]);
    let [noop_entry] = <[PathBuf; 1]>::try_from(cache_files(cache.path())).unwrap();
    // Then another handler; its entry is valid compiled code too.
    let other = [("a", wasq_tests::guest("misbehave"))];
    let other_path = write_config(dir.path(), Some(cache.path()), &other);
    assert_eq!(
        cache_statuses(&other_path),
        [("a".into(), CacheStatus::Compiled)]
    );
    let other_entry = cache_files(cache.path())
        .into_iter()
        .find(|f| *f != noop_entry)
        .unwrap();
    // What someone who can write the directory could do: put other code
    // under the name of noop's entry.
    std::fs::copy(&other_entry, &noop_entry).unwrap();
    chmod(&noop_entry, 0o600);
    let planted = std::fs::read(&noop_entry).unwrap();
    let path = write_config(dir.path(), Some(cache.path()), &noop);
    for mode in [0o777, 0o775, 0o757] {
        chmod(cache.path(), mode);
        // The directory is refused: compiled with the cache off, and the
        // planted file is neither loaded nor replaced.
        assert_eq!(
            cache_statuses(&path),
            [("a".into(), CacheStatus::Disabled)],
            "mode {mode:o}"
        );
        assert_eq!(std::fs::read(&noop_entry).unwrap(), planted);
    }
    chmod(cache.path(), 0o700);
    // A private directory, but an entry others may write: not loaded
    // either, compiled again and replaced.
    chmod(&noop_entry, 0o666);
    assert_eq!(cache_statuses(&path), [("a".into(), CacheStatus::Compiled)]);
    assert_ne!(std::fs::read(&noop_entry).unwrap(), planted);
    let mode = std::fs::metadata(&noop_entry).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "entries are written private: {mode:o}");
    assert_eq!(cache_statuses(&path), [("a".into(), CacheStatus::Hit)]);
}

#[test]
fn a_missing_cache_dir_is_created_private() {
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("new").join("cache");
    let tasks = [("a", wasq_tests::example("noop"))];
    let path = write_config(parent.path(), Some(&cache), &tasks);
    assert_eq!(cache_statuses(&path), [("a".into(), CacheStatus::Compiled)]);
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(cache_statuses(&path), [("a".into(), CacheStatus::Hit)]);
}

#[test]
fn without_a_cache_dir_home_or_xdg_cache_home_the_cache_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = [("a", wasq_tests::example("noop"))];
    let path = write_config(dir.path(), None, &tasks);
    let path = path.display().to_string();
    // As under systemd: no HOME, no XDG_CACHE_HOME.
    let check = |json: bool| {
        let mut command = std::process::Command::new(wasq_tests::wasq_bin());
        command.env_clear().args(["check", "--config", &path]);
        if json {
            command.arg("--json");
        }
        let out = command.output().expect("running wasq check");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        (stdout, stderr)
    };
    let (out, err) = check(false);
    assert!(out.contains("compiled-code cache: off"), "{out}");
    assert!(out.contains("compiled (cache off)"), "{out}");
    assert!(err.contains("compiled-component cache is off"), "{err}");
    let (out, _) = check(true);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["cache"], "off", "{out}");
    assert!(report["cache_dir"].is_null(), "{out}");
    assert_eq!(report["task_types"][0]["cache"], "disabled", "{out}");
}
