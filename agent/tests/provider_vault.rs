//! Vault / OpenBao provider against the real `bao server -dev` (scripts/services.sh up bao).

mod common;

use async_trait::async_trait;
use sb_agent::jobs::{Executor, PageSink};
use sb_agent::provider::{MergeWrite, NamedProvider, Provider, ProviderError, Scope, VaultKv2, WriteHook};
use sb_agent::transport::TransportError;
use sb_core::crd::TargetRef;
use sb_core::protocol::{CatalogPage, ClaimedJob, DiscoverJob, JobOutcome, JobPayload, JobResult, PatchJob};
use sb_core::seal::{KeyPair, Purpose, SecretValue, seal};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

fn write(set: &[(&str, &str)], delete: &[&str], expected: Option<&str>) -> MergeWrite {
    MergeWrite {
        set: set.iter().map(|(k, v)| (k.to_string(), SecretValue::from(*v))).collect(),
        delete: delete.iter().map(|k| k.to_string()).collect(),
        expected_version: expected.map(str::to_owned),
        idempotency_token: uuid::Uuid::new_v4().to_string(),
    }
}

fn text(values: &BTreeMap<String, SecretValue>) -> BTreeMap<String, String> {
    values.iter().map(|(k, v)| (k.clone(), v.expose_str().unwrap().to_owned())).collect()
}

#[tokio::test]
async fn read_returns_only_the_selected_keys_and_reports_missing_ones() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/read");
    vault
        .merge_write(&path, write(&[("user", "admin"), ("password", "pw-1"), ("host", "db")], &[], None))
        .await
        .unwrap();

    let read = vault.read(&path, &["password".into(), "port".into()]).await.unwrap();
    assert_eq!(text(&read.values), BTreeMap::from([("password".into(), "pw-1".into())]));
    assert_eq!(read.missing, vec!["port".to_owned()]);
    assert_eq!(read.version.as_deref(), Some("1"));

    let all = vault.read(&path, &[]).await.unwrap();
    assert_eq!(all.values.len(), 3);
    assert!(matches!(vault.read(&format!("{path}-absent"), &[]).await, Err(ProviderError::NotFound(_))));
}

#[tokio::test]
async fn merge_write_keeps_untouched_keys_and_removes_listed_ones() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/merge");
    vault.merge_write(&path, write(&[("a", "1"), ("b", "2"), ("c", "3")], &[], None)).await.unwrap();

    let version = vault.merge_write(&path, write(&[("b", "20"), ("d", "4")], &["c"], Some("1"))).await.unwrap();
    assert_eq!(version, "2");
    let read = vault.read(&path, &[]).await.unwrap();
    assert_eq!(
        text(&read.values),
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "20".into()), ("d".into(), "4".into())])
    );
}

#[tokio::test]
async fn an_expected_version_that_does_not_match_writes_nothing() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/expected");
    vault.merge_write(&path, write(&[("a", "1")], &[], None)).await.unwrap();
    vault.merge_write(&path, write(&[("a", "2")], &[], None)).await.unwrap();

    let err = vault.merge_write(&path, write(&[("a", "3")], &[], Some("1"))).await.unwrap_err();
    assert!(matches!(err, ProviderError::VersionConflict(_)), "{err}");
    assert!(err.to_string().contains("expected version 1"), "{err}");
    let read = vault.read(&path, &[]).await.unwrap();
    assert_eq!(read.version.as_deref(), Some("2"));
    assert_eq!(text(&read.values)["a"], "2");
}

/// Writes a competing value with another client, between the agent's GET and PUT.
struct ConcurrentWriter {
    other: VaultKv2,
}

#[async_trait]
impl WriteHook for ConcurrentWriter {
    async fn between_read_and_write(&self, reference: &str) {
        self.other.merge_write(reference, write(&[("password", "written-by-someone-else")], &[], None)).await.unwrap();
    }
}

fn executor(agent: &str, provider: &str, backend: Arc<dyn Provider>, key: KeyPair, page_size: u32) -> Executor {
    let named = NamedProvider { name: provider.into(), scope: Scope::new(vec!["agent-test/".into()]), backend };
    Executor::new(agent.into(), key, vec![named], page_size)
}

fn claimed(payload: JobPayload) -> ClaimedJob {
    ClaimedJob {
        job_id: uuid::Uuid::new_v4().to_string(),
        lease_token: "lease".into(),
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        attempt: 1,
        payload,
    }
}

struct NoPages;
#[async_trait]
impl PageSink for NoPages {
    async fn send_page(&self, _: &str, _: &CatalogPage) -> Result<(), TransportError> {
        panic!("no page expected")
    }
}

fn patch_job(agent: &KeyPair, path: &str, values: &[(&str, &str)]) -> PatchJob {
    let target = TargetRef { agent: "edge".into(), provider: "vault".into(), reference: path.into(), keys: vec![] };
    let uid = uuid::Uuid::new_v4().to_string();
    let values = values
        .iter()
        .map(|(k, v)| {
            let aad = sb_core::binding::patch_aad("ns", "p", &target, k);
            (k.to_string(), seal(&agent.public, Purpose::PatchValue, &aad, &SecretValue::from(*v)).unwrap())
        })
        .collect();
    PatchJob {
        object_uid: uid,
        namespace: "ns".into(),
        name: "p".into(),
        target,
        values,
        delete: vec![],
        expected_version: None,
    }
}

#[tokio::test]
async fn a_concurrent_change_between_get_and_put_fails_the_patch_instead_of_overwriting() {
    let (other, token) = common::vault().await;
    let (check, _t) = common::vault().await;
    let path = common::unique("agent-test/cas");
    check.merge_write(&path, write(&[("password", "v1"), ("user", "app")], &[], None)).await.unwrap();
    let hooked = VaultKv2::connect(&common::vault_config(token.path().to_owned()))
        .await
        .unwrap()
        .with_write_hook(Arc::new(ConcurrentWriter { other }));
    let key = KeyPair::derive_from_seed(b"cas-test-agent-secret");
    let exec = executor("edge", "vault", Arc::new(hooked), KeyPair::derive_from_seed(b"cas-test-agent-secret"), 10);

    let outcome = exec
        .execute(&claimed(JobPayload::Patch(patch_job(&key, &path, &[("password", "from-the-patch")]))), &NoPages)
        .await;
    let JobOutcome::Failed(failure) = outcome else { panic!("patch must fail: {outcome:?}") };
    assert_eq!(failure.reason, "VersionConflict");
    assert!(!failure.retryable);
    assert!(failure.message.contains("changed between read"), "{}", failure.message);

    let read = check.read(&path, &["password".into()]).await.unwrap();
    assert_eq!(read.version.as_deref(), Some("2"), "only the concurrent write landed");
    assert_eq!(text(&read.values)["password"], "written-by-someone-else");
}

#[tokio::test]
async fn a_value_sealed_to_another_key_fails_with_key_id_mismatch() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/kid");
    let exec = executor("edge", "vault", Arc::new(vault), KeyPair::derive_from_seed(b"the-real-agent"), 10);
    let job = patch_job(&KeyPair::derive_from_seed(b"some-other-agent"), &path, &[("k", "v")]);
    let JobOutcome::Failed(failure) = exec.execute(&claimed(JobPayload::Patch(job)), &NoPages).await else {
        panic!("must fail")
    };
    assert_eq!(failure.reason, "KeyIdMismatch");
    assert!(failure.message.contains("sealed to another key"), "{}", failure.message);
}

#[tokio::test]
async fn a_reference_outside_the_configured_prefixes_is_refused() {
    let (vault, _token) = common::vault().await;
    let key = KeyPair::derive_from_seed(b"scope-agent");
    let exec = executor("edge", "vault", Arc::new(vault), KeyPair::derive_from_seed(b"scope-agent"), 10);
    for path in ["team-b/db", "agent-test/../team-b/db"] {
        let JobOutcome::Failed(failure) =
            exec.execute(&claimed(JobPayload::Patch(patch_job(&key, path, &[("k", "v")]))), &NoPages).await
        else {
            panic!("must fail")
        };
        assert_eq!(failure.reason, "OutOfScope", "{path}");
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<CatalogPage>>);
#[async_trait]
impl PageSink for Recorder {
    async fn send_page(&self, _: &str, page: &CatalogPage) -> Result<(), TransportError> {
        self.0.lock().unwrap().push(page.clone());
        Ok(())
    }
}

#[tokio::test]
async fn discovery_pages_through_more_than_100_secrets_with_their_custom_metadata() {
    let (vault, token) = common::vault().await;
    let root = format!("{}/", common::unique("agent-test/discover"));
    let raw = vaultrs::client::VaultClient::new(
        vaultrs::client::VaultClientSettingsBuilder::default()
            .address(common::vault_addr())
            .token(common::vault_token())
            .build()
            .unwrap(),
    )
    .unwrap();
    for i in 0..105 {
        let path = format!("{root}{}svc-{i:03}", if i % 2 == 0 { "" } else { "nested/" });
        vaultrs::kv2::set(&raw, "secret", &path, &HashMap::from([("value", "secret-canary")])).await.unwrap();
        let labels =
            HashMap::from([("owner".to_owned(), format!("team {i}")), ("env".to_owned(), "prod/eu".to_owned())]);
        vaultrs::kv2::set_metadata(
            &raw,
            "secret",
            &path,
            Some(vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder().custom_metadata(labels)),
        )
        .await
        .unwrap();
    }
    drop(token);
    let exec = executor("edge", "vault", Arc::new(vault), KeyPair::derive_from_seed(b"discover"), 10);
    let job = DiscoverJob {
        object_uid: "uid".into(),
        namespace: "ns".into(),
        name: "d".into(),
        agent: "edge".into(),
        provider: "vault".into(),
        path_prefix: Some(root.clone()),
        name_filter: None,
    };
    let sink = Recorder::default();
    let outcome = exec.execute(&claimed(JobPayload::Discover(job)), &sink).await;
    assert_eq!(outcome, JobOutcome::Succeeded(JobResult::Discover { pages: 11, total: 105, complete: true }));
    let pages = sink.0.into_inner().unwrap();
    assert_eq!(pages.iter().map(|p| p.page).collect::<Vec<_>>(), (0..11).collect::<Vec<_>>());
    let entries: Vec<_> = pages.into_iter().flat_map(|p| p.entries).collect();
    let mut refs: Vec<_> = entries.iter().map(|e| e.reference.clone()).collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), 105, "every secret exactly once");
    let nested = entries.iter().find(|e| e.reference == format!("{root}nested/svc-007")).expect("nested secret listed");
    assert_eq!(nested.labels.get("owner").map(String::as_str), Some("team 7"));
    assert_eq!(nested.labels.get("env").map(String::as_str), Some("prod/eu"));
    assert_eq!(nested.version.as_deref(), Some("1"));
    assert!(!format!("{entries:?}").contains("secret-canary"), "discovery must never read values");

    // A name filter narrows the listing (svc-000 .. svc-009).
    let filtered = DiscoverJob {
        object_uid: "uid".into(),
        namespace: "ns".into(),
        name: "d".into(),
        agent: "edge".into(),
        provider: "vault".into(),
        path_prefix: Some(root.clone()),
        name_filter: Some("svc-00".into()),
    };
    let outcome = exec.execute(&claimed(JobPayload::Discover(filtered)), &Recorder::default()).await;
    assert!(matches!(outcome, JobOutcome::Succeeded(JobResult::Discover { total: 10, .. })), "{outcome:?}");
}

#[tokio::test]
async fn a_rejected_token_makes_the_provider_unhealthy_with_a_reason() {
    common::require_vault().await;
    let bad = common::temp_file("not-a-valid-token");
    let vault = VaultKv2::connect(&common::vault_config(bad.path().to_owned())).await.unwrap();
    let err = vault.health().await.unwrap_err();
    assert!(matches!(err, ProviderError::Denied(_)), "{err}");
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn approle_login_logs_in_again_before_the_token_expires() {
    common::require_vault().await;
    let root = vaultrs::client::VaultClient::new(
        vaultrs::client::VaultClientSettingsBuilder::default()
            .address(common::vault_addr())
            .token(common::vault_token())
            .build()
            .unwrap(),
    )
    .unwrap();
    let mount = "sb-agent-approle";
    // Already enabled by an earlier run or a parallel test: fine.
    let _ = vaultrs::sys::auth::enable(&root, mount, "approle", None).await;
    let policy = r#"path "secret/*" { capabilities = ["create", "read", "update", "list"] }"#;
    vaultrs::sys::policy::set(&root, "sb-agent-test", policy).await.unwrap();
    let role = common::unique("agent");
    let mut opts = vaultrs::api::auth::approle::requests::SetAppRoleRequest::builder();
    opts.token_ttl("3s").token_max_ttl("3s").token_policies(vec!["sb-agent-test".to_owned()]);
    vaultrs::auth::approle::role::set(&root, mount, &role, Some(&mut opts)).await.unwrap();
    let role_id = vaultrs::auth::approle::role::read_id(&root, mount, &role).await.unwrap().role_id;
    let secret_id = vaultrs::auth::approle::role::secret::generate(&root, mount, &role, None).await.unwrap().secret_id;
    let secret_file = common::temp_file(&secret_id);

    let mut config = common::vault_config(secret_file.path().to_owned());
    config.auth = sb_agent::config::VaultAuth::AppRole {
        mount: mount.into(),
        role_id: role_id.clone(),
        secret_id_env: None,
        secret_id_file: Some(secret_file.path().to_owned()),
    };
    let vault = VaultKv2::connect(&config).await.expect("AppRole login");
    // A witness token of the same role, issued after the provider's: once Vault refuses it,
    // the provider's first token (as short-lived, and older) is dead too.
    let witness = vaultrs::auth::approle::login(&root, mount, &role_id, &secret_id).await.unwrap().client_token;
    let path = common::unique("agent-test/approle");
    vault.merge_write(&path, write(&[("k", "v")], &[], None)).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while vaultrs::token::lookup(&root, &witness).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "a token with a 3 s TTL still lives after 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The first token is dead: the provider must have logged in again.
    vault.health().await.expect("healthy with a fresh token");
    let read = vault.read(&path, &["k".into()]).await.unwrap();
    assert_eq!(text(&read.values)["k"], "v");
}

#[tokio::test]
async fn a_patch_after_the_latest_version_was_deleted_writes_a_new_version() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/deleted");
    vault.merge_write(&path, write(&[("a", "1"), ("b", "2")], &[], None)).await.unwrap();
    let raw = vaultrs::client::VaultClient::new(
        vaultrs::client::VaultClientSettingsBuilder::default()
            .address(common::vault_addr())
            .token(common::vault_token())
            .build()
            .unwrap(),
    )
    .unwrap();
    vaultrs::kv2::delete_latest(&raw, "secret", &path).await.unwrap();
    let gone = vault.read(&path, &[]).await;
    assert!(matches!(gone, Err(ProviderError::NotFound(_))), "{gone:?}");

    let version = vault.merge_write(&path, write(&[("a", "new")], &[], None)).await.unwrap();
    assert_eq!(version, "2");
    let read = vault.read(&path, &[]).await.unwrap();
    assert_eq!(text(&read.values), BTreeMap::from([("a".into(), "new".into())]), "the deleted keys do not come back");
}
