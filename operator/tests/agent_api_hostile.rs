//! Hostile bodies and requests against the real agent API router, on SQLite and PostgreSQL:
//! each is answered with the right 4xx and an `ErrorBody` reason, the answer quotes nothing
//! of the body (a canary planted in every body never comes back), and the store is the same
//! afterwards, row for row (docs/reliability.md, "Agent API limits and hostile input").

mod common;

use axum::body::Body;
use common::{Flavor, TestDb, discover_job, read_job};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER, sealing_key_statement};
use sb_core::protocol::{CLAIM_PATH, ErrorBody, ErrorReason, HEARTBEAT_PATH, catalog_page_path, complete_path};
use sb_operator::api::{ApiConfig, ApiState, router};
use sb_operator::store::{Store, StoreOptions, StoredAuthKey};
use serde_json::{Value, json};
use sqlx::{Column, Row};
use std::time::Duration;
use tower::ServiceExt;

/// Planted in every hostile body; no answer may contain it.
const CANARY: &str = "canary-5f1d8e27";
/// The body limit these tests run with (the default is 1 MiB: `--agent-api-body-limit`).
const BODY_LIMIT: usize = 64 * 1024;
/// serde_json's nesting limit is 128; this is far beyond it.
const DEEP: usize = 10_000;

fn keys_of(agent: &str) -> AgentKeys {
    AgentKeys::from_seed(&[if agent == "edge" { 1 } else { 2 }; 32])
}

/// How a case's request is signed.
enum Signed {
    /// By this registered agent, over the exact bytes sent.
    As(&'static str),
    /// No signature header.
    Unsigned,
    /// This header value, as it is.
    Header(String),
    /// By edge, but over another body than the one sent.
    OverAnotherBody,
    /// By a key nobody registered, claiming to be edge.
    ByAStranger,
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    signed: Signed,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    reason: ErrorReason,
}

impl Case {
    fn post(what: &'static str, path: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            what,
            method: "POST",
            path: path.into(),
            signed: Signed::As("edge"),
            content_type: Some("application/json"),
            body: body.into(),
            status: StatusCode::BAD_REQUEST,
            reason: ErrorReason::MalformedRequest,
        }
    }

    fn expect(mut self, status: StatusCode, reason: ErrorReason) -> Self {
        (self.status, self.reason) = (status, reason);
        self
    }

    fn signed(mut self, signed: Signed) -> Self {
        self.signed = signed;
        self
    }

    fn content_type(mut self, content_type: Option<&'static str>) -> Self {
        self.content_type = content_type;
        self
    }
}

struct Fixture {
    _db: TestDb,
    store: Store,
    state: ApiState,
    /// Two read jobs and a discovery job leased to edge, a read job leased to other: (id, lease).
    read: (String, String),
    second_read: (String, String),
    discovery: (String, String),
    others: (String, String),
}

impl Fixture {
    async fn new(flavor: Flavor) -> Self {
        let db = TestDb::new(flavor).await;
        let store = db.store(StoreOptions::default()).await;
        for agent in ["edge", "other"] {
            let key = StoredAuthKey::new(&keys_of(agent).auth_public(), chrono::Utc::now().timestamp_millis());
            store.set_agent_keys("operator", agent, &[key]).await.unwrap();
        }
        let read = store.enqueue_job("operator", read_job("edge", "uid-read", 1)).await.unwrap().job_id;
        let second_read = store.enqueue_job("operator", read_job("edge", "uid-read-2", 1)).await.unwrap().job_id;
        let discovery = store.enqueue_job("operator", discover_job("edge", "uid-scan")).await.unwrap().job_id;
        let others = store.enqueue_job("operator", read_job("other", "uid-other", 1)).await.unwrap().job_id;
        let config =
            ApiConfig { body_limit: BODY_LIMIT, max_claim_wait: Duration::from_secs(1), ..ApiConfig::default() };
        let state = ApiState::new(store.clone(), config);
        let mut fixture = Self {
            _db: db,
            store,
            state,
            read: (read, String::new()),
            second_read: (second_read, String::new()),
            discovery: (discovery, String::new()),
            others: (others, String::new()),
        };
        for agent in ["edge", "other"] {
            let (status, body) =
                fixture.send("POST", CLAIM_PATH, Signed::As(agent), Some("application/json"), claim_body()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            for job in body["jobs"].as_array().unwrap() {
                let (id, lease) = (job["jobId"].as_str().unwrap(), job["leaseToken"].as_str().unwrap().to_owned());
                for slot in [&mut fixture.read, &mut fixture.second_read, &mut fixture.discovery, &mut fixture.others] {
                    if slot.0 == id {
                        slot.1 = lease.clone();
                    }
                }
            }
        }
        for (id, lease) in [&fixture.read, &fixture.second_read, &fixture.discovery, &fixture.others] {
            assert!(!lease.is_empty(), "job {id} was claimed");
        }
        fixture
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        signed: Signed,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let (status, bytes) = self.send_raw(method, path, signed, content_type, body).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn send_raw(
        &self,
        method: &str,
        path: &str,
        signed: Signed,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let now = chrono::Utc::now().timestamp();
        let header = match signed {
            Signed::As(agent) => {
                Some(RequestSignature::sign(&keys_of(agent), agent, method, path, now, &body).to_header())
            }
            Signed::Unsigned => None,
            Signed::Header(value) => Some(value),
            Signed::OverAnotherBody => {
                Some(RequestSignature::sign(&keys_of("edge"), "edge", method, path, now, b"{}").to_header())
            }
            Signed::ByAStranger => {
                Some(RequestSignature::sign(&AgentKeys::generate(), "edge", method, path, now, &body).to_header())
            }
        };
        let mut request = Request::builder().method(method).uri(path);
        if let Some(header) = header {
            request = request.header(SIGNATURE_HEADER, header);
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = router(self.state.clone()).oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    /// Every row of every table an agent request may touch, as text.
    async fn snapshot(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for table in ["jobs", "agents", "catalog_pages", "audit_events", "audit_head"] {
            let found =
                sqlx::query(&format!("SELECT * FROM {table} ORDER BY 1")).fetch_all(self.store.pool()).await.unwrap();
            for row in found {
                let mut line = format!("{table}:");
                for (i, column) in row.columns().iter().enumerate() {
                    let value = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        format!("{:?}", v.map(hex::encode))
                    } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                        format!("{v:?}")
                    } else {
                        panic!("{table}.{} has a type this snapshot cannot read", column.name());
                    };
                    line.push_str(&format!(" {}={value}", column.name()));
                }
                rows.push(line);
            }
        }
        rows
    }
}

fn claim_body() -> Vec<u8> {
    json!({"maxJobs": 16, "waitSeconds": 0}).to_string().into_bytes()
}

/// A failed completion, valid in every way, with the canary in its message.
fn failure(lease: &str) -> Value {
    json!({"leaseToken": lease, "outcome": {"status": "Failed", "result": {"reason": "NotFound", "message": CANARY, "retryable": false}}})
}

fn text(value: Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// A heartbeat that passes every check, with `version` as agentVersion.
fn heartbeat(version: &str) -> Value {
    let keys = keys_of("edge");
    let sealing = keys.sealing();
    let signed_at = "2026-12-01T10:00:00Z";
    let statement = sealing_key_statement("edge", &sealing.public.to_base64(), &sealing.key_id(), signed_at);
    json!({
        "agentVersion": version,
        "sealingPublicKey": sealing.public.to_base64(),
        "sealingKeyId": sealing.key_id(),
        "sealingKeySignedAt": signed_at,
        "sealingKeySignature": keys.sign(&statement),
        "providers": [{"name": "vault", "healthy": true}],
    })
}

fn cases(f: &Fixture) -> Vec<Case> {
    use ErrorReason::*;
    let (read, lease) = (&f.read.0, &f.read.1);
    let complete = complete_path(read);
    let catalog = catalog_page_path(&f.discovery.0);
    let page = |entries: &str| format!(r#"{{"leaseToken":"{}","page":0,"entries":{entries}}}"#, f.discovery.1);
    let nested = |open: &str, close: &str| format!("{}\"{CANARY}\"{}", open.repeat(DEEP), close.repeat(DEEP));
    let mut oversized = failure(lease);
    oversized["outcome"]["result"]["message"] = json!(format!("{CANARY}{}", "a".repeat(BODY_LIMIT)));
    let mut invalid_utf8 = text(failure(lease));
    let at = invalid_utf8.windows(CANARY.len()).position(|w| w == CANARY.as_bytes()).unwrap();
    invalid_utf8.splice(at + CANARY.len()..at + CANARY.len(), [0xff, 0xfe]);
    let mut bare_invalid_utf8 = format!("{{\"leaseToken\": \"{lease}\", \"{CANARY}\": ").into_bytes();
    bare_invalid_utf8.extend_from_slice(&[0xc3, 0x28, b'}']);
    vec![
        // Size.
        Case::post("a body beyond the limit", &complete, text(oversized)).expect(StatusCode::PAYLOAD_TOO_LARGE, PayloadTooLarge),
        Case::post("a claim beyond the limit", CLAIM_PATH, format!("{{\"maxJobs\":1,\"waitSeconds\":0,\"x\":\"{CANARY}{}\"}}", " ".repeat(BODY_LIMIT)))
            .expect(StatusCode::PAYLOAD_TOO_LARGE, PayloadTooLarge),
        // Content types: each body is otherwise a valid completion that would end the job.
        Case::post("text/plain", &complete, text(failure(lease)))
            .content_type(Some("text/plain"))
            .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, MalformedRequest),
        Case::post("no content type", &complete, text(failure(lease)))
            .content_type(None)
            .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, MalformedRequest),
        Case::post("a form", &complete, text(failure(lease)))
            .content_type(Some("application/x-www-form-urlencoded"))
            .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, MalformedRequest),
        Case::post("application/json-seq", &complete, text(failure(lease)))
            .content_type(Some("application/json-seq"))
            .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, MalformedRequest),
        // Nesting.
        Case::post("10,000 [ as the whole body", &complete, nested("[", "]")),
        Case::post("10,000 { in an unknown field", &complete, format!("{{\"leaseToken\":\"{lease}\",\"x\":{}}}", nested("{\"a\":", "}"))),
        Case::post(
            "10,000 [ where a job result is buffered before its tag",
            &complete,
            format!("{{\"leaseToken\":\"{lease}\",\"outcome\":{{\"result\":{},\"status\":\"Succeeded\"}}}}", nested("[", "]")),
        ),
        Case::post("10,000 [ in a label", &catalog, page(&format!("[{{\"reference\":\"r\",\"labels\":{{\"k\":{}}}}}]", nested("[", "]")))),
        // Shape.
        Case::post("an unknown field", &complete, {
            let mut body = failure(lease);
            body[CANARY] = json!(CANARY);
            text(body)
        }),
        Case::post("an unknown field inside the result", &complete, {
            let mut body = failure(lease);
            body["outcome"]["result"]["extra"] = json!(CANARY);
            text(body)
        }),
        Case::post("a wrong type", &complete, format!("{{\"leaseToken\":\"{lease}\",\"outcome\":{{\"status\":\"Failed\",\"result\":\"{CANARY}\"}}}}")),
        Case::post("a number out of range", CLAIM_PATH, format!("{{\"maxJobs\":1e400,\"waitSeconds\":0,\"note\":\"{CANARY}\"}}")),
        Case::post("trailing data after the document", &complete, format!("{} {CANARY}", failure(lease))),
        Case::post("an empty body", &complete, Vec::new()),
        // Duplicate keys: serde would keep the last one, another parser the first.
        Case::post(
            "a repeated field",
            &complete,
            format!("{{\"leaseToken\":\"{lease}\",\"leaseToken\":\"{CANARY}\",\"outcome\":{}}}", failure(lease)["outcome"]),
        ),
        Case::post("a repeated label", &catalog, page(&format!("[{{\"reference\":\"team-a/db\",\"labels\":{{\"team\":\"a\",\"team\":\"{CANARY}\"}}}}]"))),
        Case::post(
            "a repeated delivery key",
            &complete,
            {
                let envelope = |kid: &str| {
                    json!({"v": 1, "alg": "HPKE-X25519-SHA256-A256GCM", "kid": kid, "enc": "A".repeat(44), "ct": "A".repeat(24)})
                };
                format!(
                    "{{\"leaseToken\":\"{lease}\",\"outcome\":{{\"status\":\"Succeeded\",\"result\":{{\"kind\":\"Read\",\"data\":{{\"deliveries\":{{\"password\":{},\"password\":{}}}}}}}}}}}",
                    envelope("x25519:0000000000000000"),
                    envelope(CANARY)
                )
            },
        ),
        Case::post(
            "a repeated field inside the result",
            &complete,
            format!(
                "{{\"leaseToken\":\"{lease}\",\"outcome\":{{\"status\":\"Succeeded\",\"result\":{{\"kind\":\"Read\",\"data\":{{\"deliveries\":{{}},\"missingKeys\":[\"password\"],\"providerVersion\":\"1\",\"providerVersion\":\"{CANARY}\"}}}}}}}}"
            ),
        ),
        // Encoding.
        Case::post("invalid UTF-8 in a string", &complete, invalid_utf8),
        Case::post("invalid UTF-8 outside a string", &complete, bare_invalid_utf8),
        Case::post("a UTF-8 byte-order mark", &complete, [b"\xef\xbb\xbf".as_slice(), &text(failure(lease))].concat()),
        Case::post("a NUL in a failure reason", &complete, {
            let mut body = failure(lease);
            body["outcome"]["result"]["reason"] = json!(format!("NotFound\u{0}{CANARY}"));
            text(body)
        })
        .expect(StatusCode::UNPROCESSABLE_ENTITY, InvalidField),
        Case::post("a NUL in a label", &catalog, page(&format!("[{{\"reference\":\"team-a/db\",\"labels\":{{\"team\":\"\\u0000{CANARY}\"}}}}]")))
            .expect(StatusCode::UNPROCESSABLE_ENTITY, InvalidField),
        Case::post("a NUL in the agent version", HEARTBEAT_PATH, text(heartbeat(&format!("1.0\u{0}{CANARY}"))))
            .expect(StatusCode::UNPROCESSABLE_ENTITY, InvalidField),
        // Values the store would keep and Kubernetes would refuse.
        Case::post("a failure reason that is not a condition reason", &complete, {
            let mut body = failure(lease);
            body["outcome"]["result"]["reason"] = json!(format!("not found {CANARY}"));
            text(body)
        })
        .expect(StatusCode::UNPROCESSABLE_ENTITY, InvalidField),
        Case::post("an agent version of 4 KiB", HEARTBEAT_PATH, text(heartbeat(&format!("{CANARY}{}", "9".repeat(4096)))))
            .expect(StatusCode::UNPROCESSABLE_ENTITY, InvalidField),
        // Leases and ownership.
        Case::post("the lease token of another job", &complete, text(failure(&f.second_read.1)))
            .expect(StatusCode::CONFLICT, StaleLease),
        Case::post("a made-up lease token", &complete, text(failure(CANARY))).expect(StatusCode::CONFLICT, StaleLease),
        Case::post("a completion for another agent's job", complete_path(&f.others.0), text(failure(&f.others.1)))
            .expect(StatusCode::FORBIDDEN, Forbidden),
        Case::post(
            "a discovery page for a read job",
            catalog_page_path(read),
            format!("{{\"leaseToken\":\"{lease}\",\"page\":0,\"entries\":[{{\"reference\":\"{CANARY}\",\"labels\":{{}}}}]}}"),
        )
        .expect(StatusCode::UNPROCESSABLE_ENTITY, InvalidField),
        Case::post(
            "a discovery page for another agent's job",
            catalog_page_path(&f.others.0),
            page(&format!("[{{\"reference\":\"{CANARY}\",\"labels\":{{}}}}]")),
        )
            .expect(StatusCode::FORBIDDEN, Forbidden),
        Case::post("a result of another kind", &complete, {
            format!("{{\"leaseToken\":\"{lease}\",\"outcome\":{{\"status\":\"Succeeded\",\"result\":{{\"kind\":\"Patch\",\"data\":{{\"providerVersion\":\"{CANARY}\"}}}}}}}}")
        })
        .expect(StatusCode::UNPROCESSABLE_ENTITY, InvalidField),
        // Job ids in the path.
        Case::post("a job that does not exist", complete_path(&uuid::Uuid::new_v4().to_string()), text(failure(lease)))
            .expect(StatusCode::NOT_FOUND, NotFound),
        Case::post("a job id that is not UTF-8", "/v1/agent/jobs/%FF%FE/complete", text(failure(lease)))
            .expect(StatusCode::NOT_FOUND, NotFound),
        Case::post("a job id holding a NUL", "/v1/agent/jobs/%00/complete", text(failure(lease)))
            .expect(StatusCode::NOT_FOUND, NotFound),
        Case::post("a job id of 8 KiB", complete_path(&"a".repeat(8192)), text(failure(lease)))
            .expect(StatusCode::NOT_FOUND, NotFound),
        Case::post("a job id in another spelling", complete_path(&read.to_uppercase()), text(failure(lease)))
            .expect(StatusCode::NOT_FOUND, NotFound),
        // Signatures (each body would otherwise end the job).
        Case::post("no signature", &complete, text(failure(lease)))
            .signed(Signed::Unsigned)
            .expect(StatusCode::UNAUTHORIZED, Unauthenticated),
        Case::post("a garbled signature", &complete, text(failure(lease)))
            .signed(Signed::Header("agent=edge, key=SHA256:x, ts=soon, sig=%%%".into()))
            .expect(StatusCode::UNAUTHORIZED, Unauthenticated),
        Case::post("a signature header with an unknown part", &complete, text(failure(lease)))
            .signed(Signed::Header(format!("agent=edge, key=k, ts=1, sig=s, note={CANARY}")))
            .expect(StatusCode::UNAUTHORIZED, Unauthenticated),
        Case::post("a signature claiming a non-name agent", &complete, text(failure(lease)))
            .signed(Signed::Header(format!(
                "agent=<{CANARY}>, key={}, ts={}, sig=AAAA",
                keys_of("edge").auth_public().fingerprint(),
                chrono::Utc::now().timestamp()
            )))
            .expect(StatusCode::UNAUTHORIZED, Unauthenticated),
        Case::post("a signature over another body", &complete, text(failure(lease)))
            .signed(Signed::OverAnotherBody)
            .expect(StatusCode::UNAUTHORIZED, Unauthenticated),
        Case::post("a signature by an unregistered key", &complete, text(failure(lease)))
            .signed(Signed::ByAStranger)
            .expect(StatusCode::UNAUTHORIZED, Unauthenticated),
        // Methods and routes.
        Case { method: "PUT", ..Case::post("PUT on a route", &complete, text(failure(lease))) }
            .expect(StatusCode::METHOD_NOT_ALLOWED, MalformedRequest),
        Case::post("a route that does not exist", format!("/v1/agent/{CANARY}"), text(failure(lease))).expect(StatusCode::NOT_FOUND, NotFound),
    ]
}

async fn hostile_requests_get_a_reason_quote_nothing_and_change_nothing(flavor: Flavor) {
    let f = Fixture::new(flavor).await;
    let mut before = f.snapshot().await;
    let cases = cases(&f);
    let mut wrong = Vec::new();
    for case in cases {
        assert!(
            case.body.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()) || case.body.is_empty(),
            "{}: the case plants no canary",
            case.what
        );
        let (status, bytes) = f.send_raw(case.method, &case.path, case.signed, case.content_type, case.body).await;
        let answer = String::from_utf8_lossy(&bytes).into_owned();
        let parsed = serde_json::from_slice::<ErrorBody>(&bytes);
        let after = f.snapshot().await;
        let mut problems = Vec::new();
        if status != case.status {
            problems.push(format!("status {status}, expected {}", case.status));
        }
        match &parsed {
            Ok(error) if error.reason != case.reason => {
                problems.push(format!("reason {:?}, expected {:?}", error.reason, case.reason))
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("the answer is not an ErrorBody ({e})")),
        }
        if answer.contains(CANARY) {
            problems.push("the answer quotes the request".into());
        }
        if answer.len() > 512 {
            problems.push(format!("the answer is {} bytes long", answer.len()));
        }
        if after != before {
            let changed: Vec<String> =
                after.iter().filter(|row| !before.contains(row)).map(|row| row.chars().take(160).collect()).collect();
            problems.push(format!("the store changed: {changed:?}"));
        }
        if !problems.is_empty() {
            wrong.push(format!(
                "{}: {} — answer: {}",
                case.what,
                problems.join("; "),
                answer.chars().take(300).collect::<String>()
            ));
        }
        // Later cases are judged against the store as this one left it.
        before = after;
    }
    assert!(wrong.is_empty(), "{} case(s) answered wrongly:\n{}", wrong.len(), wrong.join("\n"));

    // The same requests, well formed, are accepted: the refusals above were about the flaw.
    let (status, body) = f
        .send(
            "POST",
            HEARTBEAT_PATH,
            Signed::As("edge"),
            Some("application/json; charset=utf-8"),
            text(heartbeat("1.2.3")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries = r#"[{"reference":"team-a/db","labels":{"team":"a"}}]"#;
    let page = format!(r#"{{"leaseToken":"{}","page":0,"entries":{entries}}}"#, f.discovery.1);
    let (status, body) = f
        .send("POST", &catalog_page_path(&f.discovery.0), Signed::As("edge"), Some("application/json"), page.into())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = f
        .send("POST", &complete_path(&f.read.0), Signed::As("edge"), Some("Application/JSON"), text(failure(&f.read.1)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], false);
    let (status, body) = f
        .send(
            "POST",
            &complete_path(&f.others.0),
            Signed::As("other"),
            Some("application/json"),
            text(failure(&f.others.1)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

on_both_databases!(hostile_requests_get_a_reason_quote_nothing_and_change_nothing);
