-- Asynchronous query jobs (issue 5 fills this table).
CREATE TABLE IF NOT EXISTS ducklake_backend.query_jobs (
    id               UUID PRIMARY KEY,
    owner            TEXT,
    sql_text         TEXT NOT NULL,
    params           TEXT,
    status           TEXT NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    submitted_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    rows_produced    BIGINT,
    result_location  TEXT,
    error_code       TEXT,
    error_message    TEXT,
    instance         TEXT
);
CREATE INDEX IF NOT EXISTS query_jobs_status ON ducklake_backend.query_jobs (status, submitted_at);
