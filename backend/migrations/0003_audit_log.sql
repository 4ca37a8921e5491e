-- Audit trail of administrative actions (issue 6 fills this table).
CREATE SEQUENCE IF NOT EXISTS ducklake_backend.audit_log_id_seq;
CREATE TABLE IF NOT EXISTS ducklake_backend.audit_log (
    id       BIGINT DEFAULT nextval('ducklake_backend.audit_log_id_seq') PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor    TEXT,
    action   TEXT NOT NULL,
    target   TEXT,
    outcome  TEXT NOT NULL,
    detail   TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_at ON ducklake_backend.audit_log (occurred_at);
