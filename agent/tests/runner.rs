//! The loop in-process: shutdown (no more claims, short jobs finish, long ones are released
//! as retryable failures within the grace) and backoff while the operator fails.

mod common;

use async_trait::async_trait;
use common::fake_operator::{AGENT_ID, Operator, fake_operator, wait_until};
use common::tls_server::{TestPki, serve};
use sb_agent::identity::Identity;
use sb_agent::jobs::Executor;
use sb_agent::metrics::Metrics;
use sb_agent::provider::{MergeWrite, MetadataPage, NamedProvider, Provider, ProviderError, ReadResult, Scope};
use sb_agent::runner::{Agent, LoopOptions};
use sb_agent::transport::OperatorClient;
use sb_core::crd::TargetRef;
use sb_core::identity::AgentKeys;
use sb_core::protocol::{CLAIM_PATH, ClaimedJob, JobOutcome, JobPayload, ReadJob};
use sb_core::seal::KeyPair;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads take as many milliseconds as the reference's last segment says.
struct SlowProvider;

#[async_trait]
impl Provider for SlowProvider {
    async fn health(&self) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn read(&self, reference: &str, _: &[String]) -> Result<ReadResult, ProviderError> {
        let millis: u64 = reference.rsplit('/').next().unwrap().parse().unwrap();
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(ReadResult::default())
    }
    async fn merge_write(&self, _: &str, _: MergeWrite) -> Result<String, ProviderError> {
        unreachable!("no writes in this test")
    }
    async fn list(&self, _: &str, _: Option<&str>, _: u32) -> Result<MetadataPage, ProviderError> {
        unreachable!("no listing in this test")
    }
}

fn read_job(id: &str, millis: u64) -> ClaimedJob {
    ClaimedJob {
        job_id: id.into(),
        lease_token: format!("lease-{id}"),
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        attempt: 1,
        payload: JobPayload::Read(ReadJob {
            object_uid: "uid".into(),
            namespace: "ns".into(),
            name: id.into(),
            target: TargetRef {
                agent: "edge".into(),
                provider: "slow".into(),
                reference: format!("slow/{millis}"),
                keys: vec![],
            },
            recipient: KeyPair::generate().public.to_base64(),
        }),
    }
}

fn agent_for(server_url: &str, pki: &TestPki, keys: AgentKeys, grace: Duration) -> Agent {
    let identity = Identity {
        agent_id: AGENT_ID.into(),
        keys: Arc::new(keys),
        operator_url: server_url.to_owned(),
        ca_pem: Some(pki.ca_pem.clone()),
        spki_pin: Some(pki.pin.clone()),
        source: "test",
    };
    let slow =
        NamedProvider { name: "slow".into(), scope: Scope::new(vec!["slow/".into()]), backend: Arc::new(SlowProvider) };
    Agent {
        client: Arc::new(OperatorClient::new(&identity, false).unwrap()),
        executor: Arc::new(Executor::new(AGENT_ID.into(), identity.sealing_keypair(), vec![slow], 10)),
        metrics: Arc::new(Metrics::new()),
        options: LoopOptions {
            max_concurrent_jobs: 4,
            claim_wait_seconds: 1,
            heartbeat_interval: Duration::from_secs(1),
            shutdown_grace: grace,
        },
    }
}

#[tokio::test]
async fn shutdown_stops_claiming_finishes_short_jobs_and_releases_long_ones() {
    let keys = AgentKeys::generate();
    let state = Arc::new(Operator::registering(&keys));
    state.queue.lock().unwrap().extend([read_job("short", 300), read_job("long", 60_000)]);
    let pki = TestPki::generate();
    let server = serve(&pki, fake_operator(state.clone())).await;
    let agent = agent_for(&server.url, &pki, keys, Duration::from_secs(2));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(agent.run(stopped));
    wait_until("both jobs claimed", || state.queue.lock().unwrap().is_empty()).await;
    let claims_before = state.claims.lock().unwrap().len();
    stop.send(true).unwrap();

    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops within the grace").unwrap();
    assert!(state.claims.lock().unwrap().len() <= claims_before + 1, "no claims after shutdown began");
    let completions = state.completions.lock().unwrap().clone();
    let outcome = |id: &str| completions.iter().find(|(job, _)| job == id).map(|(_, c)| c.outcome.clone());
    assert!(matches!(outcome("short"), Some(JobOutcome::Succeeded(_))), "{completions:?}");
    let Some(JobOutcome::Failed(released)) = outcome("long") else { panic!("long job not released: {completions:?}") };
    assert_eq!(released.reason, "AgentShutdown");
    assert!(released.retryable, "a released job must be retryable");
    assert_eq!(*state.unauthenticated.lock().unwrap(), 0, "every request is signed by the registered key");
    assert_eq!(*state.bad_sealing_certificates.lock().unwrap(), 0, "the sealing key is certified");
}

#[tokio::test]
async fn an_unavailable_operator_is_retried_with_backoff_not_hammered() {
    let pki = TestPki::generate();
    // Every request fails; the server notes when each claim arrived.
    let claims: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let failing = axum::Router::new().fallback({
        let claims = claims.clone();
        move |uri: axum::http::Uri| async move {
            if uri.path() == CLAIM_PATH {
                claims.lock().unwrap().push(Instant::now());
            }
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        }
    });
    let server = serve(&pki, failing).await;
    let agent = agent_for(&server.url, &pki, AgentKeys::generate(), Duration::from_secs(1));
    let metrics = agent.metrics.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(agent.run(stopped));
    wait_until("four claim attempts", || claims.lock().unwrap().len() >= 4).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("stops").unwrap();

    // Claims back off from 0.5 s doubling, each delay at least half its ceiling: the gaps
    // between attempts are at least 0.25 s, 0.5 s and 1 s (a slow machine only widens them),
    // where an agent without backoff would retry at once.
    let arrivals = claims.lock().unwrap().clone();
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, floor) in gaps.iter().zip([250, 500, 1000]) {
        assert!(
            *gap >= Duration::from_millis(floor),
            "a retry came {gap:?} after the last, before {floor} ms: {gaps:?}"
        );
    }
    let text = metrics.encode();
    assert!(!text.contains("sb_agent_heartbeat_failures_total 0"), "{text}");
    assert!(!metrics.ready.load(std::sync::atomic::Ordering::Relaxed), "not ready without a heartbeat");
    assert!(server.request_count() >= 4, "every attempt reached the server");
}
