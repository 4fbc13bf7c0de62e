//! The binary: `kube-test-server --listen 127.0.0.1:0 --kubeconfig-out F --users users.csv`.

mod common;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the server even when an assertion fails first.
struct Reap(std::process::Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_prints_its_address_and_writes_a_kubeconfig_for_the_token_users() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    std::fs::write(&users, "tok-alice,alice,uid-1,\"team-a,devs\"\ntok-bob,bob,uid-2\n").unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-test-server"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .arg("--users")
        .arg(&users)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _reap = Reap(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line.trim().parse().unwrap_or_else(|_| panic!("address on stdout, got {line:?}"));
    assert!(addr.port() > 0);
    let run = |ctx: &str, args: &[&str]| {
        Command::new(common::kubectl_path())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--context", ctx, "--cache-dir"])
            .arg(dir.path().join("cache"))
            .args(args)
            .output()
            .unwrap()
    };
    let who = run("alice", &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"]);
    let text = String::from_utf8_lossy(&who.stdout);
    assert!(text.starts_with("alice ") && text.contains("team-a") && text.contains("devs"), "{text}");
    let ns = run("admin", &["get", "namespaces", "-o", "name"]);
    let text = String::from_utf8_lossy(&ns.stdout);
    assert!(text.contains("namespace/default") && text.contains("namespace/kube-system"), "{text}");
}
