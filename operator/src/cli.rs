//! Command-line interface of `sb-operator`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Secrets Bridge operator: the control plane that decides, records and relays secret
/// requests. It never holds a plaintext value or a provider credential.
#[derive(Parser, Debug)]
#[command(name = "sb-operator", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the CustomResourceDefinitions generated from the Rust types, one YAML file per
    /// kind.
    ///
    /// Example: sb-operator crdgen --out crds
    Crdgen {
        /// Directory to write into.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crdgen { out } => {
            for path in crate::crdgen::write_all(&out)? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}
