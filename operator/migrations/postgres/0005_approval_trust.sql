-- Approval entries the operator has seen, per request uid and entry digest (SHA-256 of the
-- entry's JSON). An entry first seen while the admission policies that bind approvals to
-- their writers were not in force, or present when the operator found those policies had
-- been replaced or edited since it last verified them, is untrusted for good and never
-- counts (docs/threat-model.md).
CREATE TABLE approval_entries (
    object_uid TEXT NOT NULL,
    entry_digest TEXT NOT NULL,
    approver TEXT NOT NULL,
    trusted BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (object_uid, entry_digest)
);

-- The admission policies and bindings as last verified: uid and generation. A different uid
-- (deleted and re-created) or generation (edited, even if edited back) means they were not
-- in force for a while, whether or not the operator was running to see it.
CREATE TABLE admission_pins (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    generation BIGINT NOT NULL,
    pinned_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
