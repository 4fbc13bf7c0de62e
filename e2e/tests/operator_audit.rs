//! Fail closed: when the operator cannot append to its audit log, an object does not change
//! phase, and its status says why (condition AuditUnavailable) until the log is back. And the
//! head of the audit chain is checkpointed outside the database, in a ConfigMap only the
//! operator writes, which `sb-operator audit verify` checks the store against.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use sb_core::crd::{ReadPhase, SecretReadRequest};
use sb_core::seal::KeyPair;
use sb_e2e::operator::OPERATOR_NAMESPACE;
use sb_e2e::scenario::Scenario;
use sb_operator::audit::{CHECKPOINT_CONFIGMAP, Checkpoint};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

fn request_yaml(name: &str) -> String {
    common::read_request_yaml(name, "Moving the audit head.", &KeyPair::generate().public.to_base64())
}

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

    let request = common::read_request_yaml(
        "unaudited",
        "Checking that nothing happens without an audit record.",
        &KeyPair::generate().public.to_base64(),
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

/// Removes the last audit event and fixes up the head record, as the owner of the SQLite file
/// can.
const CUT_THE_TAIL: &str = "import sqlite3, sys\n\
c = sqlite3.connect(sys.argv[1])\n\
c.execute('DROP TRIGGER audit_events_no_delete')\n\
(last,) = c.execute('SELECT max(seq) FROM audit_events').fetchone()\n\
c.execute('DELETE FROM audit_events WHERE seq = ?', (last,))\n\
(h,) = c.execute('SELECT hash FROM audit_events WHERE seq = ?', (last - 1,)).fetchone()\n\
c.execute('UPDATE audit_head SET last_seq = ?, last_hash = ? WHERE id = 1', (last - 1, h))\n\
c.commit()\n";

/// The last event in the operator's store: (seq, MAC).
async fn store_head(s: &Scenario) -> (i64, String) {
    let (pool, _) = sb_operator::store::open_pool(s.operator.database_path().to_str().unwrap(), 1).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let events = sb_operator::audit::list(&mut conn, 0, 1_000_000).await.unwrap();
    drop(conn);
    pool.close().await;
    let last = events.last().expect("the operator audited something");
    (last.seq, last.hash.clone())
}

fn checkpoint_of(configmap: &ConfigMap) -> Option<Checkpoint> {
    Checkpoint::from_configmap(configmap).ok()
}

/// One unlabelled series of the operator's `/metrics`.
async fn metric(s: &Scenario, series: &str) -> Option<f64> {
    let metrics = reqwest::get(format!("{}/metrics", s.operator.metrics_url())).await.ok()?.text().await.ok()?;
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `series` until `ok` holds of it (a minute at most); the last value seen.
async fn wait_metric(s: &Scenario, series: &str, ok: impl Fn(f64) -> bool) -> Option<f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let value = metric(s, series).await;
        if value.is_some_and(&ok) || std::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With an hour between checkpoints, a request's transitions stay uncheckpointed, and
/// `sb_operator_audit_checkpoint_pending_events` says how far: exactly the seqs between the
/// ConfigMap's checkpoint and the store's head.
#[tokio::test(flavor = "multi_thread")]
async fn the_events_no_checkpoint_covers_yet_are_counted() {
    let s = Scenario::start_with(&["--audit-checkpoint-interval", "1h"]).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(s.admin.clone(), OPERATOR_NAMESPACE);
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request_yaml("uncheckpointed"))).await.expect_ok("alice's request");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    s.wait(&api, "uncheckpointed", "phase Pending", |r| {
        r.status.as_ref().is_some_and(|st| st.phase == Some(ReadPhase::Pending))
    })
    .await
    .unwrap();
    // The start-up round checkpointed the chain as it was then (nothing, when it was empty).
    let checkpointed = || async {
        configmaps.get_opt(CHECKPOINT_CONFIGMAP).await.unwrap().and_then(|cm| checkpoint_of(&cm)).map_or(0, |c| c.seq)
    };
    let at = checkpointed().await;
    let (head, _) = store_head(&s).await;
    assert!(head > at, "the request's transitions were audited after the checkpoint at {at}");
    let pending = wait_metric(&s, "sb_operator_audit_checkpoint_pending_events", |v| v == (head - at) as f64).await;
    assert_eq!(pending, Some((head - at) as f64), "head {head}, checkpoint {at}\n{}", s.operator.logs());
    assert_eq!(checkpointed().await, at, "no checkpoint was due within the hour");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_checkpoints_the_audit_head_in_its_namespace_and_verify_reads_it() {
    // A checkpoint after every event, so each transition moves it.
    let mut s = Scenario::start_with(&["--audit-checkpoint-events", "1"]).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(s.admin.clone(), OPERATOR_NAMESPACE);
    let first = s
        .wait(&configmaps, CHECKPOINT_CONFIGMAP, "the first audit checkpoint", |cm| checkpoint_of(cm).is_some())
        .await
        .unwrap();
    let first = checkpoint_of(&first).unwrap();
    assert!(first.seq >= 1, "{first:?}");

    // A request's transitions move it forward (the operator's ServiceAccount may update it).
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request_yaml("checkpointed"))).await.expect_ok("alice's request");
    s.wait(&configmaps, CHECKPOINT_CONFIGMAP, "a later audit checkpoint", |cm| {
        checkpoint_of(cm).is_some_and(|c| c.seq > first.seq)
    })
    .await
    .unwrap();
    let metrics = reqwest::get(format!("{}/metrics", s.operator.metrics_url())).await.unwrap().text().await.unwrap();
    let writes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sb_operator_audit_checkpoint_writes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(writes.is_some_and(|w| w >= 2.0), "checkpoints were written: {metrics}");
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("sb_operator_audit_checkpoint_failures_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(failures.is_empty(), "no checkpoint failed: {failures:?}\n{}", s.operator.logs());
    // With a checkpoint after every event, none stays uncovered once the request is settled.
    let pending = wait_metric(&s, "sb_operator_audit_checkpoint_pending_events", |v| v == 0.0).await;
    assert_eq!(pending, Some(0.0), "{}", s.operator.logs());

    // A clean shutdown leaves the checkpoint at the store's last event.
    assert!(s.operator.terminate(Duration::from_secs(30)).unwrap(), "clean exit\n{}", s.operator.logs());
    let (seq, mac) = store_head(&s).await;
    let last = checkpoint_of(&configmaps.get(CHECKPOINT_CONFIGMAP).await.unwrap()).unwrap();
    assert_eq!((last.seq, last.mac.as_str()), (seq, mac.as_str()), "{}", s.operator.logs());

    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("(seq {seq}) matches")), "{text}");

    // The owner of the database removes the last event and fixes up the head record.
    let cut = Command::new("python3").args(["-c", CUT_THE_TAIL]).arg(s.operator.database_path()).status().unwrap();
    assert!(cut.success());
    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 6, "the removed tail is found: {text}");
    assert!(
        text.contains(&format!("ends at seq {}", seq - 1)) && text.contains(&format!("records seq {seq}")),
        "{text}"
    );

    // Started again on the cut store, the operator keeps the checkpoint (it does not move it
    // back over the evidence), warns and counts why.
    s.operator.restart().await.unwrap();
    s.operator.wait_for_log("audit checkpoint not written", Duration::from_secs(60)).await.unwrap();
    let kept = checkpoint_of(&configmaps.get(CHECKPOINT_CONFIGMAP).await.unwrap()).unwrap();
    assert_eq!(kept, last, "{}", s.operator.logs());
    let metrics = reqwest::get(format!("{}/metrics", s.operator.metrics_url())).await.unwrap().text().await.unwrap();
    let refused = metrics.lines().any(|l| {
        (l.starts_with("sb_operator_audit_checkpoint_failures_total{reason=\"behind\"}")
            || l.starts_with("sb_operator_audit_checkpoint_failures_total{reason=\"diverged\"}"))
            && !l.ends_with(" 0")
    });
    assert!(refused, "the refusal is counted: {metrics}");
}
