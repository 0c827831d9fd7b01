//! `wasq bench`: placeholder until the benchmark lands.

use std::process::ExitCode;

/// Arguments of `wasq bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
