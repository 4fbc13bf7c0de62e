//! `kubectl-sb`: the kubectl plugin developers and approvers use. Installed also as
//! `kubectl-approve`, it behaves as `kubectl sb approve` (so `kubectl approve srr/x` works).

use clap::Parser;
use kubectl_sb::cli::{Cli, Command};
use kubectl_sb::context::Ctx;
use kubectl_sb::{commands, completion, error::PluginError};
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse_from(arguments(std::env::args_os().collect()));
    // Completion needs no cluster, so no kubeconfig is read for it.
    match &cli.command {
        Command::Completion(args) => {
            completion::write_script(args.shell, &mut std::io::stdout().lock());
            return ExitCode::SUCCESS;
        }
        Command::Complete { words } => {
            let _ = completion::write_candidates(words, &mut std::io::stdout().lock());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Under the name `kubectl-approve` the binary is `kubectl sb approve`.
fn arguments(mut args: Vec<OsString>) -> Vec<OsString> {
    let invoked_as = args
        .first()
        .and_then(|argv0| std::path::Path::new(argv0).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as == "kubectl-approve" {
        args.insert(1, OsString::from("approve"));
    }
    args
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let ctx = Ctx::connect(&cli.connect).await?;
    match cli.command {
        Command::Read(args) => commands::read::run(&ctx, args).await,
        Command::Approve(args) => commands::approve::run(&ctx, args, sb_core::crd::Decision::Approve).await,
        Command::Deny(args) => commands::approve::run(&ctx, args, sb_core::crd::Decision::Deny).await,
        Command::Confirm(args) => commands::confirm::run(&ctx, args).await,
        Command::Reveal(args) => commands::reveal::run(&ctx, args).await,
        Command::Patch(args) => commands::patch::run(&ctx, args).await,
        Command::Status(args) => commands::status::run(&ctx, args).await,
        Command::Discover(args) => commands::discover::run(&ctx, args).await,
        Command::Catalog(args) => commands::discover::catalog(&ctx, args).await,
        Command::Trust(args) => commands::trust::run(&ctx, args),
        Command::Completion(_) | Command::Complete { .. } => unreachable!("answered before connecting"),
    }
}
