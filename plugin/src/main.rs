//! `kubectl-sb`: the kubectl plugin developers and approvers use.

use clap::Parser;

/// Secrets Bridge kubectl plugin: request, approve and reveal secret reads and patches.
#[derive(Parser, Debug)]
#[command(name = "kubectl-sb", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("kubectl-sb: the commands are not built yet (see the plugin issue)")
}
