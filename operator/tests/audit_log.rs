//! The audit trail on SQLite and PostgreSQL: append-only at the database, hash-chained, and
//! `sb-operator audit verify` names the first edited event.

mod common;

use common::{Flavor, TestDb, read_job};
use sb_core::protocol::{CompleteRequest, JobOutcome, JobResult};
use sb_operator::audit::{AuditEvent, AuditObject};
use sb_operator::store::{JobState, StoreOptions};
use std::process::Command;
use std::time::Duration;

fn verify_cli(url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sb-operator"))
        .args(["audit", "verify", "--database-url", url])
        .output()
        .expect("run sb-operator");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn some_history(db: &TestDb) -> sb_operator::store::Store {
    let store = db.store(StoreOptions::default()).await;
    for i in 0..3 {
        store.enqueue_job("user:alice", read_job("edge", &format!("uid-{i}"), 1)).await.unwrap();
    }
    store
        .audit(&AuditEvent::now("user:bob", "request.approve", AuditObject::default()).outcome("Succeeded", ""))
        .await
        .unwrap();
    store
}

async fn the_audit_table_rejects_update_and_delete(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    let update = sqlx::query("UPDATE audit_events SET reason = 'rewritten' WHERE seq = 2").execute(store.pool()).await;
    let delete = sqlx::query("DELETE FROM audit_events WHERE seq = 4").execute(store.pool()).await;
    for result in [update, delete] {
        let err = result.expect_err("the audit table is append-only").to_string();
        assert!(err.contains("append-only"), "{err}");
    }
    if flavor == Flavor::Postgres {
        let truncate = sqlx::query("TRUNCATE audit_events").execute(store.pool()).await;
        assert!(truncate.is_err(), "TRUNCATE is refused too");
    }
    let events = store.audit_events(0, 100).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_ne!(events[1].event.reason, "rewritten");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(events[0].event.actor, "user:alice");
    assert_eq!(events[3].event.action, "request.approve");
    let (ok, text) = verify_cli(&db.url);
    assert!(ok, "{text}");
    assert!(text.contains("4 events"), "{text}");
}

async fn verify_names_the_first_edited_event(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    // Someone with DDL rights disables the guard and edits history.
    let drop = match flavor {
        Flavor::Sqlite => "DROP TRIGGER audit_events_no_update",
        Flavor::Postgres => "DROP TRIGGER audit_events_no_update ON audit_events",
    };
    sqlx::query(drop).execute(store.pool()).await.unwrap();
    sqlx::query("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2").execute(store.pool()).await.unwrap();
    drop_store(store).await;
    let (ok, text) = verify_cli(&db.url);
    assert!(!ok, "verify must fail on an edited log: {text}");
    assert!(text.contains("seq 2 was modified"), "{text}");
}

async fn verify_detects_a_removed_event(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    let drop = match flavor {
        Flavor::Sqlite => "DROP TRIGGER audit_events_no_delete",
        Flavor::Postgres => "DROP TRIGGER audit_events_no_delete ON audit_events",
    };
    sqlx::query(drop).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM audit_events WHERE seq = 3").execute(store.pool()).await.unwrap();
    drop_store(store).await;
    let (ok, text) = verify_cli(&db.url);
    assert!(!ok, "{text}");
    assert!(text.contains("seq 4 follows seq 2"), "{text}");
}

async fn a_failed_audit_append_leaves_the_job_unchanged(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let job = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let claimed = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().remove(0);
    // Make every audit insert fail, as an unavailable or full audit table would.
    let breaker = match flavor {
        Flavor::Sqlite => {
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit down'); END"
        }
        Flavor::Postgres => {
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION sb_audit_append_only()"
        }
    };
    sqlx::query(breaker).execute(store.pool()).await.unwrap();
    let done = JobOutcome::Succeeded(JobResult::Read {
        deliveries: Default::default(),
        missing_keys: vec![],
        provider_version: None,
    });
    let result = store
        .complete_job("edge", &job.job_id, &CompleteRequest { lease_token: claimed.lease_token, outcome: done })
        .await;
    assert!(result.is_err(), "completion must fail when its audit row cannot be written");
    let status = store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Leased, "the transition did not happen");
    assert!(!status.has_result);
}

/// Closes the pool so SQLite's WAL is checkpointed before another process reads the file.
async fn drop_store(store: sb_operator::store::Store) {
    store.pool().close().await;
}

on_both_databases!(
    the_audit_table_rejects_update_and_delete,
    verify_names_the_first_edited_event,
    verify_detects_a_removed_event,
    a_failed_audit_append_leaves_the_job_unchanged,
);
