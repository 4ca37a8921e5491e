-- Who asked and what it made, for each audit entry (issue 16): the key's
-- visible prefix, the request id, the snapshot a write created.
ALTER TABLE ducklake_backend.audit_log ADD COLUMN IF NOT EXISTS key_prefix TEXT;
ALTER TABLE ducklake_backend.audit_log ADD COLUMN IF NOT EXISTS request_id TEXT;
ALTER TABLE ducklake_backend.audit_log ADD COLUMN IF NOT EXISTS snapshot_id BIGINT;
