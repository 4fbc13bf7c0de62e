//! The short load run (`make load` runs the long one): 200 requests at once, 150 reads and 50
//! patches, through the real operator and the real sb-agent on the real API server, each
//! approved by bob and each read revealed by alice. Once on one replica (SQLite), once on two
//! replicas on PostgreSQL with leader election behind one Service, the leader SIGKILLed when
//! half the requests are final. Either way: every request final, one job each and none left
//! leased, every read's delivery opens to its own value, every patch wrote exactly one OpenBao
//! version, no transition audited twice, the audit chain verifies. Latencies are printed,
//! never asserted.

use sb_e2e::load::{LoadOptions, LoadReport, run};
use std::collections::BTreeMap;

const READERS: usize = 150;
const PATCHERS: usize = 50;

fn assert_every_guarantee(report: &LoadReport) {
    println!("{report}");
    let expected = BTreeMap::from([
        ("SecretPatch/Executed".to_owned(), PATCHERS),
        ("SecretReadRequest/Revealed".to_owned(), READERS),
    ]);
    assert_eq!(report.final_phases, expected, "every request reached its final phase");
    assert_eq!(report.api_phases, expected, "the API server holds exactly these requests, all final");
    assert!(report.delivery_problems.is_empty(), "deliveries: {:?}", report.delivery_problems);
    assert!(report.provider_problems.is_empty(), "OpenBao versions: {:?}", report.provider_problems);
    let store = &report.store;
    assert_eq!(store.jobs, READERS + PATCHERS, "one job per request: {store:?}");
    assert!(store.without_job.is_empty() && store.several_jobs.is_empty(), "{store:?}");
    assert!(store.not_succeeded.is_empty(), "jobs that did not succeed: {:?}", store.not_succeeded);
    assert_eq!(store.unfinished, 0, "no job left Queued or Leased");
    assert_eq!(store.results_left, 0, "no sealed result left in the store");
    assert!(store.duplicates.is_empty(), "recorded twice in the audit chain: {:?}", store.duplicates);
    assert!(store.final_not_audited.is_empty(), "final phase not audited: {:?}", store.final_not_audited);
    assert_eq!(report.audit_verify.0, 0, "audit verify: {}", report.audit_verify.1);
    assert!(report.problems().is_empty(), "{:?}", report.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_reads_and_patches_each_end_once_on_one_replica() {
    let report =
        run(LoadOptions { readers: READERS, patchers: PATCHERS, ..Default::default() }).await.expect("the load run");
    assert_every_guarantee(&report);
    assert!(report.failover.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_requests_survive_the_leader_replica_killed_halfway() {
    let report = run(LoadOptions {
        readers: READERS,
        patchers: PATCHERS,
        replicas: 2,
        kill_one_halfway: true,
        postgres: true,
        ..Default::default()
    })
    .await
    .expect("the load run");
    assert_every_guarantee(&report);
    let failover = report.failover.as_ref().expect("the leader was killed");
    let new_leader = failover.new_leader.expect("a replica took the Lease over");
    assert_ne!(new_leader, failover.killed, "the other replica took the Lease over: {failover:?}");
    // A leader whose renewal went unanswered under the load steps down and exits (restarted as a
    // pod would be); nothing else may end a replica.
    assert!(report.restarts.iter().all(|r| r.lease_lost), "{:?}", report.restarts);
    let total = READERS + PATCHERS;
    assert!(failover.at_final >= total / 2 && failover.at_final < total, "killed halfway: {failover:?}");
}
