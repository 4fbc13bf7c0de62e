-- Audit chain v2 (operator/src/audit/mod.rs): events are linked by HMAC-SHA256 under a
-- random 32-byte key that the database holds only wrapped by the key manager (context
-- `sb/audit/chain-key`). One row, written on the first start after this migration:
-- `v2_from_seq` is the first event MACed (1 on a fresh store; the event after the v1 head on
-- an upgraded one), `v1_head` the hash of the last v1 event (the genesis hash when there is
-- none), and `anchor_mac` binds both to the key so the switch-over cannot be moved.
CREATE TABLE audit_key (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    key_manager  TEXT NOT NULL,
    wrapped_key  BLOB NOT NULL,
    v2_from_seq  BIGINT NOT NULL,
    v1_head      TEXT NOT NULL,
    anchor_mac   TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TRIGGER audit_key_no_update BEFORE UPDATE ON audit_key
BEGIN
    SELECT RAISE(ABORT, 'audit_key is write-once');
END;

CREATE TRIGGER audit_key_no_delete BEFORE DELETE ON audit_key
BEGIN
    SELECT RAISE(ABORT, 'audit_key is write-once');
END;
