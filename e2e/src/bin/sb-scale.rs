//! `sb-scale`: the operator at N resident requests on the real API server (see
//! `sb_e2e::scale` and docs/performance.md); `make bench` runs it with the micro-benchmarks.
//!
//!     cargo build --release -p sb-operator -p sb-agent
//!     cargo run --release -p sb-e2e --bin sb-scale -- --requests 10000 [--finished-fraction 0.5] [--database postgres]

use sb_e2e::scale::{ScaleOptions, run, table};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: sb-scale [--requests N | --steps A,B,C] [--finished-fraction F] [--database sqlite|postgres]
                [--concurrency C] [--batch B] [--singles S] [--approvals R[,P]] [--idle-seconds W] [--agents A]
                [--eso N[,M]] [--settle-seconds T] [--rows FILE] [--logs DIR]
       sb-scale --print-table FILE

Starts a local Kubernetes control plane with the operator chart, the release sb-operator and
sb-agent (next to this executable, or SB_OPERATOR_BIN / SB_AGENT_BIN; OpenBao, moto and, for
--database postgres, PostgreSQL must be up: scripts/services.sh up), measures the operator's
memory at 0 and at each size of resident SecretReadRequests (a share F of them denied, the rest
pending), then at the largest size create -> first status, approve -> Delivered / Executed and
the operator's API requests per idle minute with 1 and A agents, each next to a baseline taken
in the same run. --eso also runs External Secrets Operator (scripts/eso.sh builds it) with N,
M ExternalSecrets. Prints the table; --rows FILE appends its rows to FILE (the make bench table).
--print-table FILE prints the rows collected in FILE.

Defaults: --steps 1000,5000,10000 (--requests N means --steps N), F 0.5, SQLite, 48 calls in
flight, a batch of 200 and 20 single creates, 10 reads and 5 patches approved, 30 s idle windows,
50 agents, no ESO, 300 s to settle each size.";

fn parse(args: &[String]) -> Result<(ScaleOptions, Option<std::path::PathBuf>), String> {
    let mut o = ScaleOptions::default();
    let mut rows = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        let number = |text: &str| text.parse::<usize>().map_err(|_| format!("{flag} takes a number, not {text:?}"));
        let list = |text: &str| text.split(',').map(|n| number(n.trim())).collect::<Result<Vec<_>, _>>();
        match flag.as_str() {
            "--requests" => o.steps = vec![number(&value()?)?],
            "--steps" => o.steps = list(&value()?)?,
            "--finished-fraction" => {
                let v = value()?;
                o.finished_fraction = v.parse().map_err(|_| format!("--finished-fraction takes 0..1, not {v:?}"))?;
                if !(0.0..=1.0).contains(&o.finished_fraction) {
                    return Err("--finished-fraction is between 0 and 1".into());
                }
            }
            "--database" => match value()?.as_str() {
                "postgres" | "postgresql" => o.postgres = true,
                "sqlite" => o.postgres = false,
                other => return Err(format!("--database is sqlite or postgres, not {other:?}")),
            },
            "--concurrency" => o.concurrency = number(&value()?)?,
            "--batch" => o.batch = number(&value()?)?,
            "--singles" => o.singles = number(&value()?)?,
            "--approvals" => {
                let v = list(&value()?)?;
                o.approvals = (v[0], v.get(1).copied().unwrap_or(v[0] / 2));
            }
            "--idle-seconds" => o.idle = Duration::from_secs(number(&value()?)? as u64),
            "--agents" => o.agents = number(&value()?)?,
            "--eso" => o.eso = list(&value()?)?,
            "--settle-seconds" => o.settle_timeout = Duration::from_secs(number(&value()?)? as u64),
            "--rows" => rows = Some(value()?.into()),
            "--logs" => o.logs_dir = Some(value()?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    o.steps.sort_unstable();
    o.steps.dedup();
    Ok((o, rows))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let [flag, file] = args.as_slice()
        && flag == "--print-table"
    {
        return match table::read(file.as_ref()) {
            Ok(rows) => {
                print!("{}", table::render(&rows));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sb-scale: reading {file}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (options, rows_file) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("sb-scale: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(rows) => {
            if let Some(file) = rows_file
                && let Err(e) = table::append(&file, &rows)
            {
                eprintln!("sb-scale: writing {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
            print!("{}", table::render(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sb-scale failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
