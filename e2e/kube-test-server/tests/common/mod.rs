//! Shared helpers: a server with test users, the real kubectl binary, fixtures.
#![allow(dead_code)]

use kube_test_server::{Config, TestServer};
use std::path::{Path, PathBuf};
use std::process::Output;

pub const WIDGET_CRD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/widget-crd.yaml");
pub const GADGET_CRD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gadget-crd.yaml");

/// The product CRDs generated from sb-core (`/work/main/crds` in the repo).
pub fn product_crds() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    out.sort();
    out
}

/// A server with alice (team-a), bob, and the operator's service account.
pub async fn server() -> TestServer {
    let config = Config::default()
        .with_user("alice", &["team-a"])
        .with_user("bob", &[])
        .with_user("system:serviceaccount:sb-system:operator", &["system:serviceaccounts"]);
    TestServer::start(config).await.expect("server starts")
}

pub async fn server_with_widgets() -> TestServer {
    let s = server().await;
    s.apply_yaml_as_admin(WIDGET_CRD).await.expect("widget CRD applies");
    s
}

/// The real kubectl; the suite fails (never skips) without it.
pub fn kubectl_path() -> PathBuf {
    let out = std::process::Command::new("which").arg("kubectl").output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!(
            "kubectl not found on PATH: these conformance tests drive the real kubectl binary (v1.32); install it"
        ),
    }
}

/// Runs kubectl as `user` against `server` (own kubeconfig and cache dir) with stdin.
pub fn kubectl_stdin(server: &TestServer, user: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let kubeconfig = server.kubeconfig_for(user).expect("kubeconfig");
    let cache = kubeconfig.with_extension("cache");
    let mut child = std::process::Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin written");
    child.wait_with_output().expect("kubectl finishes")
}

pub fn kubectl(server: &TestServer, user: &str, args: &[&str]) -> Output {
    kubectl_stdin(server, user, args, "")
}

/// Runs kubectl and asserts success, returning stdout.
pub fn kubectl_ok(server: &TestServer, user: &str, args: &[&str]) -> String {
    let out = kubectl(server, user, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs kubectl expecting failure, returning stderr.
pub fn kubectl_err(server: &TestServer, user: &str, args: &[&str]) -> String {
    let out = kubectl(server, user, args);
    assert!(!out.status.success(), "kubectl {args:?} unexpectedly succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `kube::Error::Api` status code and reason of a failed call.
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}
