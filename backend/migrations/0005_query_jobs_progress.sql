-- DuckDB's own estimate of how far a running job's query is, in basis
-- points (0–10000), recorded with each heartbeat. Portable and idempotent.
ALTER TABLE ducklake_backend.query_jobs ADD COLUMN IF NOT EXISTS progress_basis_points BIGINT;
