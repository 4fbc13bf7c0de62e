//! Fail closed: when the operator cannot append to its audit log, an object does not change
//! phase, and its status says why (condition AuditUnavailable) until the log is back.

use kube::Api;
use sb_core::crd::{ReadPhase, SecretReadRequest};
use sb_core::seal::KeyPair;
use sb_e2e::scenario::Scenario;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Holds SQLite's write lock on the operator's database from another process, the way a
/// stuck writer or a full disk would stop appends.
const HOLD_WRITE_LOCK: &str = "import sqlite3, sys, time\n\
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
c.execute('BEGIN EXCLUSIVE')\n\
print('locked', flush=True)\n\
time.sleep(300)\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_request_does_not_move_while_the_audit_log_is_unavailable() {
    let s = Scenario::start().await.unwrap();
    let mut locker = Command::new("python3")
        .args(["-c", HOLD_WRITE_LOCK])
        .arg(s.operator.database_path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (with its sqlite3 module) is needed to hold the database lock");
    let mut line = String::new();
    BufReader::new(locker.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");

    let request = format!(
        r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: SecretReadRequest
metadata: {{name: unaudited, namespace: team-a}}
spec:
  target: {{agent: edge, provider: vault, ref: team-a/db}}
  justification: Checking that nothing happens without an audit record.
  requester: alice
  recipient: "{}"
"#,
        KeyPair::generate().public.to_base64()
    );
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request)).await.expect_ok("alice's request");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let stuck = s
        .wait(&api, "unaudited", "condition AuditUnavailable", |r| {
            r.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "AuditUnavailable"))
        })
        .await;
    let _ = locker.kill();
    let _ = locker.wait();
    let status = stuck.unwrap().status.unwrap();
    assert_eq!(status.phase, None, "no transition without its audit record: {status:?}");

    let pending = s
        .wait(&api, "unaudited", "phase Pending once the log is back", |r| {
            r.status.as_ref().is_some_and(|st| {
                st.phase == Some(ReadPhase::Pending) && !st.conditions.iter().any(|c| c.type_ == "AuditUnavailable")
            })
        })
        .await
        .unwrap();
    assert_eq!(pending.status.unwrap().approval_summary.as_deref(), Some("0/1"));
}
