//! Names the build for `wasq --version`: emits `WASQ_WIT_PACKAGE`, the
//! `package` line of `wit/wasq.wit` (e.g. `wasq:task@0.1.0`), and
//! `WASQ_COMMIT`, the short hash of the checked-out commit.
//!
//! Cheap and never fatal: outside a git checkout of this workspace (a
//! source archive, a container build without `.git`) or without git, the
//! commit is `unknown`; `WASQ_BUILD_COMMIT` in the build's environment
//! names it instead. The script reruns only when the WIT file, that
//! variable, or the checked-out commit (`HEAD`, the branch it points to,
//! packed refs) changes, not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest_dir.parent().unwrap_or(&manifest_dir).to_owned();

    let wit = workspace.join("wit").join("wasq.wit");
    println!("cargo::rerun-if-changed={}", wit.display());
    println!("cargo::rustc-env=WASQ_WIT_PACKAGE={}", wit_package(&wit));

    println!("cargo::rerun-if-env-changed=WASQ_BUILD_COMMIT");
    let commit = match std::env::var("WASQ_BUILD_COMMIT") {
        Ok(named) if !named.trim().is_empty() => named.trim().to_owned(),
        _ => git_commit(&workspace).unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo::rustc-env=WASQ_COMMIT={commit}");
}

/// `wasq:task@X.Y.Z` from the WIT file's `package wasq:task@X.Y.Z;` line.
fn wit_package(wit: &Path) -> String {
    std::fs::read_to_string(wit)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let name = line.trim().strip_prefix("package ")?;
                Some(name.trim().trim_end_matches(';').trim().to_owned())
            })
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "wasq:task@unknown".to_owned())
}

/// The short hash of HEAD when `workspace` is the top of a git checkout,
/// after telling cargo which files move when HEAD does.
fn git_commit(workspace: &Path) -> Option<String> {
    // Not a checkout of its own (say, sources unpacked inside another
    // project's repository): that repository's commit would mislead.
    let top = git(workspace, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != workspace.canonicalize().ok()? {
        return None;
    }
    let path =
        |name: &str| Some(workspace.join(git(workspace, &["rev-parse", "--git-path", name])?));
    let mut watched = Vec::new();
    // A checkout rewrites HEAD; packed refs change with `git gc` or `git
    // pack-refs`. A path that does not exist would make cargo rerun every
    // time.
    watched.extend(path("HEAD").filter(|p| p.exists()));
    watched.extend(path("packed-refs").filter(|p| p.exists()));
    // On a branch, a commit rewrites the branch's ref, not HEAD. A branch
    // kept in packed-refs becomes a file in its directory at the next
    // commit: watch the directory then.
    if let Some(branch) = git(workspace, &["symbolic-ref", "-q", "HEAD"])
        && let Some(file) = path(&branch)
    {
        if file.exists() {
            watched.push(file);
        } else if let Some(dir) = file.parent().filter(|d| d.is_dir()) {
            watched.push(dir.to_owned());
        }
    }
    for path in watched {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    git(workspace, &["rev-parse", "--short", "HEAD"])
}

/// git's trimmed output, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
