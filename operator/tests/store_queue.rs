//! The job queue on SQLite and PostgreSQL: idempotent enqueue, exclusive claims under
//! concurrency, lease expiry, completion rules and the one-time result hand-off.

mod common;

use common::{Flavor, TestDb, audit_count, read_job, short_leases};
use sb_core::identity::AgentKeys;
use sb_core::protocol::{CompleteRequest, JobFailure, JobOutcome, JobResult};
use sb_operator::store::{JobState, KeyLookup, StoreError, StoreOptions, StoredAuthKey};
use sqlx::{Column, Row};
use std::collections::HashSet;
use std::time::Duration;

fn patch_done() -> JobOutcome {
    JobOutcome::Succeeded(JobResult::Patch { provider_version: "7".into() })
}

fn read_done() -> JobOutcome {
    JobOutcome::Succeeded(JobResult::Read {
        deliveries: Default::default(),
        missing_keys: vec!["password".into()],
        provider_version: Some("3".into()),
    })
}

async fn enqueue_is_idempotent_per_object_generation(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let first = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let again = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let next_generation = store.enqueue_job("operator", read_job("edge", "uid-1", 2)).await.unwrap();
    assert!(first.created);
    assert!(!again.created, "a second enqueue of the same generation creates nothing");
    assert_eq!(again.job_id, first.job_id);
    assert!(next_generation.created);
    assert_ne!(next_generation.job_id, first.job_id);
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM jobs").fetch_one(store.pool()).await.unwrap().get("n");
    assert_eq!(count, 2);
    // Only the two real enqueues are audited.
    assert_eq!(audit_count(&store).await, 2);
    let status = store.job_state(&first.job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Queued);
    assert_eq!(status.object.uid, "uid-1");
}

async fn concurrent_claimers_never_share_a_job(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    const JOBS: usize = 40;
    for i in 0..JOBS {
        store.enqueue_job("operator", read_job("edge", &format!("uid-{i}"), 1)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = store.claim_jobs("edge", 3, Duration::ZERO).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| j.job_id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for id in task.await.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "job {id} was handed to two claimers");
        }
    }
    assert_eq!(total, JOBS, "every job was claimed exactly once");
    // Another agent's claim sees none of them.
    assert!(store.claim_jobs("other", 16, Duration::ZERO).await.unwrap().is_empty());
}

async fn an_expired_lease_is_reclaimed_and_the_old_lease_is_refused(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(short_leases()).await;
    let job = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let first = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().remove(0);
    assert_eq!(first.attempt, 1);
    assert!(store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().is_empty(), "a live lease is not re-claimed");
    // Claim until the expired lease lets the job go, bounded; it must not go before expiry.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(job) = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().pop() {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "the expired lease was never reclaimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(chrono::Utc::now() >= first.lease_expires_at, "re-claimed before the first lease expired");
    assert_eq!(second.job_id, job.job_id);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease_token, first.lease_token);

    let stale = CompleteRequest { lease_token: first.lease_token.clone(), outcome: read_done() };
    let err = store.complete_job("edge", &job.job_id, &stale).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleLease), "{err:?}");
    assert_eq!(store.job_state(&job.job_id).await.unwrap().unwrap().state, JobState::Leased);

    let fresh = CompleteRequest { lease_token: second.lease_token.clone(), outcome: read_done() };
    let mut completions = store.subscribe_completions();
    let done = store.complete_job("edge", &job.job_id, &fresh).await.unwrap();
    assert!(!done.duplicate);
    let event = completions.recv().await.unwrap();
    assert_eq!((event.job_id.as_str(), event.state), (job.job_id.as_str(), JobState::Succeeded));
    let retry = store.complete_job("edge", &job.job_id, &fresh).await.unwrap();
    assert!(retry.duplicate, "the same completion twice is an idempotent retry");
    let late = store.complete_job("edge", &job.job_id, &stale).await.unwrap_err();
    assert!(matches!(late, StoreError::AlreadyCompleted), "{late:?}");

    let status = store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.attempts, 2);
    assert!(status.has_result);
}

async fn results_are_encrypted_and_deleted_after_the_hand_off(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let job = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let raw: Vec<u8> = sqlx::query("SELECT payload FROM jobs").fetch_one(store.pool()).await.unwrap().get("payload");
    assert!(!raw.windows(9).any(|w| w == b"team-a/db"), "the payload is stored encrypted");

    let claimed = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().remove(0);
    let failure = JobOutcome::Failed(JobFailure {
        reason: "NotFound".into(),
        message: "no such secret".into(),
        retryable: false,
    });
    store
        .complete_job(
            "edge",
            &job.job_id,
            &CompleteRequest { lease_token: claimed.lease_token, outcome: failure.clone() },
        )
        .await
        .unwrap();

    let status = store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!((status.state, status.outcome_reason.as_deref()), (JobState::Failed, Some("NotFound")));
    assert_eq!(status.retryable, Some(false));
    // Peeking leaves the result in place until the delivery is written.
    assert_eq!(store.peek_result(&job.job_id).await.unwrap(), Some(failure.clone()));
    assert_eq!(store.peek_result(&job.job_id).await.unwrap(), Some(failure.clone()));
    assert_eq!(store.take_result("operator", &job.job_id).await.unwrap(), Some(failure));
    assert!(!store.delete_result("operator", &job.job_id).await.unwrap(), "nothing left to delete");
    assert_eq!(store.take_result("operator", &job.job_id).await.unwrap(), None, "a result is handed off once");
    let row =
        sqlx::query("SELECT payload, payload_key, result, result_key FROM jobs").fetch_one(store.pool()).await.unwrap();
    for column in ["payload", "payload_key", "result", "result_key"] {
        assert_eq!(row.get::<Option<Vec<u8>>, _>(column), None, "{column} is gone after the hand-off");
    }
    assert!(!store.job_state(&job.job_id).await.unwrap().unwrap().has_result);
}

async fn refusals_change_nothing(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let job = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let claimed = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().remove(0);
    let events = audit_count(&store).await;
    let wrong_agent = store
        .complete_job(
            "other",
            &job.job_id,
            &CompleteRequest { lease_token: claimed.lease_token.clone(), outcome: read_done() },
        )
        .await;
    assert!(matches!(wrong_agent, Err(StoreError::Forbidden)), "{wrong_agent:?}");
    let wrong_kind = store
        .complete_job(
            "edge",
            &job.job_id,
            &CompleteRequest { lease_token: claimed.lease_token.clone(), outcome: patch_done() },
        )
        .await;
    assert!(matches!(wrong_kind, Err(StoreError::InvalidOutcome(_))), "{wrong_kind:?}");
    let missing = store
        .complete_job(
            "edge",
            "no-such-job",
            &CompleteRequest { lease_token: claimed.lease_token, outcome: read_done() },
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert_eq!(store.job_state(&job.job_id).await.unwrap().unwrap().state, JobState::Leased);
    assert_eq!(audit_count(&store).await, events, "refusals write no audit rows");
}

/// Polls `condition` every 20 ms until it holds; fails the test naming `what` after 10 s.
async fn until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_waiting_claim_wakes_when_a_job_is_queued(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    // On PostgreSQL the job comes from another store (another replica): the wake-up travels
    // through LISTEN/NOTIFY, so the listener must be subscribed first: a NOTIFY from the
    // producer reaches this store.
    let producer = match flavor {
        Flavor::Sqlite => store.clone(),
        Flavor::Postgres => {
            let producer = db.store(StoreOptions::default()).await;
            let before = store.wakeups_received();
            until("the job listener hears a NOTIFY from another store", async || {
                sqlx::query("SELECT pg_notify('sb_jobs', 'nobody')").execute(producer.pool()).await.unwrap();
                store.wakeups_received() > before
            })
            .await;
            producer
        }
    };
    // The claim may wait far longer than this test waits for it: only the queued job answers it in time.
    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.claim_jobs("edge", 1, Duration::from_secs(120)).await.unwrap() }
    });
    until("the claim is waiting", async || store.claims_in_progress("edge") == 1).await;
    let before = store.wakeups_received();
    let job = producer.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let jobs = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiting claim answered when the job was queued, not at its deadline")
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, job.job_id);
    assert!(store.wakeups_received() > before, "the queued job woke the claiming store");
    assert_eq!(store.claims_in_progress("edge"), 0);
}

async fn ending_long_polls_answers_a_waiting_claim_and_the_next_without_waiting(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.claim_jobs("edge", 1, Duration::from_secs(120)).await.unwrap() }
    });
    until("the claim is waiting", async || store.claims_in_progress("edge") == 1).await;
    store.end_long_polls();
    let jobs = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("ending long-polls answered the waiting claim")
        .unwrap();
    assert!(jobs.is_empty());
    // Later claims still hand out work, and answer without waiting when there is none.
    let job = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let claimed = store.claim_jobs("edge", 1, Duration::from_secs(120)).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), vec![job.job_id.as_str()]);
    let none = tokio::time::timeout(Duration::from_secs(30), store.claim_jobs("edge", 1, Duration::from_secs(120)))
        .await
        .expect("a claim after the end answers at once");
    assert!(none.unwrap().is_empty());
}

async fn agent_keys_are_public_and_expire_after_a_rotation(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let (first, second) = (AgentKeys::generate(), AgentKeys::generate());
    let stored = |keys: &AgentKeys, expires_at: Option<i64>| StoredAuthKey {
        expires_at,
        ..StoredAuthKey::new(&keys.auth_public(), chrono::Utc::now().timestamp_millis())
    };
    let fp = |keys: &AgentKeys| keys.auth_public().fingerprint();
    store.set_agent_keys("operator", "edge", &[stored(&first, None)]).await.unwrap();
    assert!(matches!(store.agent_auth_key("edge", &fp(&first)).await.unwrap(), KeyLookup::Valid(_)));
    assert_eq!(store.agent_auth_key("edge", &fp(&second)).await.unwrap(), KeyLookup::Unregistered);
    assert_eq!(store.agent_auth_key("nobody", &fp(&first)).await.unwrap(), KeyLookup::Unregistered);
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    store.set_agent_keys("operator", "edge", &[stored(&first, Some(later)), stored(&second, None)]).await.unwrap();
    assert!(matches!(store.agent_auth_key("edge", &fp(&first)).await.unwrap(), KeyLookup::Valid(_)), "during grace");
    assert!(matches!(store.agent_auth_key("edge", &fp(&second)).await.unwrap(), KeyLookup::Valid(_)));
    let past = chrono::Utc::now().timestamp_millis() - 1;
    store.set_agent_keys("operator", "edge", &[stored(&first, Some(past)), stored(&second, None)]).await.unwrap();
    assert!(matches!(store.agent_auth_key("edge", &fp(&first)).await.unwrap(), KeyLookup::Expired(_)), "grace over");
    // Only public keys are stored: no column can hold a seed, a secret or its hash.
    let row = sqlx::query("SELECT * FROM agents").fetch_one(store.pool()).await.unwrap();
    let columns: Vec<String> = row.columns().iter().map(|c| c.name().to_owned()).collect();
    assert!(!columns.iter().any(|c| c.contains("secret")), "{columns:?}");
    let keys: String = row.get("auth_keys");
    assert!(keys.contains(&second.auth_public().to_base64()) && !keys.contains(second.seed_base64().as_str()));
    assert!(store.remove_agent("operator", "edge").await.unwrap());
    assert_eq!(store.agent_auth_key("edge", &fp(&second)).await.unwrap(), KeyLookup::Unregistered, "removed");
    assert!(store.agent("edge").await.unwrap().is_none());
    assert!(!store.remove_agent("operator", "edge").await.unwrap());
}

async fn a_retryable_failure_can_be_requeued(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let new = read_job("edge", "uid-1", 1);
    let payload = new.payload.clone();
    let job = store.enqueue_job("operator", new).await.unwrap();
    let claimed = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().remove(0);
    let failure = JobOutcome::Failed(JobFailure {
        reason: "ProviderUnavailable".into(),
        message: "vault sealed".into(),
        retryable: true,
    });
    let request = CompleteRequest { lease_token: claimed.lease_token, outcome: failure };
    store.complete_job("edge", &job.job_id, &request).await.unwrap();
    let status = store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!((status.state, status.retryable), (JobState::Failed, Some(true)));
    store.requeue_job("operator", &job.job_id, &payload).await.unwrap();
    let status = store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!((status.state, status.retryable, status.has_result), (JobState::Queued, None, false));
    let again = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().remove(0);
    assert_eq!((again.job_id.as_str(), again.attempt), (job.job_id.as_str(), 2));
    assert_eq!(again.payload, payload);
}

async fn a_payload_copied_from_another_row_never_opens(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let good = store.enqueue_job("operator", read_job("edge", "uid-good", 1)).await.unwrap();
    let moved = store.enqueue_job("operator", read_job("edge", "uid-moved", 1)).await.unwrap();
    // Someone with database access copies one row's encrypted payload into another row.
    let source = sqlx::query("SELECT payload_key, payload FROM jobs WHERE id = $1")
        .bind(&good.job_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET payload_key = $1, payload = $2 WHERE id = $3")
        .bind(source.get::<Vec<u8>, _>("payload_key"))
        .bind(source.get::<Vec<u8>, _>("payload"))
        .bind(&moved.job_id)
        .execute(store.pool())
        .await
        .unwrap();
    let mut completions = store.subscribe_completions();
    let jobs = store.claim_jobs("edge", 16, Duration::ZERO).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), vec![good.job_id.as_str()]);
    let status = store.job_state(&moved.job_id).await.unwrap().unwrap();
    assert_eq!((status.state, status.outcome_reason.as_deref()), (JobState::Failed, Some("PayloadUnreadable")));
    assert_eq!(completions.recv().await.unwrap().job_id, moved.job_id);
    let events = store.audit_events(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.event.action == "job.fail" && e.event.object.uid == "uid-moved"));
}

on_both_databases!(
    a_payload_copied_from_another_row_never_opens,
    a_retryable_failure_can_be_requeued,
    enqueue_is_idempotent_per_object_generation,
    concurrent_claimers_never_share_a_job,
    an_expired_lease_is_reclaimed_and_the_old_lease_is_refused,
    results_are_encrypted_and_deleted_after_the_hand_off,
    refusals_change_nothing,
    a_waiting_claim_wakes_when_a_job_is_queued,
    ending_long_polls_answers_a_waiting_claim_and_the_next_without_waiting,
    agent_keys_are_public_and_expire_after_a_rotation,
);
