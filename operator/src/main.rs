use clap::Parser;

fn main() -> anyhow::Result<()> {
    sb_operator::cli::run(sb_operator::cli::Cli::parse())
}
