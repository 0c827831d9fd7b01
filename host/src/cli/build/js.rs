//! JavaScript handlers, with ComponentizeJS: the handler's module and the
//! `wasq-guest` SDK (both embedded in this binary: the SDK and the node
//! script that drives ComponentizeJS, from guest-sdk/js) are snapshotted with
//! the SpiderMonkey engine into one component. ComponentizeJS evaluates the
//! module's top level at build time, so it costs nothing per task.
//!
//! ComponentizeJS runs under Node.js from a node_modules of the project's:
//! `scripts/setup` installs it pinned (guest-sdk/js/tools/package-lock.json)
//! into `.tools/js`. Only its plain mode is used: its AOT mode downloads a
//! tool at first use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::{TempDir, WORLD, run_tool};

/// The ComponentizeJS release `scripts/setup` installs.
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The node script that calls `componentize`.
const BUILD_SCRIPT: &str = include_str!("../../../../guest-sdk/js/build.mjs");
/// The SDK module `wasq-guest`.
const SDK: &str = include_str!("../../../../guest-sdk/js/index.js");

/// The module to build: the file itself, or a directory's package.json
/// `main` (default `index.js`).
fn entry(source: &Path) -> anyhow::Result<PathBuf> {
    if source.is_file() {
        return Ok(source.to_owned());
    }
    let manifest = source.join("package.json");
    let main = match std::fs::read_to_string(&manifest) {
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("{}: not JSON", manifest.display()))?
            .get("main")
            .and_then(|m| m.as_str())
            .unwrap_or("index.js")
            .to_owned(),
        Err(_) => "index.js".to_owned(),
    };
    let path = source.join(&main);
    if !path.is_file() {
        bail!("{}: no such handler module", path.display());
    }
    Ok(path)
}

pub fn build(source: &Path, out: &Path, wit: &Path) -> anyhow::Result<()> {
    let module = std::path::absolute(entry(source)?)?;
    let tools = find_tools(module.parent().unwrap_or(Path::new(".")))?;
    let node = find_node()?;
    let work = TempDir::new("js")?;
    let script = work.path().join("build.mjs");
    std::fs::write(&script, BUILD_SCRIPT)?;
    std::fs::write(work.path().join("index.js"), SDK)?;
    let out = std::path::absolute(out)?;
    run_tool(
        Command::new(&node)
            .arg(&script)
            .arg(&module)
            .arg(std::path::absolute(wit)?)
            .arg(WORLD)
            .arg(&out)
            .env("WASQ_JS_TOOLS", &tools)
            .env("WASQ_JS_QUIET", "1")
            .current_dir(work.path()),
        "node (ComponentizeJS)",
    )
}

/// The WASI 0.2.12 WIT packages (wasi:http and what it uses) that come with
/// the JavaScript toolchain (jco's built-in WIT), if it is installed.
pub fn wasi_wit(handler_dir: &Path) -> Option<PathBuf> {
    let dir = find_tools(handler_dir)
        .ok()?
        .join("node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12");
    dir.join("wasi-http").is_dir().then_some(dir)
}

fn componentize_js_in(dir: &Path) -> bool {
    dir.join("node_modules/@bytecodealliance/componentize-js/package.json")
        .is_file()
}

/// ComponentizeJS's node_modules: in `$WASQ_TOOLS/js`, else in a
/// `.tools/js` found walking up from the current directory or from the
/// handler's.
fn find_tools(handler_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(tools) = std::env::var_os("WASQ_TOOLS") {
        let dir = Path::new(&tools).join("js");
        if componentize_js_in(&dir) {
            return Ok(dir);
        }
    }
    let starts = [
        std::env::current_dir().ok(),
        std::path::absolute(handler_dir).ok(),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let tools = dir.join(".tools/js");
            if componentize_js_in(&tools) {
                return Ok(tools);
            }
        }
    }
    bail!(
        "ComponentizeJS is not installed: run scripts/setup in a wasq checkout (it installs \
         @bytecodealliance/componentize-js@{COMPONENTIZE_JS} into .tools/js), or `npm install \
         --prefix \"$WASQ_TOOLS/js\" @bytecodealliance/componentize-js@{COMPONENTIZE_JS}`"
    )
}

/// `node` on the PATH.
fn find_node() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let exe = dir.join("node");
            if exe.is_file() {
                return Ok(exe);
            }
        }
    }
    bail!("node (Node.js 20 or newer) is not on the PATH: run scripts/setup, or install nodejs")
}
