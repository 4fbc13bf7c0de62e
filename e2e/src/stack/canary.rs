//! The canary check: every value a scenario writes contains a fresh random canary; afterwards
//! it must be found where values belong (the provider, the revealed output) and nowhere the
//! control plane keeps things (the operator's store, logs, Kubernetes objects).

use super::Stack;

/// A fresh canary, e.g. `sbcanary-1f3a…`.
pub fn new_canary() -> String {
    format!("sbcanary-{}", uuid::Uuid::new_v4().simple())
}

/// Places a canary was found in.
#[derive(Debug, Default)]
pub struct Sightings(pub Vec<String>);

impl Sightings {
    fn look(&mut self, place: &str, haystack: &[u8], canaries: &[&str]) {
        for canary in canaries {
            if haystack.windows(canary.len()).any(|w| w == canary.as_bytes()) {
                self.0.push(format!("{canary} in {place}"));
            }
        }
    }
}

impl Stack {
    /// Every place the control plane keeps bytes: the SQLite files in the operator's data
    /// directory, `pg_dump` of `postgres_dump` when it ran on PostgreSQL, the operator's and
    /// the agent's logs, and every object of the API server.
    pub fn control_plane_sightings(&self, canaries: &[&str], postgres_dump: Option<&str>) -> Sightings {
        let mut found = Sightings::default();
        if let Ok(entries) = std::fs::read_dir(self.operator.data_path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    found.look(&format!("operator data file {}", path.display()), &bytes, canaries);
                }
            }
        }
        if let Some(dump) = postgres_dump {
            found.look("the PostgreSQL dump", dump.as_bytes(), canaries);
        }
        found.look("the operator's logs", self.operator.logs().as_bytes(), canaries);
        found.look("the agent's logs", self.agent.logs().as_bytes(), canaries);
        let objects = serde_json::to_vec(&self.cluster.server.dump_all()).unwrap_or_default();
        found.look("an object of the API server", &objects, canaries);
        // Secret data is base64 and old versions linger in history: the server's own search
        // looks through both.
        for canary in canaries {
            for place in self.cluster.server.find_plaintext(canary) {
                found.0.push(format!("{canary} in the API server: {place}"));
            }
        }
        found
    }

    /// Panics naming every place a canary leaked to.
    pub fn assert_no_canary_in_control_plane(&self, canaries: &[&str], postgres_dump: Option<&str>) {
        let found = self.control_plane_sightings(canaries, postgres_dump);
        assert!(found.0.is_empty(), "canary leaked:\n{}", found.0.join("\n"));
    }
}
