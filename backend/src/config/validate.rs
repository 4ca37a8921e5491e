//! Semantic checks that types alone cannot express: [`Config::validate`] and
//! the value rules it applies (loopback hosts, identifiers, bucket names,
//! memory sizes).

use super::{
    enums::{log_filter, Environment},
    problem::ConfigProblem,
    sections::Config,
};

impl Config {
    /// Semantic checks that types alone cannot express.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, value: String, expected: &str| {
            if !ok {
                problems.push(ConfigProblem {
                    key: key.into(),
                    value,
                    expected: expected.into(),
                });
            }
        };
        check(
            log_filter(&self.log_level).is_some(),
            "log_level",
            self.log_level.clone(),
            "one of trace, debug, info, warn, error",
        );
        check(
            !self.server.host.is_empty(),
            "server.host",
            String::new(),
            "a host name or IP address",
        );
        let loopback = is_loopback(&self.server.host);
        check(
            self.auth.enabled || loopback,
            "auth.enabled",
            "false".into(),
            "true when server.host is not a loopback address (AUTH_ENABLED=true)",
        );
        check(
            self.auth.enabled || self.environment != Environment::Production,
            "auth.enabled",
            "false".into(),
            "true in production (AUTH_ENABLED=true)",
        );
        check(
            !(self.auth.bootstrap_key.is_some() && self.auth.bootstrap_key_file.is_some()),
            "auth.bootstrap_key_file",
            self.auth.bootstrap_key_file.clone().unwrap_or_default(),
            "unset when auth.bootstrap_key is set (one source for the key)",
        );
        if let Some(key) = &self.auth.bootstrap_key {
            check(
                key.expose().chars().count() >= 32,
                "auth.bootstrap_key",
                "***".into(),
                "at least 32 characters",
            );
        }
        check(
            self.flight.tls_cert.is_some() == self.flight.tls_key.is_some(),
            "flight.tls_key",
            if self.flight.tls_key.is_some() {
                "set"
            } else {
                "unset"
            }
            .into(),
            "set together with flight.tls_cert (FLIGHT_TLS_CERT and FLIGHT_TLS_KEY)",
        );
        check(
            self.server.tls_cert.is_some() == self.server.tls_key.is_some(),
            "server.tls_key",
            if self.server.tls_key.is_some() {
                "set"
            } else {
                "unset"
            }
            .into(),
            "set together with server.tls_cert (SERVER_TLS_CERT and SERVER_TLS_KEY)",
        );
        check(
            !self.flight.enabled || self.flight.port == 0 || self.flight.port != self.server.port,
            "flight.port",
            self.flight.port.to_string(),
            "a port other than server.port",
        );
        check(
            self.flight.ticket_ttl_ms >= 100,
            "flight.ticket_ttl_ms",
            self.flight.ticket_ttl_ms.to_string(),
            "at least 100",
        );
        check(
            self.flight.transaction_idle_timeout_ms >= 100,
            "flight.transaction_idle_timeout_ms",
            self.flight.transaction_idle_timeout_ms.to_string(),
            "at least 100",
        );
        check(
            self.flight.max_writing_transactions_per_key >= 1,
            "flight.max_writing_transactions_per_key",
            self.flight.max_writing_transactions_per_key.to_string(),
            "at least 1",
        );
        check(
            self.flight.max_open_transactions_per_key >= 1,
            "flight.max_open_transactions_per_key",
            self.flight.max_open_transactions_per_key.to_string(),
            "at least 1",
        );
        check(
            self.server.max_body_bytes >= 1024,
            "server.max_body_bytes",
            self.server.max_body_bytes.to_string(),
            "at least 1024",
        );
        check(
            (1..=1024).contains(&self.duckdb.connections),
            "duckdb.connections",
            self.duckdb.connections.to_string(),
            "between 1 and 1024",
        );
        check(
            is_memory_size(&self.duckdb.max_temp_directory_size)
                && !self.duckdb.max_temp_directory_size.ends_with('%'),
            "duckdb.max_temp_directory_size",
            self.duckdb.max_temp_directory_size.clone(),
            "a size such as 1GiB or 500MB",
        );
        check(
            self.query.max_sql_bytes >= 16,
            "query.max_sql_bytes",
            self.query.max_sql_bytes.to_string(),
            "at least 16",
        );
        check(
            self.query.max_result_bytes == 0 || self.query.max_result_bytes >= 1024,
            "query.max_result_bytes",
            self.query.max_result_bytes.to_string(),
            "0 (no limit) or at least 1024",
        );
        if let Some(limit) = &self.duckdb.memory_limit {
            check(
                is_memory_size(limit),
                "duckdb.memory_limit",
                limit.clone(),
                "a size such as 512MB, 4GiB or 75%",
            );
        }
        check(
            self.query.timeout_ms > 0,
            "query.timeout_ms",
            self.query.timeout_ms.to_string(),
            "more than 0",
        );
        check(
            self.query.max_timeout_ms >= self.query.timeout_ms,
            "query.max_timeout_ms",
            self.query.max_timeout_ms.to_string(),
            "at least query.timeout_ms",
        );
        check(
            is_identifier(&self.ducklake.catalog_name),
            "ducklake.catalog_name",
            self.ducklake.catalog_name.clone(),
            "a plain identifier (letters, digits, underscore; not starting with a digit)",
        );
        check(
            self.ducklake.connection_timeout.is_finite() && self.ducklake.connection_timeout > 0.0,
            "ducklake.connection_timeout",
            self.ducklake.connection_timeout.to_string(),
            "a positive number of seconds",
        );
        check(
            self.ducklake.retry_backoff.is_finite() && self.ducklake.retry_backoff >= 1.0,
            "ducklake.retry_backoff",
            self.ducklake.retry_backoff.to_string(),
            "a number of at least 1.0",
        );
        check(
            is_bucket_name(&self.storage.default_bucket),
            "storage.default_bucket",
            self.storage.default_bucket.clone(),
            "an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
        );
        check(
            !self.storage.prefix.contains("..") && !self.storage.prefix.starts_with('/'),
            "storage.prefix",
            self.storage.prefix.clone(),
            "a relative object key prefix",
        );
        check(
            self.server.ready_timeout_ms > 0,
            "server.ready_timeout_ms",
            self.server.ready_timeout_ms.to_string(),
            "more than 0",
        );
        check(
            (1..=1000).contains(&self.postgres.pool_size),
            "postgres.pool_size",
            self.postgres.pool_size.to_string(),
            "between 1 and 1000",
        );
        check(
            (1..=1000).contains(&self.postgres.duckdb_pool_size),
            "postgres.duckdb_pool_size",
            self.postgres.duckdb_pool_size.to_string(),
            "between 1 and 1000",
        );
        let jobs = &self.jobs;
        check(
            (1..=1024).contains(&jobs.max_concurrent),
            "jobs.max_concurrent",
            jobs.max_concurrent.to_string(),
            "between 1 and 1024",
        );
        for (key, value) in [
            ("jobs.max_result_bytes", jobs.max_result_bytes),
            ("jobs.retention_secs", jobs.retention_secs),
            ("jobs.timeout_ms", jobs.timeout_ms),
            ("jobs.heartbeat_ms", jobs.heartbeat_ms),
            ("jobs.sweep_interval_ms", jobs.sweep_interval_ms),
        ] {
            check(value > 0, key, value.to_string(), "more than 0");
        }
        check(
            jobs.stale_after_ms >= 2 * jobs.heartbeat_ms,
            "jobs.stale_after_ms",
            jobs.stale_after_ms.to_string(),
            "at least twice jobs.heartbeat_ms",
        );
        if self.features.enable_s3_encryption {
            check(
                self.storage.kms_key_id.is_some(),
                "storage.kms_key_id",
                "(unset)".into(),
                "a KMS key id when features.enable_s3_encryption is on \
                 (DuckDB's S3 writer encrypts with SSE-KMS)",
            );
        }
        if self.storage.minio_endpoint.is_some() {
            // Job results and ingest files live beside the data path; with
            // the lake at the bucket's root they would be inside it, where
            // DuckLake's orphan cleanup deletes every file it does not know.
            let data = self.storage.data_prefix();
            check(
                !data.is_empty(),
                "storage.prefix",
                format!("{:?}", self.storage.prefix),
                "a non-empty prefix: job results (<prefix>-jobs) and ingest files must live outside the data path, which DuckLake's orphan cleanup empties of unknown files",
            );
            let ingest = self.storage.ingest_prefix();
            check(
                data.is_empty() || (ingest != data && !ingest.starts_with(&format!("{data}/"))),
                "storage.ingest_prefix",
                ingest.clone(),
                "a prefix outside the data path (storage.prefix), which orphan cleanup empties",
            );
            check(
                !ingest.contains(['*', '?', '[', '{', '\\'])
                    && !ingest.split('/').any(|p| p == ".."),
                "storage.ingest_prefix",
                ingest,
                "a plain prefix (no glob characters or ..)",
            );
        }
        problems
    }
}

/// What a command reaches, and so which credentials it must be given: the
/// migration Job has the catalog's and not the bucket's, the bucket step the
/// bucket's and not the catalog's. Values are checked for every command
/// ([`Config::validate`]); presence only for what the command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    pub catalog: bool,
    pub storage: bool,
}

impl Uses {
    /// `serve`: both.
    pub const EVERYTHING: Uses = Uses {
        catalog: true,
        storage: true,
    };
    /// `migrate`, `keys`: PostgreSQL only.
    pub const CATALOG: Uses = Uses {
        catalog: true,
        storage: false,
    };
    /// `create-bucket`: the object store only.
    pub const STORAGE: Uses = Uses {
        catalog: false,
        storage: true,
    };
    /// `healthcheck`, `pause`: neither.
    pub const NOTHING: Uses = Uses {
        catalog: false,
        storage: false,
    };
}

impl Config {
    /// The credentials a command that `uses` these services lacks.
    pub fn missing_for(&self, uses: Uses) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if uses.storage && self.storage.minio_endpoint.is_some() {
            for (key, value) in [
                ("storage.minio_access_key", &self.storage.minio_access_key),
                ("storage.minio_secret_key", &self.storage.minio_secret_key),
            ] {
                if value.is_none() {
                    problems.push(ConfigProblem {
                        key: key.into(),
                        value: "(unset)".into(),
                        expected: "set when storage.minio_endpoint is set".into(),
                    });
                }
            }
        }
        problems
    }
}

/// `localhost`, 127.0.0.0/8 or ::1: reachable from this machine only.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_memory_size(value: &str) -> bool {
    let v = value.trim();
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    let unit = unit.trim().to_ascii_uppercase();
    number.parse::<f64>().is_ok_and(|n| n > 0.0)
        && matches!(
            unit.as_str(),
            "B" | "KB" | "MB" | "GB" | "TB" | "KIB" | "MIB" | "GIB" | "TIB" | "%"
        )
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use crate::config::{load::env, AuthConfig, Config, StorageConfig};

    #[test]
    fn authentication_may_be_off_only_on_loopback_and_never_in_production() {
        let problems = |vars: &[(&str, &str)]| -> Vec<String> {
            match Config::load_from(None, &env(vars)) {
                Ok(_) => Vec::new(),
                Err(e) => e.0.iter().map(|p| p.key.clone()).collect(),
            }
        };
        assert!(
            problems(&[]).is_empty(),
            "loopback without auth is the default"
        );
        assert!(problems(&[("SERVER_HOST", "::1")]).is_empty());
        assert_eq!(problems(&[("SERVER_HOST", "0.0.0.0")]), ["auth.enabled"]);
        assert_eq!(problems(&[("ENVIRONMENT", "production")]), ["auth.enabled"]);
        assert!(problems(&[("SERVER_HOST", "0.0.0.0"), ("AUTH_ENABLED", "true")]).is_empty());
        assert_eq!(
            problems(&[("AUTH_ENABLED", "true"), ("AUTH_BOOTSTRAP_KEY", "short")]),
            ["auth.bootstrap_key"]
        );
        let loaded = Config::load_from(
            None,
            &env(&[
                ("AUTH_ENABLED", "true"),
                ("AUTH_BOOTSTRAP_KEY", "0123456789abcdef0123456789abcdef"),
            ]),
        )
        .expect("valid");
        assert!(!format!("{:?}", loaded.config).contains("0123456789abcdef"));
        assert!(!loaded
            .config
            .redacted()
            .to_string()
            .contains("0123456789abcdef"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-a-mounted-secret-0123456789abcdef\n").unwrap();
        let auth = AuthConfig {
            enabled: true,
            bootstrap_key: None,
            bootstrap_key_file: Some(file.display().to_string()),
        };
        assert_eq!(
            auth.bootstrap_key().unwrap().unwrap().expose(),
            "from-a-mounted-secret-0123456789abcdef"
        );
        // A key from the file obeys the same minimum as one set directly.
        std::fs::write(&file, "short-key\n").unwrap();
        let err = auth.bootstrap_key().unwrap_err();
        assert!(
            err.contains("holds a key of 9 characters: at least 32"),
            "{err}"
        );
        assert!(!err.contains("short-key"), "{err}");
    }

    #[test]
    fn each_command_needs_only_the_credentials_of_what_it_reaches() {
        use crate::config::Uses;
        // The migration Job's environment: the ConfigMap (with the bucket's
        // endpoint) and the catalog's Secret, not the bucket's.
        let loaded = Config::load_from(
            None,
            &env(&[
                ("STORAGE_MINIO_ENDPOINT", "minio:9000"),
                ("DB_POSTGRES_PASSWORD", "pw"),
            ]),
        )
        .expect("values are valid whatever the command");
        let missing = |uses| -> Vec<String> {
            loaded
                .config
                .missing_for(uses)
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        assert!(missing(Uses::CATALOG).is_empty());
        assert!(missing(Uses::NOTHING).is_empty());
        let both = ["storage.minio_access_key", "storage.minio_secret_key"];
        assert_eq!(missing(Uses::STORAGE), both);
        assert_eq!(missing(Uses::EVERYTHING), both);
        let local = Config::load_from(None, &env(&[])).unwrap();
        assert!(local.config.missing_for(Uses::EVERYTHING).is_empty());
    }

    #[test]
    fn job_results_and_ingest_files_stay_outside_the_data_path() {
        let problems = |vars: &[(&str, &str)]| -> Vec<String> {
            let mut all = vec![
                ("STORAGE_MINIO_ENDPOINT", "minio:9000"),
                ("STORAGE_MINIO_ACCESS_KEY", "ak"),
                ("STORAGE_MINIO_SECRET_KEY", "sk"),
            ];
            all.extend_from_slice(vars);
            match Config::load_from(None, &env(&all)) {
                Ok(loaded) => {
                    assert_eq!(loaded.config.storage.ingest_prefix(), "lake-ingest");
                    Vec::new()
                }
                Err(e) => e.0.iter().map(|p| p.key.clone()).collect(),
            }
        };
        assert!(problems(&[]).is_empty());
        assert_eq!(problems(&[("STORAGE_PREFIX", "")]), ["storage.prefix"]);
        for inside in ["lake", "lake/ingest", "/lake/x/"] {
            assert_eq!(
                problems(&[("STORAGE_INGEST_PREFIX", inside)]),
                ["storage.ingest_prefix"],
                "{inside}"
            );
        }
        for bad in ["uploads/*", "../other"] {
            assert_eq!(
                problems(&[("STORAGE_INGEST_PREFIX", bad)]),
                ["storage.ingest_prefix"]
            );
        }
        let storage = StorageConfig {
            ingest_prefix: "/drop/zone/".into(),
            ..Default::default()
        };
        assert_eq!(storage.ingest_prefix(), "drop/zone");
    }
}
