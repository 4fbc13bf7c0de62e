//! The canary check: every value a scenario writes contains a fresh random canary; afterwards
//! it must be found where values belong (the provider, the revealed output) and nowhere the
//! control plane keeps things (the operator's store, logs, Kubernetes objects and etcd's
//! data directory).

use super::Stack;
use crate::canary::contains_raw_or_base64;
use crate::kube::ControlPlane;
use crate::operator::Operator;

/// A fresh canary, e.g. `sbcanary-1f3a…`.
pub fn new_canary() -> String {
    format!("sbcanary-{}", uuid::Uuid::new_v4().simple())
}

/// Places a canary was found in.
#[derive(Debug, Default)]
pub struct Sightings(pub Vec<String>);

impl Sightings {
    /// Records `place` for every canary `haystack` holds, raw or base64-encoded.
    pub fn look(&mut self, place: &str, haystack: &[u8], canaries: &[&str]) {
        for canary in canaries {
            if contains_raw_or_base64(haystack, canary.as_bytes()) {
                self.0.push(format!("{canary} in {place}"));
            }
        }
    }
}

impl Stack {
    /// Every place the control plane keeps bytes: every file in the operator's data
    /// directory (the SQLite database with its `-wal`, the key file, the logs), `pg_dump` of
    /// `postgres_dump` when it ran on PostgreSQL, the operator's and the agent's logs, every
    /// object read through the API and every file of etcd's data directory.
    pub async fn control_plane_sightings(&self, canaries: &[&str], postgres_dump: Option<&str>) -> Sightings {
        let mut found = operator_and_cluster_sightings(&self.cluster.server, &self.operator, canaries).await;
        if let Some(dump) = postgres_dump {
            found.look("the PostgreSQL dump", dump.as_bytes(), canaries);
        }
        found.look("the agent's logs", self.agent.logs().as_bytes(), canaries);
        found
    }

    /// Panics naming every place a canary leaked to.
    pub async fn assert_no_canary_in_control_plane(&self, canaries: &[&str], postgres_dump: Option<&str>) {
        let found = self.control_plane_sightings(canaries, postgres_dump).await;
        assert!(found.0.is_empty(), "canary leaked:\n{}", found.0.join("\n"));
    }
}

/// What the operator process and the control plane keep: every file in the operator's data
/// directory (the SQLite database with its `-wal`, the key file, the logs; a file that cannot
/// be read fails the search rather than hiding in it), the operator's logs, every object read
/// through the API and every file of etcd's data directory.
pub async fn operator_and_cluster_sightings(
    server: &ControlPlane,
    operator: &Operator,
    canaries: &[&str],
) -> Sightings {
    let mut found = Sightings::default();
    for path in crate::kube::files_under(operator.data_path()).expect("the operator's data directory is readable") {
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading operator data file {}: {e}", path.display()));
        found.look(&format!("operator data file {}", path.display()), &bytes, canaries);
    }
    found.look("the operator's logs", operator.logs().as_bytes(), canaries);
    // Objects as the API serves them, and etcd's files, which keep old revisions too.
    for canary in canaries {
        for place in server.find_plaintext(canary).await.expect("searching the control plane's storage") {
            found.0.push(format!("{canary} in the Kubernetes storage: {place}"));
        }
    }
    found
}
