//! Where the lake lives: its catalog and its data path, and the SQL that
//! attaches it.
//!
//! The embedded default is a DuckDB catalog file and a local data directory
//! under `data_dir`. `DB_POSTGRES_HOST` switches the catalog to PostgreSQL and
//! `STORAGE_MINIO_ENDPOINT` the data path to S3; any combination works.
//! Credentials never appear in the ATTACH string (it is visible in
//! `duckdb_databases()`): they go into DuckDB secrets.

use std::path::{Path, PathBuf};

use crate::config::{exposed, Config};

#[derive(Debug, Clone, PartialEq)]
pub enum CatalogLocation {
    /// A DuckDB database file holding DuckLake's metadata tables.
    LocalFile(PathBuf),
    /// DuckLake's metadata tables in a PostgreSQL database.
    Postgres {
        host: String,
        port: u16,
        db: String,
        user: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum DataLocation {
    LocalDir(PathBuf),
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
        /// Where `url=` ingest may load from (beside the data path).
        ingest: String,
        secure: bool,
    },
}

#[derive(Debug, Clone)]
pub struct LakeSpec {
    /// The database name the lake is attached as; every query runs in it.
    pub name: String,
    pub catalog: CatalogLocation,
    pub data: DataLocation,
    pub encrypted: bool,
    pub data_inlining_row_limit: Option<u64>,
    /// libpq's connect_timeout for the catalog, whole seconds (at least 1).
    pub connect_timeout_secs: u64,
    /// libpq's application_name of DuckDB's catalog connections, so they can
    /// be counted in `pg_stat_activity`.
    pub application_name: String,
}

impl LakeSpec {
    pub fn from_config(config: &Config) -> Self {
        let catalog = match &config.postgres.host {
            Some(host) => CatalogLocation::Postgres {
                host: host.clone(),
                port: config.postgres.port,
                db: config.postgres.db.clone(),
                user: config.postgres.user.clone(),
            },
            None => CatalogLocation::LocalFile(config.data_dir.join("catalog.ducklake")),
        };
        let data = match &config.storage.minio_endpoint {
            Some(endpoint) => DataLocation::S3 {
                endpoint: endpoint.clone(),
                bucket: config.storage.default_bucket.clone(),
                prefix: config.storage.data_prefix().to_string(),
                ingest: config.storage.ingest_prefix(),
                secure: config.storage.minio_secure,
            },
            None => DataLocation::LocalDir(config.data_dir.join("lake")),
        };
        Self {
            name: config.ducklake.catalog_name.clone(),
            catalog,
            data,
            encrypted: config.ducklake.encrypted,
            data_inlining_row_limit: config.ducklake.data_inlining_row_limit,
            connect_timeout_secs: config.ducklake.connection_timeout.ceil().max(1.0) as u64,
            application_name: crate::instance::application_name("duckdb"),
        }
    }

    /// Whether the lake depends on servers that may be down or still starting.
    pub fn is_remote(&self) -> bool {
        matches!(self.catalog, CatalogLocation::Postgres { .. })
            || matches!(self.data, DataLocation::S3 { .. })
    }

    /// Loadable extensions this lake needs, in load order.
    pub fn required_extensions(&self) -> Vec<&'static str> {
        let mut names = vec!["icu", "ducklake"];
        // httpfs also carries the crypto module DuckDB needs to write
        // encrypted Parquet files (without it encryption is refused).
        if matches!(self.data, DataLocation::S3 { .. }) || self.encrypted {
            names.push("httpfs");
        }
        if matches!(self.catalog, CatalogLocation::Postgres { .. }) {
            names.push("postgres_scanner");
        }
        names
    }

    /// `s3://bucket/prefix/` or the local directory, with a trailing slash.
    pub fn data_path(&self) -> String {
        match &self.data {
            DataLocation::LocalDir(dir) => {
                format!("{}/", dir.display().to_string().trim_end_matches('/'))
            }
            DataLocation::S3 { bucket, prefix, .. } if prefix.is_empty() => {
                format!("s3://{bucket}/")
            }
            DataLocation::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}/"),
        }
    }

    /// Where `url=` ingest may load from: `s3://<bucket>/<ingest prefix>/`
    /// (none for a local data directory).
    pub fn ingest_root(&self) -> Option<String> {
        match &self.data {
            DataLocation::S3 { bucket, ingest, .. } => Some(format!("s3://{bucket}/{ingest}/")),
            DataLocation::LocalDir(_) => None,
        }
    }

    /// Where DuckDB may read and write files: the data path and the ingest
    /// prefix, never the rest of the bucket.
    pub fn readable_roots(&self) -> Vec<String> {
        std::iter::once(self.data_path())
            .chain(self.ingest_root())
            .collect()
    }

    /// The catalog as shown to operators: never credentials.
    pub fn catalog_display(&self) -> String {
        match &self.catalog {
            CatalogLocation::LocalFile(path) => path.display().to_string(),
            CatalogLocation::Postgres { host, port, db, .. } => {
                format!("postgres://{host}:{port}/{db}")
            }
        }
    }

    pub fn catalog_kind(&self) -> &'static str {
        match self.catalog {
            CatalogLocation::LocalFile(_) => "duckdb",
            CatalogLocation::Postgres { .. } => "postgres",
        }
    }

    /// The ATTACH statement. Passwords are not in it: they live in secrets.
    pub fn attach_sql(&self) -> String {
        let target = match &self.catalog {
            CatalogLocation::LocalFile(path) => format!("ducklake:{}", path.display()),
            CatalogLocation::Postgres {
                host,
                port,
                db,
                user,
            } => format!(
                "ducklake:postgres:host={} port={port} dbname={} user={} connect_timeout={} \
                 application_name={}",
                libpq_value(host),
                libpq_value(db),
                libpq_value(user),
                self.connect_timeout_secs,
                libpq_value(&self.application_name),
            ),
        };
        let mut options = vec![format!("DATA_PATH {}", quote_literal(&self.data_path()))];
        if self.encrypted {
            options.push("ENCRYPTED".into());
        }
        if let Some(limit) = self.data_inlining_row_limit {
            options.push(format!("DATA_INLINING_ROW_LIMIT {limit}"));
        }
        format!(
            "ATTACH IF NOT EXISTS {} AS {} ({})",
            quote_literal(&target),
            quote_identifier(&self.name),
            options.join(", ")
        )
    }

    /// Settings that confine every later statement (DuckDB's own sandbox):
    /// file and network access only under the data path (and the spill
    /// directory), no extension loading or installing, configuration locked.
    /// The catalog stays reachable because it was attached before.
    pub fn lockdown_sql(&self, tmp_dir: &Path) -> String {
        let allowed: Vec<String> = self
            .readable_roots()
            .iter()
            .chain([&format!(
                "{}/",
                tmp_dir.display().to_string().trim_end_matches('/')
            )])
            .map(|dir| quote_literal(dir))
            .collect();
        format!(
            "SET allowed_directories = [{}]; SET autoinstall_known_extensions = false; \
             SET autoload_known_extensions = false; SET allow_community_extensions = false; \
             SET enable_external_access = false; SET lock_configuration = true",
            allowed.join(", ")
        )
    }

    /// Local directories the lake writes into, created on first start.
    pub fn local_dirs(&self) -> Vec<&Path> {
        let mut dirs = Vec::new();
        if let CatalogLocation::LocalFile(path) = &self.catalog {
            if let Some(parent) = path.parent() {
                dirs.push(parent);
            }
        }
        if let DataLocation::LocalDir(dir) = &self.data {
            dirs.push(dir.as_path());
        }
        dirs
    }
}

/// `CREATE SECRET` statements carrying the credentials the lake needs: the
/// PostgreSQL password (the default postgres secret, merged by the postgres
/// extension into the catalog connection) and the S3 keys, scoped to the
/// lake's bucket. They hold secrets: never log them.
pub fn secret_statements(config: &Config, spec: &LakeSpec) -> Vec<String> {
    let mut statements = Vec::new();
    if let (CatalogLocation::Postgres { .. }, Some(password)) =
        (&spec.catalog, &config.postgres.password)
    {
        statements.push(format!(
            "CREATE OR REPLACE SECRET __default_postgres (TYPE postgres, PASSWORD {})",
            quote_literal(password.expose())
        ));
    }
    if let DataLocation::S3 {
        endpoint,
        bucket,
        secure,
        ..
    } = &spec.data
    {
        let key = exposed(&config.storage.minio_access_key);
        let secret = exposed(&config.storage.minio_secret_key);
        let kms = match (
            &config.storage.kms_key_id,
            config.features.enable_s3_encryption,
        ) {
            (Some(key_id), true) => format!(", KMS_KEY_ID {}", quote_literal(key_id)),
            _ => String::new(),
        };
        // With TLS to the store, httpfs checks its certificate against the
        // system's authorities and the configured ones, whichever of its
        // HTTP clients runs (its curl client checks by default, its
        // httplib client only when told to).
        if *secure {
            statements.push("SET GLOBAL enable_server_cert_verification = true".into());
            if let Some(ca) = &config.storage.minio_ca_file {
                statements.push(format!("SET GLOBAL ca_cert_file = {}", quote_literal(ca)));
            }
        }
        statements.push(format!(
            "CREATE OR REPLACE SECRET ducklake_data_s3 (TYPE s3, KEY_ID {}, SECRET {}, ENDPOINT {}, \
             URL_STYLE 'path', USE_SSL {secure}, REGION {}, SCOPE {}{kms})",
            quote_literal(key),
            quote_literal(secret),
            quote_literal(endpoint),
            quote_literal(&config.storage.region),
            quote_literal(&format!("s3://{bucket}"))
        ));
    }
    statements
}

/// A SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A SQL identifier, always quoted so any name is just a name.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A value in a libpq `key=value` connection string.
fn libpq_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn embedded_default_attaches_local_catalog_and_data() {
        let config = Config {
            data_dir: "/srv/lake data".into(),
            ..Config::default()
        };
        let spec = LakeSpec::from_config(&config);
        assert_eq!(spec.required_extensions(), vec!["icu", "ducklake"]);
        assert_eq!(
            spec.attach_sql(),
            "ATTACH IF NOT EXISTS 'ducklake:/srv/lake data/catalog.ducklake' AS \"lake\" (DATA_PATH '/srv/lake data/lake/')"
        );
    }

    #[test]
    fn postgres_and_s3_keep_credentials_out_of_attach() {
        let mut config = Config::default();
        config.postgres.host = Some("pg.internal".into());
        config.postgres.user = "lake user".into();
        config.postgres.password = Some(Secret::new("p@ss'word"));
        config.storage.minio_endpoint = Some("minio:9000".into());
        config.ducklake.encrypted = true;
        config.ducklake.data_inlining_row_limit = Some(1000);
        let spec = LakeSpec::from_config(&config);
        let sql = spec.attach_sql();
        assert!(!sql.contains("p@ss"), "{sql}");
        assert!(
            sql.contains("host=pg.internal port=5432 dbname=ducklakedb user=''lake user'' connect_timeout=30"),
            "{sql}"
        );
        assert!(
            sql.contains(
                "DATA_PATH 's3://ducklake-data/lake/', ENCRYPTED, DATA_INLINING_ROW_LIMIT 1000"
            ),
            "{sql}"
        );
        assert_eq!(
            spec.required_extensions(),
            vec!["icu", "ducklake", "httpfs", "postgres_scanner"]
        );
        assert_eq!(
            spec.catalog_display(),
            "postgres://pg.internal:5432/ducklakedb"
        );
    }

    #[test]
    fn s3_encryption_adds_the_kms_key_to_the_secret() {
        let mut config = Config::default();
        config.storage.minio_endpoint = Some("minio:9000".into());
        config.storage.kms_key_id = Some("arn:aws:kms:eu-west-1:1:key/k".into());
        let spec = LakeSpec::from_config(&config);
        let off = secret_statements(&config, &spec).join(";");
        assert!(!off.contains("KMS_KEY_ID"), "{off}");
        config.features.enable_s3_encryption = true;
        let on = secret_statements(&config, &spec).join(";");
        assert!(
            on.contains("KMS_KEY_ID 'arn:aws:kms:eu-west-1:1:key/k'")
                && on.contains("REGION 'us-east-1'"),
            "{on}"
        );
        config.storage.kms_key_id = None;
        let problems = config.validate();
        assert!(
            problems.iter().any(|p| p.key == "storage.kms_key_id"),
            "{problems:?}"
        );
    }

    #[test]
    fn duckdb_may_reach_the_data_path_and_the_ingest_prefix_not_the_bucket() {
        let mut config = Config::default();
        config.storage.minio_endpoint = Some("minio:9000".into());
        let spec = LakeSpec::from_config(&config);
        let sql = spec.lockdown_sql(Path::new("/srv/tmp"));
        assert!(
            sql.starts_with(
                "SET allowed_directories = ['s3://ducklake-data/lake/', \
                 's3://ducklake-data/lake-ingest/', '/srv/tmp/'];"
            ),
            "{sql}"
        );
        let local = LakeSpec::from_config(&Config::default());
        assert_eq!(local.readable_roots(), ["./data/lake/"]);
        assert_eq!(local.ingest_root(), None);
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(
            quote_identifier("x\"; DROP TABLE y; --"),
            "\"x\"\"; DROP TABLE y; --\""
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
