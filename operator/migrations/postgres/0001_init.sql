-- Secrets Bridge store, PostgreSQL flavour. Same tables and versions as ../sqlite; only the
-- trigger syntax and BYTEA differ. Times are Unix milliseconds (BIGINT) so both databases compare
-- them the same way; audit times are RFC 3339 text because they are hashed.

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    agent             TEXT NOT NULL,
    kind              TEXT NOT NULL,
    object_kind       TEXT NOT NULL,
    object_namespace  TEXT NOT NULL,
    object_name       TEXT NOT NULL,
    object_uid        TEXT NOT NULL,
    generation        BIGINT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('Queued', 'Leased', 'Succeeded', 'Failed')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    lease_token_hash  BYTEA,
    lease_expires_at  BIGINT,
    payload_key       BYTEA,
    payload           BYTEA,
    result_key        BYTEA,
    result            BYTEA,
    outcome_reason    TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    completed_at      BIGINT,
    UNIQUE (object_uid, generation)
);
CREATE INDEX jobs_claimable ON jobs (agent, state, created_at);

CREATE TABLE agents (
    id                      TEXT PRIMARY KEY,
    secret_hash             BYTEA NOT NULL,
    previous_secret_hash    BYTEA,
    previous_valid_until    BIGINT,
    registered_providers    TEXT NOT NULL DEFAULT '[]',
    version                 TEXT,
    sealing_public_key      TEXT,
    sealing_key_id          TEXT,
    provider_health         TEXT,
    last_seen               BIGINT,
    last_heartbeat_audit    BIGINT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX agents_secret_hash ON agents (secret_hash);
CREATE INDEX agents_previous_secret_hash ON agents (previous_secret_hash);

CREATE TABLE catalog_pages (
    job_id       TEXT NOT NULL REFERENCES jobs (id),
    page         BIGINT NOT NULL,
    entries      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (job_id, page)
);

CREATE TABLE audit_events (
    seq               BIGINT PRIMARY KEY,
    at                TEXT NOT NULL,
    actor             TEXT NOT NULL,
    action            TEXT NOT NULL,
    object_kind       TEXT NOT NULL,
    object_namespace  TEXT NOT NULL,
    object_name       TEXT NOT NULL,
    object_uid        TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    reason            TEXT NOT NULL,
    prev_hash         TEXT NOT NULL,
    hash              TEXT NOT NULL
);

-- The chain head: one row, updated by every append inside the appending transaction, so
-- concurrent appenders serialise on it. It is a cache; `audit verify` checks it against
-- the events.
CREATE TABLE audit_head (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    last_seq  BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, last_seq, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION sb_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION sb_audit_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION sb_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION sb_audit_append_only();

-- Wake long-polling claimers on every replica: the payload is the agent id, delivered on
-- commit.
CREATE FUNCTION sb_job_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sb_jobs', NEW.agent);
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_notify_queued AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'Queued') EXECUTE FUNCTION sb_job_queued();
