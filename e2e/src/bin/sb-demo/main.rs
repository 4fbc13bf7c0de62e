//! `make demo`: the Secrets Bridge flows as a tutorial, on this machine, with nothing but the
//! repository. Starts a real Kubernetes control plane (kube-apiserver, etcd, controller-manager,
//! built by scripts/kube.sh) with the operator chart installed by helm, the operator (SQLite store, local key
//! file) and the real sb-agent against OpenBao dev and moto, then walks through
//! read → approve → reveal, a patch that keeps untouched keys (from the plugin and as a
//! committed manifest) and a discovery, printing every kubectl command and its output.
//! Everything it started stops when it ends.
//!
//! `sb-demo --print-commands` starts nothing and prints the same walkthrough as commands to
//! run against a real cluster (KUBECONFIG) where Secrets Bridge is installed.

mod commands;
mod walkthrough;

use sb_e2e::stack::{Stack, StackOptions, random_suffix};
use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: sb-demo [--print-commands | --seal-example]\n\n{}", HELP);
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--print-commands") {
        print!("{}", commands::SCRIPT);
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--seal-example") {
        match sb_e2e::stack::example::secretpatch_yaml() {
            Ok(yaml) => print!("{yaml}"),
            Err(e) => {
                eprintln!("sb-demo: {e:#}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Some(other) = args.first() {
        eprintln!("sb-demo: unknown argument {other:?} (try --help)");
        return ExitCode::from(2);
    }
    if std::env::var_os("KUBECONFIG").is_some() {
        println!(
            "Note: KUBECONFIG is set, but this demo never touches that cluster: it starts its own local\n\
             Kubernetes control plane (kube-apiserver + etcd on loopback). For the same walkthrough on a real cluster with Secrets Bridge\n\
             installed, run `make demo-commands`.\n"
        );
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nsb-demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "Starts a local Kubernetes control plane (kube-apiserver, etcd, controller-manager), sb-operator and sb-agent (OpenBao dev and moto must be
up: scripts/services.sh up bao moto), walks through the read, patch and discovery flows with the
real kubectl and kubectl-sb, prints each command and its output, and stops what it started.
With --print-commands it starts nothing and prints the commands to use on a real cluster.";

async fn run() -> anyhow::Result<()> {
    println!("Starting: a Kubernetes control plane (kube-apiserver v1.34 + etcd; users alice, bob, carol,");
    println!("admin), `helm install` of the operator chart (CRDs, roles, admission policies), sb-operator as");
    println!("the chart's ServiceAccount (SQLite store, local key file), and sb-agent");
    println!("serving OpenBao dev (provider `vault`) and moto (provider `aws`) as AgentRegistration `edge`;");
    println!("ArgoCD's Application CRD (v3.6.1) for GitOps observation, the operator run with --gitops-observation...");
    let options =
        StackOptions { prefix: Some(format!("demo-{}/", random_suffix())), gitops: true, ..Default::default() };
    let mut stack = Stack::start(options).await?;
    stack.narrate = true;
    let outcome = walkthrough::run(&stack).await;
    if let Err(e) = &outcome {
        eprintln!("{e:#}\n{}", stack.logs());
    }
    println!("\nStopping the agent, the operator and the Kubernetes control plane.");
    stack.stop().await?;
    outcome?;
    println!("Done. Every command above works the same against a real cluster: `make demo-commands`.");
    Ok(())
}
