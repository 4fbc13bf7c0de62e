//! Vault / OpenBao provider against the real `bao server -dev` (scripts/services.sh up bao).

mod common;

use async_trait::async_trait;
use sb_agent::jobs::{Executor, PageSink};
use sb_agent::provider::{
    LAST_JOB_KEY, LAST_JOB_VERSION_KEY, MergeWrite, NamedProvider, Provider, ProviderError, Scope, VaultKv2, WriteHook,
};
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

// ---- Exactly once: the job id (idempotency token) and the version it wrote ----

/// A write of `set` by the job `job`.
fn job_write(job: &str, set: &[(&str, &str)], expected: Option<&str>) -> MergeWrite {
    MergeWrite { idempotency_token: job.to_owned(), ..write(set, &[], expected) }
}

/// A client with the dev server's root token, to set up and inspect OpenBao directly.
fn root_client() -> vaultrs::client::VaultClient {
    vaultrs::client::VaultClient::new(
        vaultrs::client::VaultClientSettingsBuilder::default()
            .address(common::vault_addr())
            .token(common::vault_token())
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// The secret's current version and custom_metadata, read directly.
async fn metadata(path: &str) -> (u64, HashMap<String, String>) {
    let meta = vaultrs::kv2::read_metadata(&root_client(), "secret", path).await.unwrap();
    (meta.current_version, meta.custom_metadata.unwrap_or_default())
}

/// Replaces the secret's custom_metadata, as another tool or a person would.
async fn set_labels(path: &str, labels: &[(&str, &str)]) {
    let labels: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut request = vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder();
    request.custom_metadata(labels);
    vaultrs::kv2::set_metadata(&root_client(), "secret", path, Some(&mut request)).await.unwrap();
}

#[tokio::test]
async fn a_patch_retried_with_the_same_job_id_writes_one_version_and_reports_it_again() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/once");
    vault.merge_write(&path, write(&[("user", "app"), ("password", "v1")], &[], None)).await.unwrap();
    let job = uuid::Uuid::new_v4().to_string();

    let first = vault.merge_write(&path, job_write(&job, &[("password", "v2")], None)).await.unwrap();
    assert_eq!(first, "2");
    let (version, custom) = metadata(&path).await;
    assert_eq!(version, 2);
    assert_eq!(custom.get(LAST_JOB_KEY), Some(&job), "the job id is recorded: {custom:?}");
    assert_eq!(custom.get(LAST_JOB_VERSION_KEY).map(String::as_str), Some("2"), "with its version: {custom:?}");

    // The completion was lost: the same job runs again, on a restarted agent.
    let (restarted, _token) = common::vault().await;
    let again = restarted.merge_write(&path, job_write(&job, &[("password", "v2")], None)).await.unwrap();
    assert_eq!(again, "2", "the retry reports the version the job wrote");
    assert_eq!(metadata(&path).await.0, 2, "and writes no second version");
    let read = vault.read(&path, &[]).await.unwrap();
    assert_eq!(text(&read.values), BTreeMap::from([("user".into(), "app".into()), ("password".into(), "v2".into())]));

    // Another job with the very same change is a new write.
    let other = uuid::Uuid::new_v4().to_string();
    assert_eq!(vault.merge_write(&path, job_write(&other, &[("password", "v2")], None)).await.unwrap(), "3");
    let (version, custom) = metadata(&path).await;
    assert_eq!(version, 3);
    assert_eq!(custom.get(LAST_JOB_KEY), Some(&other));
    assert_eq!(custom.get(LAST_JOB_VERSION_KEY).map(String::as_str), Some("3"));
}

#[tokio::test]
async fn a_retry_with_an_expected_version_reports_its_write_instead_of_a_version_conflict() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/once-expected");
    vault.merge_write(&path, write(&[("password", "v1")], &[], None)).await.unwrap();
    let job = uuid::Uuid::new_v4().to_string();

    assert_eq!(vault.merge_write(&path, job_write(&job, &[("password", "v2")], Some("1"))).await.unwrap(), "2");
    let again = vault.merge_write(&path, job_write(&job, &[("password", "v2")], Some("1"))).await;
    assert_eq!(again.unwrap(), "2", "the retry's expectation held when it wrote");
    assert_eq!(metadata(&path).await.0, 2);

    // A different job with the same, now stale, expectation is still refused.
    let stale = vault.merge_write(&path, job_write("another-job", &[("password", "v3")], Some("1"))).await;
    assert!(matches!(stale, Err(ProviderError::VersionConflict(_))), "{stale:?}");
    assert_eq!(metadata(&path).await.0, 2);
}

/// Adds a label between the agent's read and its writes, as a person editing labels would
/// (read the map, add a key, write the whole map back).
struct LabelEditor;

#[async_trait]
impl WriteHook for LabelEditor {
    async fn between_read_and_write(&self, reference: &str) {
        let (_, mut labels) = metadata(reference).await;
        labels.insert("reviewed".into(), "yes".into());
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        set_labels(reference, &pairs).await;
    }
}

#[tokio::test]
async fn labels_set_by_someone_else_survive_the_job_record_and_stay_the_only_labels() {
    let (_vault, token) = common::vault().await;
    let path = common::unique("agent-test/once-labels");
    vaultrs::kv2::set(&root_client(), "secret", &path, &HashMap::from([("password", "v1")])).await.unwrap();
    set_labels(&path, &[("owner", "payments"), ("cost center", "42 / eu")]).await;
    let vault = VaultKv2::connect(&common::vault_config(token.path().to_owned()))
        .await
        .unwrap()
        .with_write_hook(Arc::new(LabelEditor));
    let job = uuid::Uuid::new_v4().to_string();

    // The label edit lands between the agent's read of the metadata and its record: the
    // record's metadata check-and-set fails, the agent merges into the new labels.
    assert_eq!(vault.merge_write(&path, job_write(&job, &[("password", "v2")], None)).await.unwrap(), "2");
    let (version, custom) = metadata(&path).await;
    assert_eq!(version, 2);
    let expected: HashMap<String, String> = [
        ("owner", "payments"),
        ("cost center", "42 / eu"),
        ("reviewed", "yes"),
        (LAST_JOB_KEY, job.as_str()),
        (LAST_JOB_VERSION_KEY, "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(custom, expected, "every label kept, the record added");

    // Discovery reports the labels, not the agent's bookkeeping.
    let page = vault.list(&path, None, 10).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(
        page.entries[0].labels,
        BTreeMap::from([
            ("owner".to_owned(), "payments".to_owned()),
            ("cost center".to_owned(), "42 / eu".to_owned()),
            ("reviewed".to_owned(), "yes".to_owned()),
        ])
    );
}

#[tokio::test]
async fn two_attempts_of_one_job_running_at_once_write_one_version_and_both_report_it() {
    let (first, _t1) = common::vault().await;
    let (second, _t2) = common::vault().await;
    let path = common::unique("agent-test/once-concurrent");
    first.merge_write(&path, write(&[("password", "v1"), ("user", "app")], &[], None)).await.unwrap();
    let job = uuid::Uuid::new_v4().to_string();

    // The lease expired while the first attempt still ran: both write, in any interleaving.
    let (a, b) = tokio::join!(
        first.merge_write(&path, job_write(&job, &[("password", "v2")], Some("1"))),
        second.merge_write(&path, job_write(&job, &[("password", "v2")], Some("1"))),
    );
    assert_eq!((a.unwrap(), b.unwrap()), ("2".to_owned(), "2".to_owned()));
    assert_eq!(metadata(&path).await.0, 2, "one version");
}

#[tokio::test]
async fn of_two_jobs_racing_on_one_secret_one_writes_and_the_record_names_it() {
    let (first, _t1) = common::vault().await;
    let (second, _t2) = common::vault().await;
    let path = common::unique("agent-test/once-race");
    first.merge_write(&path, write(&[("password", "v1")], &[], None)).await.unwrap();
    let (job_a, job_b) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());

    let (a, b) = tokio::join!(
        first.merge_write(&path, job_write(&job_a, &[("password", "from-a")], None)),
        second.merge_write(&path, job_write(&job_b, &[("password", "from-b")], None)),
    );
    let (winner, value, loser) = match (&a, &b) {
        (Ok(_), Err(err)) => (&job_a, "from-a", err),
        (Err(err), Ok(_)) => (&job_b, "from-b", err),
        _ => panic!("exactly one of two writers of version 2 wins: {a:?} {b:?}"),
    };
    assert!(matches!(loser, ProviderError::VersionConflict(_)), "{loser}");
    let (version, custom) = metadata(&path).await;
    assert_eq!(version, 2);
    assert_eq!(custom.get(LAST_JOB_KEY), Some(winner), "the record names the writer of version 2");
    assert_eq!(custom.get(LAST_JOB_VERSION_KEY).map(String::as_str), Some("2"));
    assert_eq!(text(&first.read(&path, &[]).await.unwrap().values)["password"], value);

    // So the winner's retry is recognised.
    let again = second.merge_write(&path, job_write(winner, &[("password", value)], None)).await.unwrap();
    assert_eq!(again, "2");
    assert_eq!(metadata(&path).await.0, 2);
}

#[tokio::test]
async fn a_record_of_this_job_counts_only_with_the_write_it_describes() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/once-record");
    vault.merge_write(&path, write(&[("password", "v1")], &[], None)).await.unwrap();
    let job = uuid::Uuid::new_v4().to_string();

    // The agent recorded the job and died before writing: the retry writes.
    set_labels(&path, &[(LAST_JOB_KEY, &job), (LAST_JOB_VERSION_KEY, "2")]).await;
    assert_eq!(vault.merge_write(&path, job_write(&job, &[("password", "v2")], None)).await.unwrap(), "2");
    assert_eq!(text(&vault.read(&path, &[]).await.unwrap().values)["password"], "v2");

    // The job is recorded for version 3, but version 3 was written by someone else (who left
    // the record alone): the job did not write it, so it writes now.
    let late = uuid::Uuid::new_v4().to_string();
    set_labels(&path, &[(LAST_JOB_KEY, &late), (LAST_JOB_VERSION_KEY, "3")]).await;
    vaultrs::kv2::set(&root_client(), "secret", &path, &HashMap::from([("password", "by-someone-else")]))
        .await
        .unwrap();
    assert_eq!(vault.merge_write(&path, job_write(&late, &[("password", "v4")], None)).await.unwrap(), "4");
    assert_eq!(text(&vault.read(&path, &[]).await.unwrap().values)["password"], "v4");
    let (version, custom) = metadata(&path).await;
    assert_eq!(version, 4);
    assert_eq!(custom.get(LAST_JOB_VERSION_KEY).map(String::as_str), Some("4"));
}

#[tokio::test]
async fn the_first_write_of_a_new_secret_is_recorded_and_recognised_too() {
    let (vault, _token) = common::vault().await;
    let path = common::unique("agent-test/once-new");
    let job = uuid::Uuid::new_v4().to_string();
    assert_eq!(vault.merge_write(&path, job_write(&job, &[("k", "v")], Some("0"))).await.unwrap(), "1");
    assert_eq!(vault.merge_write(&path, job_write(&job, &[("k", "v")], Some("0"))).await.unwrap(), "1");
    let (version, custom) = metadata(&path).await;
    assert_eq!((version, custom.get(LAST_JOB_KEY)), (1, Some(&job)));
}

#[tokio::test]
async fn a_token_that_may_not_update_the_metadata_fails_the_patch_clearly_and_writes_nothing() {
    common::require_vault().await;
    let root = root_client();
    let path = common::unique("agent-test/once-denied");
    vaultrs::kv2::set(&root, "secret", &path, &HashMap::from([("password", "v1")])).await.unwrap();
    // What a policy written for the agent before the job record looked like.
    let policy = format!("sb-agent-data-only-{}", uuid::Uuid::new_v4().simple());
    let rules = r#"path "secret/data/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }"#;
    vaultrs::sys::policy::set(&root, &policy, rules).await.unwrap();
    let mut request = vaultrs::api::token::requests::CreateTokenRequest::builder();
    request.policies(vec![policy.clone()]).ttl("5m");
    let token = vaultrs::token::new(&root, Some(&mut request)).await.unwrap().client_token;
    let token_file = common::temp_file(&token);
    let vault = VaultKv2::connect(&common::vault_config(token_file.path().to_owned())).await.unwrap();

    let err = vault.merge_write(&path, job_write("job-denied", &[("password", "v2")], None)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Denied(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains(&format!("update on secret/metadata/{path}")), "names what is missing: {message}");
    assert_eq!(metadata(&path).await.0, 1, "nothing was written");
    vaultrs::sys::policy::delete(&root, &policy).await.unwrap();
}
