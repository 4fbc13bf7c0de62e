//! Helpers shared by the operator's component tests: fresh databases on SQLite and on the
//! PostgreSQL from `scripts/services.sh up`, key managers, sample jobs.
#![allow(dead_code)]

use sb_core::crd::TargetRef;
use sb_core::protocol::{DiscoverJob, JobPayload, ReadJob};
use sb_operator::audit::AuditObject;
use sb_operator::kms::{KeyManager, LocalKeyFile};
use sb_operator::store::{NewJob, Store, StoreOptions};
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;

pub const SERVICES_HINT: &str = "start the test services with `scripts/services.sh up`";

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

pub fn vault_addr() -> String {
    env_or("SB_TEST_VAULT_ADDR", "http://127.0.0.1:18200")
}

pub fn vault_token() -> String {
    env_or("SB_TEST_VAULT_TOKEN", "sb-dev-root")
}

pub fn aws_endpoint() -> String {
    env_or("SB_TEST_AWS_ENDPOINT", "http://127.0.0.1:15000")
}

pub fn postgres_admin_url() -> String {
    env_or("SB_TEST_DATABASE_URL", "postgres://sb:sb@127.0.0.1:15432/sb")
}

/// A database that lives as long as the test: a SQLite file in a temp dir, or a freshly
/// created PostgreSQL database with a random name (so tests run in parallel).
pub struct TestDb {
    pub url: String,
    _dir: tempfile::TempDir,
    postgres_name: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop the per-test PostgreSQL database so repeated runs do not pile them up. Runs on
        // its own thread and runtime because Drop cannot await.
        let Some(name) = self.postgres_name.take() else { return };
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Sqlite,
    Postgres,
}

impl TestDb {
    pub async fn new(flavor: Flavor) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (url, postgres_name) = match flavor {
            Flavor::Sqlite => (dir.path().join("store.db").display().to_string(), None),
            Flavor::Postgres => {
                let (url, name) = fresh_postgres_database().await;
                (url, Some(name))
            }
        };
        Self { url, _dir: dir, postgres_name }
    }

    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// A store over this database with a local key file.
    pub async fn store(&self, options: StoreOptions) -> Store {
        Store::connect(&self.url, self.keys(), options).await.expect("store connects and migrates")
    }

    pub fn keys(&self) -> Arc<dyn KeyManager> {
        Arc::new(LocalKeyFile::open_or_create(&self._dir.path().join("kek")).unwrap())
    }
}

async fn fresh_postgres_database() -> (String, String) {
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin} ({e}); {SERVICES_HINT}"));
    let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin);
    (format!("{base}/{name}"), name)
}

pub fn object(uid: &str) -> AuditObject {
    AuditObject {
        kind: "SecretReadRequest".into(),
        namespace: "team-a".into(),
        name: format!("read-{uid}"),
        uid: uid.into(),
    }
}

pub fn read_job(agent: &str, uid: &str, generation: i64) -> NewJob {
    NewJob {
        agent: agent.into(),
        object: object(uid),
        generation,
        payload: JobPayload::Read(ReadJob {
            object_uid: uid.into(),
            namespace: "team-a".into(),
            name: format!("read-{uid}"),
            target: TargetRef {
                agent: agent.into(),
                provider: "vault".into(),
                reference: "team-a/db".into(),
                keys: vec!["password".into()],
            },
            recipient: "cmVjaXBpZW50LWtleQ".into(),
        }),
    }
}

pub fn discover_job(agent: &str, uid: &str) -> NewJob {
    NewJob {
        agent: agent.into(),
        object: AuditObject {
            kind: "DiscoveryJob".into(),
            namespace: "team-a".into(),
            name: "scan".into(),
            uid: uid.into(),
        },
        generation: 1,
        payload: JobPayload::Discover(DiscoverJob {
            object_uid: uid.into(),
            namespace: "team-a".into(),
            name: "scan".into(),
            agent: agent.into(),
            provider: "vault".into(),
            path_prefix: Some("team-a/".into()),
            name_filter: None,
        }),
    }
}

pub fn short_leases() -> StoreOptions {
    StoreOptions { lease_duration: Duration::from_millis(300), ..StoreOptions::default() }
}

/// Number of audit events.
pub async fn audit_count(store: &Store) -> usize {
    store.audit_events(0, 100_000).await.unwrap().len()
}

/// Defines `<name>::sqlite` and `<name>::postgres` tests running `async fn <name>(Flavor)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::common::Flavor::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::common::Flavor::Postgres).await
            }
        }
    )*};
}
