use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match sb_operator::cli::run(sb_operator::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // As `fn main() -> anyhow::Result<()>` prints it, with exit code 1.
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}
