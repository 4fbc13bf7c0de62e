//! `kube-test-server --listen 127.0.0.1:0 --kubeconfig-out F --users users.csv`
use clap::Parser;
use kube_test_server::{Config, TestServer};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "A Kubernetes API server for tests (not a conformant cluster)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Where to write a kubeconfig with one context per user (admin current).
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Static token file: `token,user,uid,"group1,group2"` per line.
    #[arg(long)]
    users: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        // Logs go to stderr: stdout carries only the bound address, for scripts.
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = Config { listen: args.listen, ..Config::default() };
    if let Some(u) = &args.users {
        config = config.with_token_file(u)?;
    }
    let server = TestServer::start(config).await?;
    if let Some(out) = &args.kubeconfig_out {
        server.write_kubeconfig_all(out)?;
    }
    println!("{}", server.addr());
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}
