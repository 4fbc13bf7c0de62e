//! Key managers against a local key file, OpenBao transit and moto's KMS: a wrapped data key
//! opens under the same key and row context only.

mod common;

use aws_credential_types::Credentials;
use common::{SERVICES_HINT, aws_endpoint, vault_addr, vault_token};
use sb_operator::kms::{
    AwsKms, KeyManager, KeyManagerConfig, KmsError, LocalKeyFile, VaultTransit, open_column, seal_column,
};

const DATA_KEY: [u8; 32] = [7; 32];

async fn round_trip_and_refusals(right: &dyn KeyManager, other_key: &dyn KeyManager) {
    let wrapped = right.wrap(&DATA_KEY, "sb/jobs/job-1/payload").await.unwrap();
    assert!(!wrapped.windows(32).any(|w| w == DATA_KEY), "the wrapped key does not contain the key");
    let unwrapped = right.unwrap(&wrapped, "sb/jobs/job-1/payload").await.unwrap();
    assert_eq!(*unwrapped, DATA_KEY);

    let moved = right.unwrap(&wrapped, "sb/jobs/job-2/payload").await;
    assert!(matches!(moved, Err(KmsError::Decrypt)), "a key moved to another row must not open: {moved:?}");
    let foreign = other_key.unwrap(&wrapped, "sb/jobs/job-1/payload").await;
    assert!(foreign.is_err(), "another key must not open it: {foreign:?}");

    let sealed = seal_column(right, "sb/jobs/job-1/result", b"sealed-envelope-bytes").await.unwrap();
    assert_eq!(open_column(right, "sb/jobs/job-1/result", &sealed).await.unwrap().as_slice(), b"sealed-envelope-bytes");
}

#[tokio::test]
async fn local_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/kek");
    let keys = LocalKeyFile::open_or_create(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let reopened = LocalKeyFile::open_or_create(&path).unwrap();
    let other = LocalKeyFile::open_or_create(&dir.path().join("other")).unwrap();
    round_trip_and_refusals(&keys, &other).await;
    let wrapped = keys.wrap(&DATA_KEY, "ctx").await.unwrap();
    assert_eq!(*reopened.unwrap(&wrapped, "ctx").await.unwrap(), DATA_KEY, "the key survives a restart");

    std::fs::write(dir.path().join("short"), b"too short").unwrap();
    let short = LocalKeyFile::open_or_create(&dir.path().join("short"));
    assert!(matches!(short, Err(KmsError::KeyFileLength(_))), "{short:?}");
}

#[tokio::test]
async fn openbao_transit() {
    sb_operator::tls::install_crypto_provider();
    let addr = vault_addr();
    let name = format!("sb-test-{}", uuid::Uuid::new_v4().simple());
    let config = KeyManagerConfig::VaultTransit {
        addr: addr.clone(),
        token: vault_token(),
        mount: "transit".into(),
        key: name.clone(),
    };
    let keys = config
        .build()
        .await
        .unwrap_or_else(|e| panic!("OpenBao transit at {addr} is not usable ({e}); {SERVICES_HINT}"));
    assert_eq!(keys.name(), "vault-transit");
    let other = VaultTransit::new(&addr, &vault_token(), "transit", &format!("{name}-other")).unwrap();
    other.ensure_key().await.unwrap();
    round_trip_and_refusals(keys.as_ref(), &other).await;
}

#[tokio::test]
async fn moto_kms() {
    let endpoint = aws_endpoint();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(&endpoint)
        .http_client(http)
        .load()
        .await;
    let client = aws_sdk_kms::Client::new(&config);
    let mut key_ids = Vec::new();
    for _ in 0..2 {
        let created = client
            .create_key()
            .description("secrets-bridge test")
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto KMS at {endpoint} is not reachable ({e:?}); {SERVICES_HINT}"));
        key_ids.push(created.key_metadata.unwrap().key_id);
    }
    let keys = AwsKms::from_config(&config, &key_ids[0]);
    let other = AwsKms::from_config(&config, &key_ids[1]);
    round_trip_and_refusals(&keys, &other).await;
}
