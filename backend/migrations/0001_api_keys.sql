-- API keys (issue 6 fills this table). Only a SHA-256 hash of each key is
-- kept, with a short visible prefix so operators can tell keys apart.
-- Portable SQL: the same file runs on PostgreSQL and on the local DuckDB store.
CREATE TABLE IF NOT EXISTS ducklake_backend.api_keys (
    id            UUID PRIMARY KEY,
    prefix        TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    owner         TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ,
    active        BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX IF NOT EXISTS api_keys_prefix ON ducklake_backend.api_keys (prefix);
