//! What the agent does with a claim answer from the operator: `ClaimResponse` parsed as the
//! agent's transport parses it, then every job run by the agent's real `Executor` against
//! in-memory providers (`sb_fuzz::provider`). The operator is outside the agent's trust
//! boundary, so a job may name anything.
//!
//! Properties:
//! - the answer round-trips;
//! - the agent asks a provider only about references inside that provider's configured
//!   prefixes, with no `.`/`..`/empty segment, leading `/` or control character, and lists
//!   only prefixes inside them, whatever the job says (docs/threat-model.md: the agent
//!   checks scope again);
//! - a job for another agent or an unknown provider touches no provider;
//! - every outcome is a completion the operator's body check accepts, a failure's reason is
//!   a condition reason the completion handler accepts, and no message holds a stored value;
//! - a read sealed to the seeds' requester key opens, under the read binding, to exactly the
//!   stored values of the requested keys; a patch that succeeded wrote exactly its keys; a
//!   discovery's pages are numbered from 0, add up to its total and pass the operator's
//!   body check.
#![no_main]

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use sb_agent::jobs::{Executor, PageSink};
use sb_agent::provider::{NamedProvider, Scope};
use sb_agent::transport::TransportError;
use sb_core::binding::read_aad;
use sb_core::protocol::{CatalogPage, ClaimResponse, CompleteRequest, JobOutcome, JobPayload, JobResult};
use sb_core::seal::{Purpose, open};
use sb_fuzz::provider::{Call, MemoryProvider, VALUE_MARK};
use sb_fuzz::{assert_round_trip, demo_agent, seed_recipient};
use sb_operator::api::{is_condition_reason, parse_strict};
use std::sync::{Arc, Mutex};

/// The providers of the agent under test: name, allowed prefixes, stored references.
const PROVIDERS: &[(&str, &[&str], &[&str])] = &[
    ("vault", &["team-a/", "shared/"], &["team-a/db", "team-a/api", "shared/tls", "team-b/db", "team-a"]),
    ("aws", &["prod/team-a-"], &["prod/team-a-db", "prod/team-b-db"]),
];
const MAX_JOBS: usize = 8;

#[derive(Default)]
struct RecordingSink(Mutex<Vec<CatalogPage>>);

#[async_trait]
impl PageSink for RecordingSink {
    async fn send_page(&self, _: &str, page: &CatalogPage) -> Result<(), TransportError> {
        let body = serde_json::to_vec(page).unwrap();
        if let Err(err) = parse_strict::<CatalogPage>(&body) {
            panic!("the operator refuses a page the agent sends: {err:?}");
        }
        self.0.lock().unwrap().push(page.clone());
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // As OperatorClient::post decodes a successful answer.
    let Ok(response) = serde_json::from_slice::<ClaimResponse>(data) else { return };
    assert_round_trip(&response, |bytes| serde_json::from_slice::<ClaimResponse>(bytes));
    let stores: Vec<Arc<MemoryProvider>> =
        PROVIDERS.iter().map(|(_, _, refs)| Arc::new(MemoryProvider::with(refs))).collect();
    let providers = PROVIDERS
        .iter()
        .zip(&stores)
        .map(|((name, prefixes, _), store)| NamedProvider {
            name: (*name).to_owned(),
            scope: Scope::new(prefixes.iter().map(|p| (*p).to_owned()).collect()),
            backend: store.clone(),
        })
        .collect();
    let executor = Executor::new("edge".into(), demo_agent().derive_sealing(), providers, 2);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for job in response.jobs.iter().take(MAX_JOBS) {
        let sink = RecordingSink::default();
        let outcome = runtime.block_on(executor.execute(job, &sink));
        let calls: Vec<Vec<Call>> = stores.iter().map(|s| s.take_calls()).collect();
        check_calls(&job.payload, &calls);
        check_outcome(&outcome);
        match (&job.payload, &outcome) {
            (JobPayload::Read(read), JobOutcome::Succeeded(JobResult::Read { deliveries, .. })) => {
                let store = store_of(&stores, &read.target.provider);
                if !read.target.keys.is_empty() {
                    assert!(deliveries.keys().all(|k| read.target.keys.contains(k)), "delivered a key not asked for");
                }
                let recipient = seed_recipient();
                if read.recipient == recipient.public.to_base64() {
                    for (key, envelope) in deliveries {
                        let aad = read_aad(&read.object_uid, &read.target, key);
                        let value = open(&recipient, Purpose::ReadDelivery, &aad, envelope).expect("a delivery opens");
                        assert_eq!(Some(value.expose().to_vec()), store.value(&read.target.reference, key));
                    }
                }
            }
            (JobPayload::Patch(patch), JobOutcome::Succeeded(JobResult::Patch { .. })) => {
                let writes: Vec<&Call> = calls.iter().flatten().filter(|c| matches!(c, Call::Write { .. })).collect();
                let expected = Call::Write {
                    reference: patch.target.reference.clone(),
                    set: patch.values.keys().cloned().collect(),
                    delete: patch.delete.clone(),
                };
                assert_eq!(writes, [&expected], "a successful patch is one write of its keys");
            }
            (JobPayload::Discover(_), JobOutcome::Succeeded(JobResult::Discover { pages, total, .. })) => {
                let sent = sink.0.lock().unwrap();
                assert_eq!(sent.len() as u32, *pages);
                assert!(sent.iter().enumerate().all(|(i, p)| p.page as usize == i && p.lease_token == job.lease_token));
                assert_eq!(sent.iter().map(|p| p.entries.len() as u64).sum::<u64>(), *total);
            }
            _ => {}
        }
    }
});

fn store_of<'a>(stores: &'a [Arc<MemoryProvider>], provider: &str) -> &'a MemoryProvider {
    let index = PROVIDERS.iter().position(|(name, _, _)| *name == provider).expect("a called provider exists");
    &stores[index]
}

/// Every call stays inside the scope of the provider it went to, and only the provider the
/// job names, on this agent, is called.
fn check_calls(payload: &JobPayload, calls: &[Vec<Call>]) {
    let (agent, provider) = match payload {
        JobPayload::Read(j) => (&j.target.agent, &j.target.provider),
        JobPayload::Patch(j) => (&j.target.agent, &j.target.provider),
        JobPayload::Discover(j) => (&j.agent, &j.provider),
    };
    for ((name, prefixes, _), calls) in PROVIDERS.iter().zip(calls) {
        if calls.is_empty() {
            continue;
        }
        assert!(agent == "edge" && provider == name, "provider {name} called for a job for {agent}/{provider}");
        for call in calls {
            match call {
                Call::Read(reference) | Call::Write { reference, .. } => {
                    assert!(plain_path(reference), "provider {name} asked about {reference:?}");
                    assert!(prefixes.iter().any(|p| reference.starts_with(p)), "{reference:?} outside {prefixes:?}");
                }
                Call::List(prefix) => {
                    assert!(plain_path(prefix), "provider {name} listed {prefix:?}");
                    assert!(prefixes.iter().any(|p| prefix.starts_with(p)), "listed {prefix:?} outside {prefixes:?}");
                }
            }
        }
    }
}

/// The reference rule the agent documents (`agent/src/provider/scope.rs`), written again.
fn plain_path(reference: &str) -> bool {
    !reference.starts_with('/')
        && !reference.chars().any(char::is_control)
        && reference
            .split('/')
            .enumerate()
            .all(|(i, seg)| seg != "." && seg != ".." && (!seg.is_empty() || i == reference.split('/').count() - 1))
}

fn check_outcome(outcome: &JobOutcome) {
    let completion = CompleteRequest { lease_token: "lease".into(), outcome: outcome.clone() };
    let body = serde_json::to_vec(&completion).unwrap();
    if let Err(err) = parse_strict::<CompleteRequest>(&body) {
        panic!("the operator refuses the agent's completion: {err:?}\n{outcome:?}");
    }
    assert!(!String::from_utf8_lossy(&body).contains(VALUE_MARK), "a completion holds a stored value: {outcome:?}");
    if let JobOutcome::Failed(failure) = outcome {
        assert!(is_condition_reason(&failure.reason), "the operator refuses the failure reason {:?}", failure.reason);
    }
}
