//! Python handlers, with componentize-py: the handler's module, the
//! `wasq_guest` SDK (embedded in this binary) and a small entry module that
//! imports the handler and exports the SDK's `WitWorld` are packed with a
//! CPython interpreter into one component. componentize-py runs the imports
//! at build time (pre-initialisation), so a module's top-level code costs
//! nothing per task.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::{TempDir, WORLD, run_tool};

/// The componentize-py release `scripts/setup` installs and this SDK is
/// built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The SDK package `wasq_guest`, from guest-sdk/python.
const SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../../guest-sdk/python/wasq_guest/__init__.py"),
    ),
    (
        "_errors.py",
        include_str!("../../../../guest-sdk/python/wasq_guest/_errors.py"),
    ),
    (
        "_handler.py",
        include_str!("../../../../guest-sdk/python/wasq_guest/_handler.py"),
    ),
    (
        "_task.py",
        include_str!("../../../../guest-sdk/python/wasq_guest/_task.py"),
    ),
    (
        "http.py",
        include_str!("../../../../guest-sdk/python/wasq_guest/http.py"),
    ),
    (
        "log.py",
        include_str!("../../../../guest-sdk/python/wasq_guest/log.py"),
    ),
];

/// The interface that gives a Python handler outbound HTTP, imported beside
/// the handler's world; its WIT comes with the JavaScript toolchain.
const HTTP_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";
/// wasi:http's types, named `http_types` in the bindings.
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// The entry module's name; the handler's module must not take it.
const ENTRY: &str = "wasq_entry_";

/// The `.py` files of a directory, by module name, sorted.
pub fn modules_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if !path.is_file() || path.extension().is_none_or(|e| e != "py") {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            modules.push(stem.to_owned());
        }
    }
    modules.sort();
    Ok(modules)
}

/// The directory to put on the module path and the handler's module name.
fn handler_module(source: &Path) -> anyhow::Result<(PathBuf, String)> {
    if source.is_file() {
        let dir = match source.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let module = source
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the handler file's name is not UTF-8")?;
        return Ok((dir, module.to_owned()));
    }
    if source.join("app.py").is_file() {
        return Ok((source.to_owned(), "app".to_owned()));
    }
    match modules_in(source)?.as_slice() {
        [one] => Ok((source.to_owned(), one.clone())),
        [] => bail!("{}: no app.py or other .py file", source.display()),
        many => bail!(
            "{}: {} .py files and no app.py; name the handler's file: `wasq build {}/<file>.py`",
            source.display(),
            many.len(),
            source.display()
        ),
    }
}

pub fn build(source: &Path, out: &Path, wit: &Path) -> anyhow::Result<()> {
    let (app_dir, module) = handler_module(source)?;
    let app_dir = std::path::absolute(&app_dir)?;
    if module == ENTRY || module == "wasq_guest" || !is_identifier(&module) {
        bail!("{module}: not a usable module name for a handler; rename the file");
    }
    let tool = find_componentize_py(&app_dir)?;
    let work = TempDir::new("python")?;
    let sdk = work.path().join("sdk");
    let package = sdk.join("wasq_guest");
    std::fs::create_dir_all(&package)?;
    for (name, text) in SDK {
        std::fs::write(package.join(name), text)?;
    }
    let entry = work.path().join("entry");
    std::fs::create_dir(&entry)?;
    // Importing the handler's module registers its @handler; the world's
    // export class is the SDK's.
    std::fs::write(
        entry.join(format!("{ENTRY}.py")),
        format!(
            "import {module}  # noqa: F401\nfrom wasq_guest._handler import WitWorld  # noqa: F401\n"
        ),
    )?;
    let out = std::path::absolute(out)?;
    let mut command = Command::new(&tool);
    match super::js::wasi_wit(&app_dir) {
        Some(wasi) => {
            // A world that includes the handler's and imports wasi:http,
            // for `wasq_guest.http`; both packages name an interface
            // `types`, so each gets its own module name.
            let root = work.path().join("wit-http");
            let deps = root.join("deps");
            copy_dir(wit, &deps.join("wasq-task"))?;
            for entry in std::fs::read_dir(&wasi)? {
                let entry = entry?;
                copy_dir(&entry.path(), &deps.join(entry.file_name()))?;
            }
            std::fs::write(
                root.join("world.wit"),
                format!(
                    "package wasq:python-build;\n\nworld handler-http {{\n  include {WORLD};\n  \
                     import {HTTP_HANDLER};\n}}\n"
                ),
            )?;
            let version = WORLD.rsplit_once('@').map_or("", |(_, v)| v);
            command
                .arg("-d")
                .arg(&root)
                .args(["-w", "handler-http"])
                .arg("--import-interface-name")
                .arg(format!("wasq:task/types@{version}=types"))
                .arg("--import-interface-name")
                .arg(format!("{HTTP_TYPES}=http_types"));
        }
        None => {
            eprintln!(
                "note: no WASI WIT found (it comes with ComponentizeJS in .tools/js: run \
                 scripts/setup); building without wasi:http, so wasq_guest.http raises HttpError"
            );
            command.arg("-d").arg(wit).args(["-w", WORLD]);
        }
    }
    run_tool(
        command
            .arg("componentize")
            .arg("-p")
            .arg(&app_dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-p")
            .arg(&entry)
            .arg(ENTRY)
            .arg("-o")
            .arg(&out)
            .current_dir(work.path())
            // A Python error in the handler's module is the message; the
            // tool's own Rust backtrace only hides it.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE"),
        &format!("{} componentize", tool.display()),
    )
}

/// Copies a directory of WIT files.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// componentize-py: in `$WASQ_TOOLS/python/bin`, else in a `.tools/python/bin`
/// found walking up from the current directory or from the handler's, else
/// on the PATH.
fn find_componentize_py(handler_dir: &Path) -> anyhow::Result<PathBuf> {
    const EXE: &str = "componentize-py";
    if let Some(tools) = std::env::var_os("WASQ_TOOLS") {
        let exe = Path::new(&tools).join("python/bin").join(EXE);
        if exe.is_file() {
            return Ok(exe);
        }
    }
    let starts = [
        std::env::current_dir().ok(),
        std::path::absolute(handler_dir).ok(),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let exe = dir.join(".tools/python/bin").join(EXE);
            if exe.is_file() {
                return Ok(exe);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let exe = dir.join(EXE);
            if exe.is_file() {
                return Ok(exe);
            }
        }
    }
    bail!(
        "componentize-py is not installed: run scripts/setup in a wasq checkout (it installs it \
         into .tools/python), or `pip install componentize-py=={COMPONENTIZE_PY}` (then it must be \
         on the PATH, or in $WASQ_TOOLS/python/bin)"
    )
}
