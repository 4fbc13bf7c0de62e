//! A fresh PostgreSQL database per test (on the server `scripts/services.sh` starts), dumped
//! with `pg_dump` for the canary check and dropped afterwards.

use anyhow::{Context, bail};
use std::process::Command;

/// The admin URL (`SB_TEST_DATABASE_URL`, else the services script's server).
fn admin_url() -> String {
    std::env::var("SB_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://sb:sb@127.0.0.1:15432/sb".to_owned())
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql (install the PostgreSQL client; scripts/services.sh up postgres)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed (is PostgreSQL up? scripts/services.sh up postgres): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A database that exists for the lifetime of this value.
pub struct FreshDatabase {
    pub name: String,
    pub url: String,
}

impl FreshDatabase {
    /// `CREATE DATABASE sb_e2e_<random>`.
    pub fn create() -> anyhow::Result<Self> {
        let admin = admin_url();
        let name = format!("sb_e2e_{}", super::random_suffix());
        psql(&admin, &format!("CREATE DATABASE {name}"))?;
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).context("database URL without a path")?;
        Ok(Self { url: format!("{base}/{name}"), name })
    }

    /// Takes the database away as a server restart does: new connections are refused and
    /// every open one (the operator's pool and its LISTEN connection) is cut. Other tests'
    /// databases on the same server are untouched.
    pub fn go_down(&self) -> anyhow::Result<()> {
        let admin = admin_url();
        psql(&admin, &format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", self.name))?;
        psql(&admin, &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'", self.name))
    }

    /// Lets connections in again.
    pub fn come_back(&self) -> anyhow::Result<()> {
        psql(&admin_url(), &format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", self.name))
    }

    /// Schema and every row, as `pg_dump` prints them.
    pub fn dump(&self) -> anyhow::Result<String> {
        let out = Command::new("pg_dump").arg(&self.url).output().context("running pg_dump")?;
        if !out.status.success() {
            bail!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let _ = psql(&admin_url(), &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}
