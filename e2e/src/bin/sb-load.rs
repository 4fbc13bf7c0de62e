//! `sb-load`: concurrent reads and patches through the real operator and agent on a real
//! Kubernetes control plane, every request followed to its final phase and checked (see
//! `sb_e2e::load`). `make load` runs the long version; `e2e/tests/load_short.rs` the short one.
//!
//!     cargo run -p sb-e2e --bin sb-load -- --readers 1500 --patchers 500
//!     cargo run -p sb-e2e --bin sb-load -- --readers 1500 --patchers 500 --replicas 2 --kill-one-halfway

use sb_e2e::load::{LoadOptions, run};
use std::process::ExitCode;

const USAGE: &str = "usage: sb-load [--readers N] [--patchers M] [--replicas R [--kill-one-halfway]] [--database sqlite|postgres] [--concurrency C] [--logs DIR]

Starts a local Kubernetes control plane, the operator (R replicas; several run on PostgreSQL
with leader election behind one Service) and the agent (OpenBao, moto and PostgreSQL must be
up: scripts/services.sh up), creates N SecretReadRequests and M SecretPatches at once,
approves each as bob, reveals each read as alice, waits until every one is final and checks
that none was lost or duplicated. Prints p50/p99/max latencies and throughput; exits 1 when a
check fails. --logs DIR keeps every process's full logs there. Defaults: 150 readers, 50 patchers, 1 replica, SQLite, 32 calls in flight.";

fn parse(args: &[String]) -> Result<LoadOptions, String> {
    let mut options = LoadOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |text: &String| text.parse::<usize>().map_err(|_| format!("{flag} takes a number, not {text:?}"));
        match flag.as_str() {
            "--readers" => options.readers = number(value()?)?,
            "--patchers" => options.patchers = number(value()?)?,
            "--replicas" => options.replicas = number(value()?)?,
            "--concurrency" => options.concurrency = number(value()?)?,
            "--kill-one-halfway" => options.kill_one_halfway = true,
            "--logs" => options.logs_dir = Some(value()?.into()),
            "--database" => match value()?.as_str() {
                "postgres" | "postgresql" => options.postgres = true,
                "sqlite" => options.postgres = false,
                other => return Err(format!("--database is sqlite or postgres, not {other:?}")),
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.replicas == 0 {
        return Err("--replicas is at least 1".into());
    }
    if options.replicas > 1 && !options.postgres {
        // Several replicas share one store, which only PostgreSQL can be.
        options.postgres = true;
    }
    Ok(options)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("sb-load: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    eprintln!("sb-load: starting ({options:?})");
    match run(options).await {
        Ok(report) => {
            println!("{report}");
            if report.problems().is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("sb-load failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
