//! Shared test helpers: the real services started by `scripts/services.sh`, unique names,
//! and a local TLS server with rcgen certificates.
#![allow(dead_code)]

pub mod fake_operator;
pub mod tls_server;

use sb_agent::config::{AwsConfig, AwsStaticCredentials, VaultAuth, VaultConfig};
use sb_agent::provider::{AwsSecretsManager, VaultKv2};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// OpenBao address (`SB_TEST_VAULT_ADDR`, default the dev server of scripts/services.sh).
pub fn vault_addr() -> String {
    std::env::var("SB_TEST_VAULT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:18200".into())
}

/// OpenBao root token (`SB_TEST_VAULT_TOKEN`).
pub fn vault_token() -> String {
    std::env::var("SB_TEST_VAULT_TOKEN").unwrap_or_else(|_| "sb-dev-root".into())
}

/// moto address (`SB_TEST_AWS_ENDPOINT`).
pub fn aws_endpoint() -> String {
    std::env::var("SB_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:15000".into())
}

/// A name nobody else uses, so tests run in parallel and re-run cleanly.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn require(url: &str, what: &str, service: &str) {
    sb_agent::transport::install_crypto_provider();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    if let Err(err) = client.get(url).send().await.and_then(|r| r.error_for_status()) {
        panic!(
            "{what} is not reachable at {url}: {err}\n  start it with `scripts/services.sh up {service}` (tests never skip)"
        );
    }
}

/// Fails the test with a pointer to scripts/services.sh when OpenBao is down.
pub async fn require_vault() {
    require(&format!("{}/v1/sys/health", vault_addr()), "OpenBao", "bao").await;
}

/// Fails the test with a pointer to scripts/services.sh when moto is down.
pub async fn require_moto() {
    require(&format!("{}/moto-api/", aws_endpoint()), "moto (AWS)", "moto").await;
}

/// A temporary file holding `content`, kept alive by the returned handle.
pub fn temp_file(content: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(content.as_bytes()).expect("write temp file");
    file
}

/// Vault provider settings for the dev server; the token sits in `token_file`.
pub fn vault_config(token_file: PathBuf) -> VaultConfig {
    VaultConfig {
        address: vault_addr(),
        mount: "secret".into(),
        ca_file: None,
        namespace: None,
        auth: VaultAuth::Token { token_env: None, token_file: Some(token_file) },
    }
}

/// A connected Vault provider plus the token file it was built from.
pub async fn vault() -> (VaultKv2, tempfile::NamedTempFile) {
    require_vault().await;
    let token = temp_file(&vault_token());
    let provider = VaultKv2::connect(&vault_config(token.path().to_owned())).await.expect("connect to OpenBao");
    (provider, token)
}

/// AWS provider settings for moto.
pub fn aws_config(secret_file: PathBuf) -> AwsConfig {
    AwsConfig {
        region: "us-east-1".into(),
        endpoint: Some(aws_endpoint()),
        static_credentials: Some(AwsStaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key_env: None,
            secret_access_key_file: Some(secret_file),
        }),
    }
}

/// A connected AWS provider plus a raw SDK client for setting up and inspecting moto.
pub async fn aws() -> (AwsSecretsManager, aws_sdk_secretsmanager::Client, tempfile::NamedTempFile) {
    require_moto().await;
    let secret = temp_file("testing");
    let provider = AwsSecretsManager::connect(&aws_config(secret.path().to_owned())).await.expect("connect to moto");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "test"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .load()
        .await;
    (provider, aws_sdk_secretsmanager::Client::new(&sdk), secret)
}
