//! Shared by the scenario tests: the operator's SQLite store opened with the operator's own
//! key file, so a leak search also reads the envelope-encrypted columns (job payloads and
//! results). A value that leaked into a job result is invisible to a byte search of the
//! database file, which sees only ciphertext there.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use sb_e2e::operator::Operator;
use sb_e2e::stack::canary::Sightings;
use sb_operator::store::Store;

/// The operator's SQLite store, opened as the operator opens it (local key file in its data
/// directory); it may run next to the operator process, since SQLite is in WAL mode.
pub async fn open_store(operator: &Operator) -> Store {
    let keys = sb_operator::kms::KeyManagerConfig::Local { key_file: operator.data_path().join("kek.bin") }
        .build()
        .await
        .expect("the operator's key file opens");
    let url = format!("sqlite://{}?mode=rw", operator.database_path().display());
    Store::connect(&url, keys, Default::default()).await.expect("the operator's store opens")
}

/// Adds to `found` every canary in the store's decrypted columns, each place named
/// `store column jobs/<id>/<payload|result>`.
pub async fn look_in_decrypted_columns(found: &mut Sightings, operator: &Operator, canaries: &[&str]) {
    let columns = open_store(operator).await.decrypted_columns().await.expect("the store's columns decrypt");
    for (column, plaintext) in columns {
        found.look(&format!("store column {column}"), &plaintext, canaries);
    }
}

/// Each `action` audit event (`read.transition`, `patch.transition`, …) of object `uid`, by
/// outcome, in the order appended.
pub async fn audited(operator: &Operator, uid: &str, action: &str) -> Vec<String> {
    let store = open_store(operator).await;
    let events = store.audit_events(0, 100_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.event.object.uid == uid && e.event.action == action)
        .map(|e| e.event.outcome)
        .collect()
}

/// No two events of one action and outcome, i.e. no transition recorded twice.
pub fn once_each(outcomes: &[String]) {
    let mut seen = std::collections::BTreeSet::new();
    for o in outcomes {
        assert!(seen.insert(o), "transition {o} audited twice: {outcomes:?}");
    }
}

/// A SecretReadRequest by alice in team-a for `team-a/db`'s `password` through agent `edge`,
/// sealed to `recipient` (base64). The document ends with its `recipient` line, so a caller
/// may append more of `spec` (`delivery: ...`).
pub fn read_request_yaml(name: &str, justification: &str, recipient: &str) -> String {
    format!(
        r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: SecretReadRequest
metadata: {{name: {name}, namespace: team-a}}
spec:
  target: {{agent: edge, provider: vault, ref: "team-a/db", keys: [password]}}
  justification: {justification}
  requester: alice
  recipient: "{recipient}"
"#
    )
}
