//! `sb-agent`: runs inside a target boundary and executes approved jobs.

use clap::Parser;

/// Secrets Bridge agent: claims approved jobs from the operator over outbound HTTPS and
/// executes them against the secret providers of its own boundary.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("sb-agent: the job loop is not built yet (see the agent issue)")
}
