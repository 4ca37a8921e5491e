-- What the async jobs API (issue 5) keeps beside 0002's columns: who asked
-- (key prefix), the default result format, cross-replica cancellation, the
-- running replica's heartbeat, retention, and the spooled result's size and
-- column types. Portable and idempotent, like every migration.
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS key_prefix TEXT;
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS format TEXT;
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS cancel_requested BOOLEAN DEFAULT FALSE;
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS heartbeat_at TIMESTAMPTZ;
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS result_bytes BIGINT;
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS result_columns TEXT;
CREATE INDEX IF NOT EXISTS query_jobs_owner ON ducklake_backend.query_jobs (owner, submitted_at);
CREATE INDEX IF NOT EXISTS query_jobs_instance ON ducklake_backend.query_jobs (instance, status);
