//! A transition is recorded once however many reconciles race to make it, and whichever copy
//! of the object they work from (issue 15: under a stale cache Running → Delivered was audited
//! twice, approvals counted twice). Reconciles are played by concurrent tasks that each make
//! the transition their copy of the object calls for, through the store's conditional append
//! the controllers use; the test counts the audit rows.

mod common;

use common::{Flavor, TestDb, object};
use sb_operator::audit::AuditEvent;
use sb_operator::store::{Appended, AuditCondition, Store, StoreOptions};

fn transition(to: &str) -> AuditEvent {
    AuditEvent::now("operator", "read.transition", object("uid-1")).outcome(to, "test")
}

async fn rows(store: &Store, action: &str, outcome: &str) -> usize {
    let events = store.audit_events(0, 10_000).await.unwrap();
    events.iter().filter(|e| e.event.action == action && e.event.outcome == outcome).count()
}

/// `n` tasks at once, each appending `event` under `condition`; what each got.
async fn race(store: &Store, n: usize, event: AuditEvent, from: Option<&'static str>, once: bool) -> Vec<Appended> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (store, event) = (store.clone(), event.clone());
            tokio::spawn(async move {
                let condition = if once { AuditCondition::Once } else { AuditCondition::After(from) };
                store.audit_if(&event, condition).await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

async fn racing_reconciles_record_each_transition_once(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    // The life of one read, each step made by 16 reconciles at once from the same copy.
    let steps =
        [(None, "Pending"), (Some("Pending"), "Queued"), (Some("Queued"), "Running"), (Some("Running"), "Delivered")];
    for (from, to) in steps {
        let results = race(&store, 16, transition(to), from, false).await;
        assert_eq!(results.iter().filter(|r| **r == Appended::Yes).count(), 1, "{to}: {results:?}");
        assert!(results.iter().all(|r| matches!(r, Appended::Yes | Appended::AlreadyRecorded)), "{results:?}");
        assert_eq!(rows(&store, "read.transition", to).await, 1, "{to} recorded once");
    }
    // Reconciles from stale copies: one still Queued makes Queued → Delivered again (already
    // recorded: it may write the same status), one still Pending makes Pending → Queued (the
    // log has moved past Pending: contradicted, nothing recorded, nothing written).
    assert_eq!(
        store.audit_if(&transition("Delivered"), AuditCondition::After(Some("Queued"))).await.unwrap(),
        Appended::AlreadyRecorded
    );
    assert_eq!(
        store.audit_if(&transition("Queued"), AuditCondition::After(Some("Pending"))).await.unwrap(),
        Appended::Contradicted { last: Some("Delivered".into()) }
    );
    // A transition that happens twice for real (a retried attempt) is recorded both times.
    let retry = [(Some("Delivered"), "Queued"), (Some("Queued"), "Running")];
    for (from, to) in retry {
        let results = race(&store, 8, transition(to), from, false).await;
        assert_eq!(results.iter().filter(|r| **r == Appended::Yes).count(), 1, "{to} again: {results:?}");
    }
    assert_eq!(rows(&store, "read.transition", "Running").await, 2, "two attempts, two rows");

    // One-time steps: bob's approval counted once, alice's too, the result handed off once.
    for approver in ["bob", "alice"] {
        let approval =
            AuditEvent::now(format!("user:{approver}"), "read.approval", object("uid-1")).outcome("Counted", "Approve");
        let results = race(&store, 16, approval, None, true).await;
        assert_eq!(results.iter().filter(|r| **r == Appended::Yes).count(), 1, "{approver}: {results:?}");
    }
    assert_eq!(rows(&store, "read.approval", "Counted").await, 2, "one row per approver");
    let relay = AuditEvent::now("operator", "read.relay", object("uid-1")).outcome("Started", "job-1");
    race(&store, 16, relay, None, true).await;
    assert_eq!(rows(&store, "read.relay", "Started").await, 1);
    // Another object's transitions are its own.
    let other = AuditEvent::now("operator", "read.transition", object("uid-2")).outcome("Pending", "test");
    assert_eq!(store.audit_if(&other, AuditCondition::After(None)).await.unwrap(), Appended::Yes);

    // The chain stays intact through the races.
    let head = store.audit_checkpoint().await.unwrap().unwrap();
    assert_eq!(usize::try_from(head.seq).unwrap(), store.audit_events(0, 10_000).await.unwrap().len());
}

on_both_databases!(racing_reconciles_record_each_transition_once);
