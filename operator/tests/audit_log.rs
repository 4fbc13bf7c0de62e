//! The audit trail on SQLite and PostgreSQL: append-only at the database, linked by HMAC under
//! a key the database holds only wrapped, checked against a checkpoint kept outside it; and
//! `sb-operator audit verify` names what a database owner did, each with its own exit code.
//!
//! The attacks are what someone who owns the database can do: drop the guards, edit rows,
//! recompute every hash with the documented plain SHA-256 formula, delete the tail and fix up
//! the head record, edit the head, move the switch-over from v1.

mod common;

use base64::Engine;
use common::{Flavor, TestDb, object, read_job};
use hmac::{Hmac, Mac};
use sb_core::protocol::{CompleteRequest, JobOutcome, JobResult};
use sb_operator::audit::{
    AUDIT_KEY_CONTEXT, AuditEvent, AuditObject, ChainVersion, Checkpoint, GENESIS_HASH, canonical, chain_hash,
    format_time,
};
use sb_operator::store::{JobState, Store, StoreOptions, open_pool};
use sqlx::{AnyPool, Row};
use std::process::Command;
use std::time::Duration;

/// Exit codes of `sb-operator audit verify` (its `--help`).
const INTACT: i32 = 0;
const MODIFIED: i32 = 3;
const GAP: i32 = 4;
const TRUNCATED: i32 = 6;
const FORGED_HEAD: i32 = 7;
const CHAIN_KEY: i32 = 8;

struct Verified {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Verified {
    fn text(&self) -> String {
        format!("exit {}\nstdout: {}\nstderr: {}", self.code, self.stdout, self.stderr)
    }
}

/// Runs the CLI binary as an auditor would, with the key manager that wraps the chain key.
fn verify_cli(db: &TestDb, extra: &[&str]) -> Verified {
    verify_cli_with_key(db, &db.dir().join("kek"), extra)
}

fn verify_cli_with_key(db: &TestDb, key_file: &std::path::Path, extra: &[&str]) -> Verified {
    let out = Command::new(env!("CARGO_BIN_EXE_sb-operator"))
        .args(["audit", "verify", "--database-url", &db.url, "--kms", "local", "--kms-key-file"])
        .arg(key_file)
        .args(extra)
        .env_remove("SB_KMS")
        .output()
        .expect("run sb-operator");
    Verified {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write_checkpoint(db: &TestDb, name: &str, checkpoint: &Checkpoint) -> String {
    let path = db.dir().join(name);
    std::fs::write(&path, checkpoint.to_json()).unwrap();
    path.display().to_string()
}

async fn some_history(db: &TestDb) -> Store {
    let store = db.store(StoreOptions::default()).await;
    for i in 0..3 {
        store.enqueue_job("user:alice", read_job("edge", &format!("uid-{i}"), 1)).await.unwrap();
    }
    store
        .audit(&AuditEvent::now("user:bob", "request.approve", AuditObject::default()).outcome("Succeeded", ""))
        .await
        .unwrap();
    store
}

async fn more_history(store: &Store, n: usize) {
    for i in 0..n {
        let event = AuditEvent::now("agent:edge", "job.claim", object(&format!("later-{i}")));
        store.audit(&event).await.unwrap();
    }
}

/// What a database owner does first: remove the append-only guards.
async fn drop_guards(pool: &AnyPool, flavor: Flavor) {
    for trigger in ["audit_events_no_update", "audit_events_no_delete"] {
        let sql = match flavor {
            Flavor::Sqlite => format!("DROP TRIGGER {trigger}"),
            Flavor::Postgres => format!("DROP TRIGGER {trigger} ON audit_events"),
        };
        sqlx::query(&sql).execute(pool).await.unwrap();
    }
}

/// Recomputes every link from `from_seq` on with the documented plain formula
/// `SHA-256(prev ‖ canonical)` (the v1 one, all anybody can compute without the key), rewrites
/// `prev_hash`/`hash` and the head record, so the chain is consistent to anyone who does not
/// hold the key. Returns the new head.
async fn recompute_without_the_key(pool: &AnyPool, from_seq: i64) -> String {
    let mut conn = pool.acquire().await.unwrap();
    let records = sb_operator::audit::list(&mut conn, 0, 100_000).await.unwrap();
    drop(conn);
    let mut prev = GENESIS_HASH;
    for record in &records {
        if record.seq >= from_seq {
            let at = format_time(&record.event.at);
            let hash = chain_hash(&prev, &canonical(ChainVersion::V1, record.seq, &at, &record.event));
            sqlx::query("UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3")
                .bind(hex::encode(prev))
                .bind(hex::encode(hash))
                .bind(record.seq)
                .execute(pool)
                .await
                .unwrap();
            prev = hash;
        } else {
            prev = hex::decode(&record.hash).unwrap().try_into().unwrap();
        }
    }
    let last = records.last().map(|r| r.seq).unwrap_or(0);
    set_head(pool, last, &hex::encode(prev)).await;
    hex::encode(prev)
}

async fn set_head(pool: &AnyPool, seq: i64, hash: &str) {
    sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(hash)
        .execute(pool)
        .await
        .unwrap();
}

async fn hash_at(pool: &AnyPool, seq: i64) -> String {
    sqlx::query("SELECT hash FROM audit_events WHERE seq = $1").bind(seq).fetch_one(pool).await.unwrap().get("hash")
}

async fn the_audit_tables_reject_update_and_delete(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    let update = sqlx::query("UPDATE audit_events SET reason = 'rewritten' WHERE seq = 2").execute(store.pool()).await;
    let delete = sqlx::query("DELETE FROM audit_events WHERE seq = 4").execute(store.pool()).await;
    for result in [update, delete] {
        let err = result.expect_err("the audit table is append-only").to_string();
        assert!(err.contains("append-only"), "{err}");
    }
    let move_switch = sqlx::query("UPDATE audit_key SET v2_from_seq = 9").execute(store.pool()).await;
    let drop_key = sqlx::query("DELETE FROM audit_key").execute(store.pool()).await;
    for result in [move_switch, drop_key] {
        let err = result.expect_err("the chain key record is write-once").to_string();
        assert!(err.contains("write-once"), "{err}");
    }
    if flavor == Flavor::Postgres {
        let truncate = sqlx::query("TRUNCATE audit_events").execute(store.pool()).await;
        assert!(truncate.is_err(), "TRUNCATE is refused too");
    }
    let events = store.audit_events(0, 100).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_ne!(events[1].event.reason, "rewritten");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(events[0].event.actor, "user:alice");
    assert_eq!(events[3].event.action, "request.approve");
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, INTACT, "{}", verified.text());
    assert!(verified.stdout.contains("4 events"), "{}", verified.text());
    assert!(verified.stdout.contains("chain v2 from seq 1"), "a fresh store is v2 from the start: {}", verified.text());
    assert!(
        verified.stderr.contains("no checkpoint given") && verified.stderr.contains("cannot be detected"),
        "without a checkpoint verify says what it cannot see: {}",
        verified.text()
    );
}

async fn verify_names_the_first_edited_event(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    drop_guards(store.pool(), flavor).await;
    sqlx::query("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2").execute(store.pool()).await.unwrap();
    drop_store(store).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, MODIFIED, "verify must fail on an edited log: {}", verified.text());
    assert!(verified.stderr.contains("seq 2 was modified"), "{}", verified.text());
}

/// The attack v1 could not see: edit a row and recompute a consistent chain.
async fn a_chain_recomputed_without_the_key_is_reported_modified(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    let before = verify_cli(&db, &[]);
    assert_eq!(before.code, INTACT, "{}", before.text());
    drop_guards(store.pool(), flavor).await;
    sqlx::query("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2").execute(store.pool()).await.unwrap();
    let head = recompute_without_the_key(store.pool(), 2).await;
    // The rewrite is consistent: every row links to the one before, the head record agrees.
    let records = store.audit_events(0, 100).await.unwrap();
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(records.last().unwrap().hash, head);
    assert_eq!(records[1].event.actor, "user:mallory");
    drop_store(store).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, MODIFIED, "{}", verified.text());
    assert!(verified.stderr.contains("seq 2 was modified"), "{}", verified.text());
}

async fn verify_detects_a_removed_event(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    drop_guards(store.pool(), flavor).await;
    sqlx::query("DELETE FROM audit_events WHERE seq = 3").execute(store.pool()).await.unwrap();
    drop_store(store).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, GAP, "{}", verified.text());
    assert!(verified.stderr.contains("seq 4 follows seq 2"), "{}", verified.text());
}

/// Delete the last events and fix up the head record: consistent without a checkpoint, caught
/// with one.
async fn a_tail_removed_after_a_checkpoint_is_reported(flavor: Flavor) {
    const K: i64 = 2;
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    more_history(&store, 2).await;
    let checkpoint = store.audit_checkpoint().await.unwrap().expect("six events");
    assert_eq!((checkpoint.seq, checkpoint.mac.clone()), (6, hash_at(store.pool(), 6).await));
    let file = write_checkpoint(&db, "checkpoint.json", &checkpoint);
    let before = verify_cli(&db, &["--checkpoint-file", &file]);
    assert_eq!(before.code, INTACT, "{}", before.text());
    assert!(before.stdout.contains("checkpoint of") && before.stdout.contains("(seq 6) matches"), "{}", before.text());

    drop_guards(store.pool(), flavor).await;
    sqlx::query("DELETE FROM audit_events WHERE seq > $1").bind(6 - K).execute(store.pool()).await.unwrap();
    let new_last = hash_at(store.pool(), 6 - K).await;
    set_head(store.pool(), 6 - K, &new_last).await;
    drop_store(store).await;

    let unanchored = verify_cli(&db, &[]);
    assert_eq!(unanchored.code, INTACT, "a cut chain is consistent on its own: {}", unanchored.text());
    assert!(unanchored.stderr.contains("cannot be detected"), "{}", unanchored.text());
    let verified = verify_cli(&db, &["--checkpoint-file", &file]);
    assert_eq!(verified.code, TRUNCATED, "{}", verified.text());
    assert!(
        verified.stderr.contains("ends at seq 4") && verified.stderr.contains("records seq 6"),
        "{}",
        verified.text()
    );
    assert!(verified.stderr.contains("events 5 to 6 were removed"), "{}", verified.text());
}

/// A checkpoint whose MAC is not the event's at its seq, and a head record that disagrees
/// with the chain.
async fn a_forged_head_is_reported(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    let checkpoint = store.audit_checkpoint().await.unwrap().unwrap();
    let mut forged = checkpoint.clone();
    forged.mac = hash_at(store.pool(), 3).await;
    let forged_file = write_checkpoint(&db, "forged.json", &forged);
    let verified = verify_cli(&db, &["--checkpoint-file", &forged_file]);
    assert_eq!(verified.code, FORGED_HEAD, "{}", verified.text());
    assert!(
        verified.stderr.contains("forged head")
            && verified.stderr.contains(&format!("records MAC {} at seq 4", forged.mac)),
        "{}",
        verified.text()
    );
    // An older, genuine checkpoint still verifies: it is on the chain.
    let mut older = checkpoint.clone();
    (older.seq, older.mac) = (2, hash_at(store.pool(), 2).await);
    let older_file = write_checkpoint(&db, "older.json", &older);
    let on_chain = verify_cli(&db, &["--checkpoint-file", &older_file]);
    assert_eq!(on_chain.code, INTACT, "{}", on_chain.text());

    let genuine = checkpoint.mac.clone();
    set_head(store.pool(), 4, &hash_at(store.pool(), 2).await).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, FORGED_HEAD, "{}", verified.text());
    assert!(verified.stderr.contains("forged head: the head record says seq 4"), "{}", verified.text());
    set_head(store.pool(), 9, &genuine).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, FORGED_HEAD, "{}", verified.text());
    assert!(verified.stderr.contains("head record says seq 9"), "{}", verified.text());
    set_head(store.pool(), 4, &genuine).await;
    let restored = verify_cli(&db, &[]);
    assert_eq!(restored.code, INTACT, "{}", restored.text());
    drop_store(store).await;
}

/// A store written by a v1 operator: migrations 0001–0003 and three events chained with
/// plain SHA-256, as that version wrote them.
async fn a_v1_store(db: &TestDb, flavor: Flavor) {
    let (pool, _) = open_pool(&db.url, 1).await.unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(match flavor {
        Flavor::Sqlite => "sqlite",
        Flavor::Postgres => "postgres",
    });
    let v1_migrations = db.dir().join("v1-migrations");
    std::fs::create_dir_all(&v1_migrations).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if ["0001_", "0002_", "0003_"].iter().any(|p| name.starts_with(p)) {
            std::fs::copy(&path, v1_migrations.join(name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(v1_migrations.as_path()).await.unwrap().run(&pool).await.unwrap();
    let mut prev = GENESIS_HASH;
    for seq in 1..=3i64 {
        let event = AuditEvent::now("user:alice", "request.approve", object(&format!("v1-{seq}")));
        let at = format_time(&event.at);
        let hash = chain_hash(&prev, &canonical(ChainVersion::V1, seq, &at, &event));
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(seq)
        .bind(&at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.object.kind)
        .bind(&event.object.namespace)
        .bind(&event.object.name)
        .bind(&event.object.uid)
        .bind(&event.outcome)
        .bind(&event.reason)
        .bind(hex::encode(prev))
        .bind(hex::encode(hash))
        .execute(&pool)
        .await
        .unwrap();
        prev = hash;
    }
    set_head(&pool, 3, &hex::encode(prev)).await;
    pool.close().await;
}

/// v1 events stay verifiable after the upgrade; v2 starts after them, and neither rewriting
/// the v1 part nor moving the switch-over (turning MACed events into recomputable v1 ones)
/// goes unnoticed.
async fn a_v1_store_is_keyed_from_its_next_event(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    a_v1_store(&db, flavor).await;
    let store = db.store(StoreOptions::default()).await;
    assert_eq!(store.audit_chain().v2_from(), 4);
    more_history(&store, 2).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, INTACT, "{}", verified.text());
    assert!(
        verified.stdout.contains("5 events") && verified.stdout.contains("chain v2 from seq 4"),
        "{}",
        verified.text()
    );

    // Rewrite v1 history consistently behind the switch-over.
    drop_guards(store.pool(), flavor).await;
    sqlx::query("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2").execute(store.pool()).await.unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let records = sb_operator::audit::list(&mut conn, 0, 100).await.unwrap();
    drop(conn);
    let mut prev: [u8; 32] = hex::decode(&records[0].hash).unwrap().try_into().unwrap();
    for record in &records[1..3] {
        let at = format_time(&record.event.at);
        let hash = chain_hash(&prev, &canonical(ChainVersion::V1, record.seq, &at, &record.event));
        sqlx::query("UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(hex::encode(prev))
            .bind(hex::encode(hash))
            .bind(record.seq)
            .execute(store.pool())
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_events SET prev_hash = $1 WHERE seq = 4")
        .bind(hex::encode(prev))
        .execute(store.pool())
        .await
        .unwrap();
    drop_store(store).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, MODIFIED, "{}", verified.text());
    assert!(verified.stderr.contains("before seq 4 (chain v1) were rewritten"), "{}", verified.text());

    // Move the switch-over past the end and recompute the MACed events as v1.
    let db = TestDb::new(flavor).await;
    a_v1_store(&db, flavor).await;
    let store = db.store(StoreOptions::default()).await;
    more_history(&store, 2).await;
    drop_guards(store.pool(), flavor).await;
    let drop_key_guard = match flavor {
        Flavor::Sqlite => "DROP TRIGGER audit_key_no_update",
        Flavor::Postgres => "DROP TRIGGER audit_key_no_update ON audit_key",
    };
    sqlx::query(drop_key_guard).execute(store.pool()).await.unwrap();
    sqlx::query("UPDATE audit_key SET v2_from_seq = 6, v1_head = $1")
        .bind(recompute_without_the_key(store.pool(), 4).await)
        .execute(store.pool())
        .await
        .unwrap();
    drop_store(store).await;
    let verified = verify_cli(&db, &[]);
    assert_eq!(verified.code, CHAIN_KEY, "{}", verified.text());
    assert!(verified.stderr.contains("switch-over (chain v2 from seq 6) does not authenticate"), "{}", verified.text());
    let reopened = Store::connect(&db.url, db.keys(), StoreOptions::default()).await;
    assert!(reopened.is_err(), "the operator does not start on an edited chain key record");
}

/// Every encoding of `key` looked for in `haystack`; the name of the first one found.
fn find_key(haystack: &[u8], key: &[u8; 32]) -> Option<&'static str> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64_raw = base64::engine::general_purpose::STANDARD_NO_PAD;
    let forms: [(&str, Vec<u8>); 5] = [
        ("raw bytes", key.to_vec()),
        ("lowercase hex", hex::encode(key).into_bytes()),
        ("uppercase hex", hex::encode_upper(key).into_bytes()),
        ("base64", b64.encode(key).into_bytes()),
        ("unpadded base64", b64_raw.encode(key).into_bytes()),
    ];
    forms.into_iter().find(|(_, needle)| haystack.windows(needle.len()).any(|w| w == needle.as_slice())).map(|(n, _)| n)
}

fn sqlite_bytes(dir: &std::path::Path, stem: &str) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with(stem) {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!all.is_empty(), "no {stem}* files in {}", dir.display());
    all
}

fn pg_dump(url: &str) -> Vec<u8> {
    let out = Command::new("pg_dump").arg(url).output().expect("pg_dump (PostgreSQL client tools)");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The database alone never holds the chain key: not in any table, encoding or file.
async fn the_database_holds_the_chain_key_only_wrapped(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = some_history(&db).await;
    // The key, as only the key manager can produce it.
    let wrapped: Vec<u8> =
        sqlx::query("SELECT wrapped_key FROM audit_key").fetch_one(store.pool()).await.unwrap().get("wrapped_key");
    let key = db.keys().unwrap(&wrapped, AUDIT_KEY_CONTEXT).await.unwrap();
    // It is the key the chain is MACed with (so the search below looks for the right bytes).
    let first = store.audit_events(0, 1).await.unwrap().remove(0);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_ref()).unwrap();
    mac.update(&GENESIS_HASH);
    mac.update(&canonical(ChainVersion::V2, 1, &format_time(&first.event.at), &first.event));
    assert_eq!(hex::encode(mac.finalize().into_bytes()), first.hash);
    // Another key manager's key does not open it, so verify cannot even start.
    let other = db.dir().join("other-kek");
    std::fs::write(&other, [9u8; 32]).unwrap();
    let refused = verify_cli_with_key(&db, &other, &[]);
    assert_eq!(refused.code, CHAIN_KEY, "{}", refused.text());
    assert!(refused.stderr.contains("does not unwrap with the local key manager"), "{}", refused.text());

    match flavor {
        Flavor::Sqlite => {
            drop_store(store).await;
            let found = find_key(&sqlite_bytes(db.dir(), "store.db"), &key);
            assert_eq!(found, None, "the SQLite file or its -wal holds the chain key");
            // Positive control: the same search finds the key once a copy of the store holds it.
            let control = db.dir().join("control");
            std::fs::create_dir_all(&control).unwrap();
            std::fs::copy(db.dir().join("store.db"), control.join("store.db")).unwrap();
            let (pool, _) = open_pool(control.join("store.db").to_str().unwrap(), 1).await.unwrap();
            sqlx::query("CREATE TABLE leak (k BLOB)").execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO leak (k) VALUES ($1)").bind(key.to_vec()).execute(&pool).await.unwrap();
            pool.close().await;
            assert_eq!(find_key(&sqlite_bytes(&control, "store.db"), &key), Some("raw bytes"));
        }
        Flavor::Postgres => {
            let found = find_key(&pg_dump(&db.url), &key);
            assert_eq!(found, None, "a pg_dump of the store holds the chain key");
            // Positive control: bytea dumps as hex, and the search finds it.
            sqlx::query("CREATE TABLE leak (k BYTEA)").execute(store.pool()).await.unwrap();
            sqlx::query("INSERT INTO leak (k) VALUES ($1)").bind(key.to_vec()).execute(store.pool()).await.unwrap();
            assert_eq!(find_key(&pg_dump(&db.url), &key), Some("lowercase hex"));
            drop_store(store).await;
        }
    }
}

async fn a_failed_audit_append_leaves_the_job_unchanged(flavor: Flavor) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let job = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let claimed = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap().remove(0);
    // Make every audit insert fail, as an unavailable or full audit table would.
    let breaker = match flavor {
        Flavor::Sqlite => {
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit down'); END"
        }
        Flavor::Postgres => {
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION sb_audit_append_only()"
        }
    };
    sqlx::query(breaker).execute(store.pool()).await.unwrap();
    let done = JobOutcome::Succeeded(JobResult::Read {
        deliveries: Default::default(),
        missing_keys: vec![],
        provider_version: None,
    });
    let result = store
        .complete_job("edge", &job.job_id, &CompleteRequest { lease_token: claimed.lease_token, outcome: done })
        .await;
    assert!(result.is_err(), "completion must fail when its audit row cannot be written");
    let status = store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Leased, "the transition did not happen");
    assert!(!status.has_result);
}

/// Closes the pool so SQLite's WAL is checkpointed before another process reads the file.
async fn drop_store(store: Store) {
    store.pool().close().await;
}

on_both_databases!(
    the_audit_tables_reject_update_and_delete,
    verify_names_the_first_edited_event,
    a_chain_recomputed_without_the_key_is_reported_modified,
    verify_detects_a_removed_event,
    a_tail_removed_after_a_checkpoint_is_reported,
    a_forged_head_is_reported,
    a_v1_store_is_keyed_from_its_next_event,
    the_database_holds_the_chain_key_only_wrapped,
    a_failed_audit_append_leaves_the_job_unchanged,
);
