//! `sb-agent`: runs inside a target boundary and executes approved jobs.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = sb_agent::cli::Cli::parse();
    match sb_agent::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line; no error carries a value.
            eprintln!("sb-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
