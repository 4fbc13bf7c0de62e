-- Agents authenticate with their own Ed25519 keys (born in their boundary, registered in
-- AgentRegistration.spec.authKeys); the store keeps only those public keys. The columns
-- that held hashes of operator-minted agent secrets are gone.
DROP INDEX agents_secret_hash;
DROP INDEX agents_previous_secret_hash;
ALTER TABLE agents DROP COLUMN secret_hash;
ALTER TABLE agents DROP COLUMN previous_secret_hash;
ALTER TABLE agents DROP COLUMN previous_valid_until;
-- JSON list of {publicKey, fingerprint, firstSeen, expiresAt} (milliseconds since the epoch).
ALTER TABLE agents ADD COLUMN auth_keys TEXT NOT NULL DEFAULT '[]';
-- The agent-signed sealing-key certificate from the last heartbeat.
ALTER TABLE agents ADD COLUMN sealing_key_signed_at TEXT;
ALTER TABLE agents ADD COLUMN sealing_key_signature TEXT;
ALTER TABLE agents ADD COLUMN sealing_key_signed_by TEXT;
