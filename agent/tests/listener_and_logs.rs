//! The agent binary under hostile configuration: a health/metrics listener asked for beyond
//! loopback, and `RUST_LOG` asking every HTTP client, TLS stack and SDK for its most verbose
//! output (bodies included) while it reads and patches secrets in the real OpenBao and moto.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use common::fake_operator::{AGENT_ID, Operator, fake_operator, wait_until};
use common::tls_server::{TestPki, TlsServer, serve};
use sb_agent::provider::{MergeWrite, Provider};
use sb_core::crd::TargetRef;
use sb_core::identity::AgentKeys;
use sb_core::protocol::{ClaimedJob, JobOutcome, JobPayload, JobResult, PatchJob, ReadJob};
use sb_core::seal::{KeyPair, Purpose, SecretValue, seal};
use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tempfile::NamedTempFile;

/// Everything a `RUST_LOG` can ask of the dependencies that see requests and responses: a bare
/// `trace`, each crate at trace, more specific module targets than the agent's cap names (the
/// AWS SDK prints whole requests from `aws_smithy_runtime::client::orchestrator` at trace),
/// and a span directive that enables every event inside vaultrs' `request` spans.
const HOSTILE_LOG: &str = "trace,hyper=trace,hyper_util=trace,reqwest=trace,aws_smithy_runtime_api=trace,\
    aws_smithy_runtime=trace,vaultrs=trace,rustify=trace,hyper::proto=trace,hyper_util::client=trace,\
    reqwest::connect=trace,aws_smithy_runtime::client::orchestrator=trace,aws_smithy_http_client=trace,\
    aws_sigv4=trace,vaultrs::api=trace,rustify::client=trace,h2=trace,rustls=trace,[request]=trace";

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fake operator, the agent's keys and its files, ready to start `sb-agent`.
struct Harness {
    state: Arc<Operator>,
    server: TlsServer,
    pki: TestPki,
    keys: AgentKeys,
    ca: NamedTempFile,
    config: NamedTempFile,
    _files: Vec<NamedTempFile>,
}

impl Harness {
    /// With the OpenBao provider `vault` and, when `aws_secret_file` is given, the moto
    /// provider `aws`.
    async fn new(vault_token: NamedTempFile, aws_secret_file: Option<NamedTempFile>) -> Self {
        let keys = AgentKeys::generate();
        let state = Arc::new(Operator::registering(&keys));
        let pki = TestPki::generate();
        let server = serve(&pki, fake_operator(state.clone())).await;
        let ca = common::temp_file(&pki.ca_pem);
        let mut config = format!(
            "providers:\n  - name: vault\n    type: Vault\n    address: {}\n    auth: {{ method: token, tokenFile: {} }}\n    allowedPrefixes: [\"agent-test/\"]\n",
            common::vault_addr(),
            vault_token.path().display()
        );
        if let Some(secret) = &aws_secret_file {
            config.push_str(&format!(
                "  - name: aws\n    type: AwsSecretsManager\n    region: us-east-1\n    endpoint: {}\n    staticCredentials: {{ accessKeyId: testing, secretAccessKeyFile: {} }}\n    allowedPrefixes: [\"agent-test/\"]\n",
                common::aws_endpoint(),
                secret.path().display()
            ));
        }
        let config = common::temp_file(&config);
        let files = std::iter::once(vault_token).chain(aws_secret_file).collect();
        Self { state, server, pki, keys, ca, config, _files: files }
    }

    /// `sb-agent` with this harness' identity, operator and configuration, and `args`. The
    /// environment variables the test sets are removed first, so only what it passes counts.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sb-agent"));
        command
            .env_remove("SB_IDENTITY_FILE")
            .env_remove("SB_HEALTH_ADDR")
            .env_remove("SB_HEALTH_LISTEN_ANY")
            .env_remove("LOG_SENSITIVE_BODIES")
            .env("SB_AGENT_ID", AGENT_ID)
            .env("SB_AGENT_KEY", self.keys.seed_base64().as_str())
            .env("RUST_LOG", "info")
            .args(["--config", self.config.path().to_str().unwrap()])
            .args(["--operator-url", &self.server.url, "--ca-file", self.ca.path().to_str().unwrap()])
            .args(["--spki-pin", &self.pki.pin, "--claim-wait-seconds", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// A started agent whose stdout and stderr are read while it runs (a verbose agent would
/// otherwise block on a full pipe).
struct Running {
    child: tokio::process::Child,
    readers: Vec<tokio::task::JoinHandle<Vec<u8>>>,
}

fn start(mut command: tokio::process::Command) -> Running {
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let readers = vec![tokio::spawn(read_all(stdout)), tokio::spawn(read_all(stderr))];
    Running { child, readers }
}

async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut out = Vec::new();
    let _ = pipe.read_to_end(&mut out).await;
    out
}

/// Stops a running agent with SIGTERM and returns its exit status and everything it printed.
async fn stop(running: Running) -> (ExitStatus, String) {
    let Running { mut child, readers } = running;
    let pid = child.id().expect("the agent is running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the agent exits within 20 s of SIGTERM")
        .unwrap();
    let mut logs = String::new();
    for reader in readers {
        logs.push_str(&String::from_utf8_lossy(&reader.await.unwrap()));
    }
    (status, logs)
}

/// `/healthz` of `addr` answers 200, within a bounded wait.
async fn wait_for_health(addr: &str) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    for _ in 0..150 {
        if let Ok(response) = client.get(format!("http://{addr}/healthz")).send().await
            && response.status().as_u16() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz on {addr} did not answer within 15 s");
}

/// The start-up line naming the health listener's address, if the logs have one.
fn health_line<'a>(logs: &'a str, addr: &str) -> Option<&'a str> {
    let field = format!("\"health_addr\":\"{addr}\"");
    logs.lines().find(|line| line.contains(&field) && line.contains("/healthz, /readyz and /metrics"))
}

#[tokio::test]
async fn the_health_listener_is_refused_beyond_loopback_unless_allowed_and_says_where_it_listens() {
    let (_vault, token) = common::vault().await;
    let harness = Harness::new(token, None).await;
    let port = free_port();
    let any = format!("0.0.0.0:{port}");

    // Without the flag: a clear refusal, before anything listens.
    for allow in [None, Some("false")] {
        let mut command = harness.command(&["--health-addr", &any]);
        if let Some(value) = allow {
            command.env("SB_HEALTH_LISTEN_ANY", value);
        }
        let out = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .expect("the agent refuses and exits at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{any} must be refused (SB_HEALTH_LISTEN_ANY={allow:?})\n{stderr}");
        assert!(
            stderr.contains(&format!("refusing to serve /healthz, /readyz and /metrics on {any}"))
                && stderr.contains("not a loopback address")
                && stderr.contains("--health-listen-any"),
            "the refusal names the address and the way out:\n{stderr}"
        );
        assert!(harness.state.heartbeats.lock().unwrap().is_empty(), "a refused agent does not start");
    }

    // With the flag, or its variable: it starts, serves there, and its start-up line says so.
    for (args, env) in [(vec!["--health-listen-any"], None), (vec![], Some("true"))] {
        let mut command = harness.command(&[&["--health-addr", any.as_str()][..], &args[..]].concat());
        if let Some(value) = env {
            command.env("SB_HEALTH_LISTEN_ANY", value);
        }
        let running = start(command);
        wait_for_health(&format!("127.0.0.1:{port}")).await;
        let (status, logs) = stop(running).await;
        assert!(status.success(), "agent exit {status:?}\n{logs}");
        let line = health_line(&logs, &any).unwrap_or_else(|| panic!("no start-up line names {any}:\n{logs}"));
        assert!(line.contains("beyond loopback") && line.contains("\"WARN\""), "{line}");
    }
}

/// Every form in which `text` could sit in a log line: verbatim, as hex, and as base64
/// (standard and URL-safe alphabets) at each of the three alignments it can have inside a
/// longer encoded body: the part of the encoding that depends on `text` alone.
fn encoded_forms(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut forms = vec![text.to_owned(), bytes.iter().map(|b| format!("{b:02x}")).collect()];
    for shift in 0..3 {
        let rest = &bytes[shift..];
        let aligned = &rest[..rest.len() - rest.len() % 3];
        forms.push(STANDARD.encode(aligned));
        forms.push(URL_SAFE.encode(aligned));
    }
    forms.sort();
    forms.dedup();
    forms
}

/// The forms of `text` that `logs` contains.
fn sightings(logs: &str, text: &str) -> Vec<String> {
    encoded_forms(text).into_iter().filter(|form| logs.contains(form.as_str())).collect()
}

/// The lines of `logs` holding one of `needles`, each cut to 2,000 characters (a failure
/// message, not the whole trace).
fn lines_with(logs: &str, needles: &[String]) -> String {
    let hits: Vec<&str> = logs.lines().filter(|l| needles.iter().any(|n| l.contains(n.as_str()))).collect();
    let shown: Vec<String> = hits.iter().take(10).map(|l| l.chars().take(2000).collect()).collect();
    format!("{} line(s), the first {}:\n{}", hits.len(), shown.len(), shown.join("\n"))
}

fn patch_job(id: &str, agent: &KeyPair, provider: &str, reference: &str, key: &str, value: &str) -> ClaimedJob {
    let target =
        TargetRef { agent: AGENT_ID.into(), provider: provider.into(), reference: reference.into(), keys: vec![] };
    let aad = sb_core::binding::patch_aad("team-a", "logs", &target, key);
    let envelope = seal(&agent.public, Purpose::PatchValue, &aad, &SecretValue::from(value)).unwrap();
    ClaimedJob {
        job_id: id.into(),
        lease_token: format!("lease-{id}"),
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        attempt: 1,
        payload: JobPayload::Patch(PatchJob {
            object_uid: format!("uid-{id}"),
            namespace: "team-a".into(),
            name: "logs".into(),
            target,
            values: BTreeMap::from([(key.to_owned(), envelope)]),
            delete: vec![],
            expected_version: None,
        }),
    }
}

fn read_job(id: &str, requester: &KeyPair, provider: &str, reference: &str, key: &str) -> ClaimedJob {
    ClaimedJob {
        job_id: id.into(),
        lease_token: format!("lease-{id}"),
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        attempt: 1,
        payload: JobPayload::Read(ReadJob {
            object_uid: format!("uid-{id}"),
            namespace: "team-a".into(),
            name: "logs".into(),
            target: TargetRef {
                agent: AGENT_ID.into(),
                provider: provider.into(),
                reference: reference.into(),
                keys: vec![key.to_owned()],
            },
            recipient: requester.public.to_base64(),
        }),
    }
}

fn setup_write(key: &str, value: &str) -> MergeWrite {
    MergeWrite {
        set: BTreeMap::from([(key.to_owned(), SecretValue::from(value))]),
        delete: vec![],
        expected_version: None,
        idempotency_token: uuid::Uuid::new_v4().to_string(),
    }
}

#[tokio::test]
async fn no_log_directive_prints_a_value_read_or_patched_through_openbao_and_aws() {
    let (vault, token) = common::vault().await;
    let (aws, _sdk, aws_secret) = common::aws().await;
    let canary = format!("canary{}", uuid::Uuid::new_v4().simple());
    // Legitimately logged, so they show the search sees the logs: the key name (debug lines of
    // the agent's own job steps), a marker in the references (every step's `target`), and a
    // marker planted base64-encoded in the job ids.
    let key = format!("canarykey{}", uuid::Uuid::new_v4().simple());
    let marker = format!("marker{}", uuid::Uuid::new_v4().simple());
    let planted = format!("planted{}", uuid::Uuid::new_v4().simple());
    let job = |kind: &str| format!("{kind}-{}", URL_SAFE_NO_PAD.encode(&planted));
    let (read_ref, patch_ref) = (format!("agent-test/logs-read-{marker}"), format!("agent-test/logs-patch-{marker}"));
    vault.merge_write(&read_ref, setup_write(&key, &canary)).await.unwrap();
    aws.merge_write(&read_ref, setup_write(&key, &canary)).await.unwrap();

    let harness = Harness::new(token, Some(aws_secret)).await;
    let sealing = harness.keys.sealing();
    let requester = KeyPair::generate();
    harness.state.queue.lock().unwrap().extend([
        read_job(&job("vault-read"), &requester, "vault", &read_ref, &key),
        patch_job(&job("vault-patch"), sealing, "vault", &patch_ref, &key, &canary),
        read_job(&job("aws-read"), &requester, "aws", &read_ref, &key),
        patch_job(&job("aws-patch"), sealing, "aws", &patch_ref, &key, &canary),
    ]);
    let health = format!("127.0.0.1:{}", free_port());
    let mut command = harness.command(&["--health-addr", &health, "--max-concurrent-jobs", "4"]);
    command.env("RUST_LOG", HOSTILE_LOG);
    // The AWS SDK's own switch for printing sensitive bodies: the cap holds regardless.
    command.env("LOG_SENSITIVE_BODIES", "true");
    let running = start(command);
    wait_until("four completions", || harness.state.completions.lock().unwrap().len() >= 4).await;
    let (status, logs) = stop(running).await;
    assert!(status.success(), "agent exit {status:?}\n{logs}");

    // The jobs really went through the providers with the canary.
    for (id, completion) in harness.state.completions.lock().unwrap().iter() {
        match &completion.outcome {
            JobOutcome::Succeeded(JobResult::Read { deliveries, .. }) => {
                let target = if id.starts_with("vault") { "vault" } else { "aws" };
                let canonical = TargetRef {
                    agent: AGENT_ID.into(),
                    provider: target.into(),
                    reference: read_ref.clone(),
                    keys: vec![key.clone()],
                }
                .canonical();
                let aad = sb_core::seal::Aad::new(format!("uid-{id}"), canonical, key.as_str());
                let value = sb_core::seal::open(&requester, Purpose::ReadDelivery, &aad, &deliveries[&key]).unwrap();
                assert_eq!(value.expose_str().unwrap(), canary, "{id}");
            }
            JobOutcome::Succeeded(JobResult::Patch { .. }) => {}
            other => panic!("job {id} did not succeed: {other:?}\n{logs}"),
        }
    }
    for provider in [&vault as &dyn Provider, &aws] {
        let read = provider.read(&patch_ref, &[]).await.unwrap();
        assert_eq!(read.values[&key].expose_str().unwrap(), canary, "the patch wrote the canary");
    }

    // Positive controls: the search looks at real, verbose logs and finds what is in them.
    assert!(logs.lines().any(|l| l.contains("\"DEBUG\"") && l.contains(&key)), "the key name is logged:\n{logs}");
    assert!(sightings(&logs, &marker).contains(&marker), "the references are logged:\n{logs}");
    let planted_seen = sightings(&logs, &planted);
    assert!(planted_seen.iter().any(|form| form != &planted), "a base64 form is found: {planted_seen:?}\n{logs}");
    assert!(health_line(&logs, &health).is_some(), "the start-up line names {health}:\n{logs}");

    // No value, in any encoding, anywhere.
    let seen = sightings(&logs, &canary);
    assert!(seen.is_empty(), "the canary was logged as {seen:?}, in:\n{}", lines_with(&logs, &seen));
    // And no dependency got below info, whatever RUST_LOG asked.
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        let (level, target) = (event["level"].as_str().unwrap_or(""), event["target"].as_str().unwrap_or(""));
        let own = ["sb_agent", "sb_core"].iter().any(|own| target == *own || target.starts_with(&format!("{own}::")));
        assert!(own || !matches!(level, "DEBUG" | "TRACE"), "a dependency logged at {level}: {line}");
    }
}

#[test]
fn the_canary_search_finds_each_encoding_at_every_alignment() {
    let text = "canary0123456789abcdef";
    for prefix in ["", "x", "xy"] {
        let body = format!("{{\"password\":\"{prefix}{text}\"}}");
        for encoded in [STANDARD.encode(&body), URL_SAFE.encode(&body), URL_SAFE_NO_PAD.encode(&body)] {
            assert!(!sightings(&encoded, text).is_empty(), "{prefix:?}: {encoded}");
        }
    }
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!sightings(&format!("body={hex}"), text).is_empty());
    assert!(sightings("nothing to see", text).is_empty());
}
