-- The last audit event of an object, found without a scan: a transition already audited
-- (the operator died before writing the status) is not audited twice when it is made again.
CREATE INDEX audit_events_by_object ON audit_events (object_uid, seq);
