//! AWS Secrets Manager provider against the real `moto_server` (scripts/services.sh up moto).

mod common;

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::Tag;
use sb_agent::jobs::{Executor, PageSink};
use sb_agent::provider::{MergeWrite, NamedProvider, Provider, ProviderError, Scope};
use sb_agent::transport::TransportError;
use sb_core::crd::TargetRef;
use sb_core::protocol::{CatalogPage, ClaimedJob, DiscoverJob, JobOutcome, JobPayload, JobResult, PatchJob};
use sb_core::seal::{KeyPair, Purpose, SecretValue, seal};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

fn write(set: &[(&str, &str)], delete: &[&str], token: &str) -> MergeWrite {
    MergeWrite {
        set: set.iter().map(|(k, v)| (k.to_string(), SecretValue::from(*v))).collect(),
        delete: delete.iter().map(|k| k.to_string()).collect(),
        expected_version: None,
        idempotency_token: token.to_owned(),
    }
}

fn text(values: &BTreeMap<String, SecretValue>) -> BTreeMap<String, String> {
    values.iter().map(|(k, v)| (k.clone(), v.expose_str().unwrap().to_owned())).collect()
}

fn token() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn read_returns_only_the_selected_keys_and_reports_missing_ones() {
    let (aws, _sdk, _f) = common::aws().await;
    let name = common::unique("agent-test/read");
    aws.merge_write(&name, write(&[("user", "admin"), ("password", "pw-1")], &[], &token())).await.unwrap();

    let read = aws.read(&name, &["password".into(), "port".into()]).await.unwrap();
    assert_eq!(text(&read.values), BTreeMap::from([("password".into(), "pw-1".into())]));
    assert_eq!(read.missing, vec!["port".to_owned()]);
    assert!(read.version.is_some());
    assert!(matches!(aws.read(&format!("{name}-absent"), &[]).await, Err(ProviderError::NotFound(_))));
}

#[tokio::test]
async fn merge_write_keeps_untouched_keys_and_removes_listed_ones() {
    let (aws, _sdk, _f) = common::aws().await;
    let name = common::unique("agent-test/merge");
    let first = aws.merge_write(&name, write(&[("a", "1"), ("b", "2"), ("c", "3")], &[], &token())).await.unwrap();

    let mut change = write(&[("b", "20"), ("d", "4")], &["c"], &token());
    change.expected_version = Some(first.clone());
    let second = aws.merge_write(&name, change).await.unwrap();
    assert_ne!(first, second);
    let read = aws.read(&name, &[]).await.unwrap();
    assert_eq!(
        text(&read.values),
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "20".into()), ("d".into(), "4".into())])
    );
    assert_eq!(read.version.as_deref(), Some(second.as_str()));

    let mut stale = write(&[("a", "x")], &[], &token());
    stale.expected_version = Some(first);
    assert!(matches!(aws.merge_write(&name, stale).await, Err(ProviderError::VersionConflict(_))));
}

struct NoPages;
#[async_trait]
impl PageSink for NoPages {
    async fn send_page(&self, _: &str, _: &CatalogPage) -> Result<(), TransportError> {
        panic!("no page expected")
    }
}

fn executor(aws: impl Provider + 'static, page_size: u32) -> Executor {
    let named =
        NamedProvider { name: "aws".into(), scope: Scope::new(vec!["agent-test/".into()]), backend: Arc::new(aws) };
    Executor::new("edge".into(), KeyPair::derive_from_seed(b"aws-agent"), vec![named], page_size)
}

#[tokio::test]
async fn a_retried_patch_with_the_same_job_id_creates_one_version() {
    let (aws, sdk, _f) = common::aws().await;
    let name = common::unique("agent-test/retry");
    let initial = aws.merge_write(&name, write(&[("a", "1")], &[], &token())).await.unwrap();
    let exec = executor(aws, 10);

    let key = KeyPair::derive_from_seed(b"aws-agent");
    let target = TargetRef { agent: "edge".into(), provider: "aws".into(), reference: name.clone(), keys: vec![] };
    let aad = sb_core::binding::patch_aad("ns", "p", &target, "b");
    let envelope = seal(&key.public, Purpose::PatchValue, &aad, &SecretValue::from("2")).unwrap();
    let job = ClaimedJob {
        job_id: uuid::Uuid::new_v4().to_string(),
        lease_token: "lease-1".into(),
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        attempt: 1,
        payload: JobPayload::Patch(PatchJob {
            object_uid: "patch-uid".into(),
            namespace: "ns".into(),
            name: "p".into(),
            target,
            values: BTreeMap::from([("b".to_owned(), envelope)]),
            delete: vec![],
            expected_version: Some(initial),
        }),
    };
    let first = exec.execute(&job, &NoPages).await;
    // The lease expired before the completion arrived: the same job runs again.
    let retry = ClaimedJob { lease_token: "lease-2".into(), attempt: 2, ..job.clone() };
    let second = exec.execute(&retry, &NoPages).await;
    let JobOutcome::Succeeded(JobResult::Patch { provider_version }) = &first else { panic!("{first:?}") };
    assert_eq!(first, second, "the retry reports the same version");

    let versions = sdk.list_secret_version_ids().secret_id(&name).send().await.unwrap();
    assert_eq!(versions.versions().len(), 2, "initial version + exactly one patch version: {versions:?}");
    let current = sdk.get_secret_value().secret_id(&name).send().await.unwrap();
    assert_eq!(current.version_id(), Some(provider_version.as_str()));
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
async fn discovery_pages_through_more_than_100_secrets_with_their_tags() {
    let (aws, sdk, _f) = common::aws().await;
    let root = format!("{}/", common::unique("agent-test/discover"));
    for i in 0..105 {
        sdk.create_secret()
            .name(format!("{root}svc-{i:03}"))
            .secret_string(r#"{"value":"secret-canary"}"#)
            .tags(Tag::builder().key("owner").value(format!("team {i}")).build())
            .tags(Tag::builder().key("Env:Region").value("prod/eu").build())
            .send()
            .await
            .unwrap();
    }
    // A neighbour outside the prefix must not show up.
    sdk.create_secret().name(format!("{}x", root.trim_end_matches('/'))).secret_string("{}").send().await.unwrap();

    let exec = executor(aws, 10);
    let job = DiscoverJob {
        object_uid: "uid".into(),
        namespace: "ns".into(),
        name: "d".into(),
        agent: "edge".into(),
        provider: "aws".into(),
        path_prefix: Some(root.clone()),
        name_filter: None,
    };
    let claim = ClaimedJob {
        job_id: "discover-1".into(),
        lease_token: "lease".into(),
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        attempt: 1,
        payload: JobPayload::Discover(job),
    };
    let sink = Recorder::default();
    let outcome = exec.execute(&claim, &sink).await;
    let JobOutcome::Succeeded(JobResult::Discover { pages, total, complete }) = outcome else { panic!("{outcome:?}") };
    assert_eq!((total, complete), (105, true));
    assert!(pages >= 11, "page size 10 means at least 11 pages, got {pages}");
    let entries: Vec<_> = sink.0.into_inner().unwrap().into_iter().flat_map(|p| p.entries).collect();
    let mut refs: Vec<_> = entries.iter().map(|e| e.reference.clone()).collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), 105, "every secret exactly once");
    let one = entries.iter().find(|e| e.reference == format!("{root}svc-042")).unwrap();
    assert_eq!(one.labels.get("owner").map(String::as_str), Some("team 42"));
    assert_eq!(one.labels.get("Env:Region").map(String::as_str), Some("prod/eu"));
    assert!(!format!("{entries:?}").contains("secret-canary"), "discovery must never read values");
}

#[tokio::test]
async fn a_binary_secret_is_refused_not_overwritten() {
    let (aws, sdk, _f) = common::aws().await;
    let name = common::unique("agent-test/binary");
    sdk.create_secret()
        .name(&name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![0u8, 1, 2]))
        .send()
        .await
        .unwrap();
    let err = aws.merge_write(&name, write(&[("a", "1")], &[], &token())).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidValue(_)), "{err}");
    assert!(err.to_string().contains("binary"), "{err}");
    let versions = sdk.list_secret_version_ids().secret_id(&name).send().await.unwrap();
    assert_eq!(versions.versions().len(), 1, "nothing was written");
}
