//! Direct access to the providers, to seed secrets and read them back: the OpenBao HTTP API
//! (KV v2 at `secret/`) and moto's Secrets Manager JSON API.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A plain-HTTP client (reqwest needs a rustls provider installed even for http://).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

const DOWN: &str = "is not reachable: start it with `scripts/services.sh up` (or `make services`)";

/// OpenBao dev server.
#[derive(Clone, Debug)]
pub struct Bao {
    pub addr: String,
    pub token: String,
    http: reqwest::Client,
}

impl Bao {
    /// `SB_TEST_VAULT_ADDR` / `SB_TEST_VAULT_TOKEN`, else the address `scripts/services.sh` uses.
    pub fn from_env() -> Self {
        Self {
            addr: env_or("SB_TEST_VAULT_ADDR", "http://127.0.0.1:18200"),
            token: env_or("SB_TEST_VAULT_TOKEN", "sb-dev-root"),
            http: http_client(),
        }
    }

    /// Fails with a pointer to `scripts/services.sh up` when OpenBao is down.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let url = format!("{}/v1/sys/health", self.addr);
        self.http.get(&url).send().await.with_context(|| format!("OpenBao at {} {DOWN}", self.addr))?;
        Ok(())
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let resp = req.header("X-Vault-Token", &self.token).send().await.with_context(|| what.to_owned())?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{what}: OpenBao answered {status}: {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    /// Writes a new version of `path` with exactly `data`.
    pub async fn put(&self, path: &str, data: &BTreeMap<&str, &str>) -> anyhow::Result<()> {
        let url = format!("{}/v1/secret/data/{path}", self.addr);
        self.send(self.http.post(url).json(&json!({ "data": data })), "writing to OpenBao").await?;
        Ok(())
    }

    /// The latest version's key/value pairs.
    pub async fn get(&self, path: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let url = format!("{}/v1/secret/data/{path}", self.addr);
        let body = self.send(self.http.get(url), "reading from OpenBao").await?;
        Ok(serde_json::from_value(body["data"]["data"].clone())?)
    }

    /// The latest version number.
    pub async fn version(&self, path: &str) -> anyhow::Result<u64> {
        let url = format!("{}/v1/secret/metadata/{path}", self.addr);
        let body = self.send(self.http.get(url), "reading OpenBao metadata").await?;
        body["data"]["current_version"].as_u64().context("no current_version")
    }

    /// Sets `custom_metadata` (what discovery turns into labels).
    pub async fn label(&self, path: &str, labels: &BTreeMap<&str, &str>) -> anyhow::Result<()> {
        let url = format!("{}/v1/secret/metadata/{path}", self.addr);
        self.send(self.http.post(url).json(&json!({ "custom_metadata": labels })), "labelling in OpenBao").await?;
        Ok(())
    }
}

/// moto's Secrets Manager (it does not check signatures, only reads the region from the
/// credential scope).
#[derive(Clone, Debug)]
pub struct Moto {
    pub endpoint: String,
    http: reqwest::Client,
}

impl Moto {
    /// `SB_TEST_AWS_ENDPOINT`, else the address `scripts/services.sh` uses.
    pub fn from_env() -> Self {
        Self { endpoint: env_or("SB_TEST_AWS_ENDPOINT", "http://127.0.0.1:15000"), http: http_client() }
    }

    /// Fails with a pointer to `scripts/services.sh up` when moto is down.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let url = format!("{}/moto-api/", self.endpoint);
        self.http.get(&url).send().await.with_context(|| format!("moto at {} {DOWN}", self.endpoint))?;
        Ok(())
    }

    /// One Secrets Manager call.
    pub async fn call(&self, action: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("X-Amz-Target", format!("secretsmanager.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("moto at {} {DOWN}", self.endpoint))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{action}: moto answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// Creates `name` holding `data` as a JSON object, with `tags`.
    pub async fn create(&self, name: &str, data: &BTreeMap<&str, &str>, tags: &[(&str, &str)]) -> anyhow::Result<()> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
        let body = json!({"Name": name, "SecretString": serde_json::to_string(data)?, "Tags": tags});
        self.call("CreateSecret", body).await?;
        Ok(())
    }

    /// The current value's key/value pairs.
    pub async fn get(&self, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let answer = self.call("GetSecretValue", json!({"SecretId": name})).await?;
        let text = answer["SecretString"].as_str().context("no SecretString")?;
        Ok(serde_json::from_str(text)?)
    }

    /// Every version id of `name` (ListSecretVersionIds).
    pub async fn version_ids(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let answer = self.call("ListSecretVersionIds", json!({"SecretId": name, "IncludeDeprecated": true})).await?;
        let versions = answer["Versions"].as_array().context("no Versions")?;
        Ok(versions.iter().filter_map(|v| v["VersionId"].as_str().map(str::to_owned)).collect())
    }
}
