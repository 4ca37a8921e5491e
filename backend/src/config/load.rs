//! Loading: figment layers defaults < TOML file < environment, the mapping of
//! the origin deployment's environment names onto keys, the per-section
//! extraction that reports every type error, and [`LoadedConfig`] with the
//! source of each value.

use std::{collections::BTreeMap, path::PathBuf};

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use serde::{de::DeserializeOwned, Deserialize};

use super::{
    enums::Environment,
    lenient,
    problem::{ConfigError, ConfigProblem},
    sections::Config,
    settings::settings,
};

/// Environment variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "DUCKLAKE_CONFIG";

/// Prefixes of the environment variables, and the config section each feeds.
const ENV_SECTIONS: &[(&str, &str)] = &[
    ("DB_POSTGRES_", "postgres"),
    ("DB_DUCKLAKE_", "ducklake"),
    ("STORAGE_", "storage"),
    ("FEATURE_", "features"),
    ("SERVER_", "server"),
    ("DUCKDB_", "duckdb"),
    ("QUERY_", "query"),
    ("AUTH_", "auth"),
    ("INGEST_", "ingest"),
    ("MAINTENANCE_", "maintenance"),
    ("JOBS_", "jobs"),
    ("FLIGHT_", "flight"),
    ("CACHE_", "cache"),
    ("HOT_TABLES_", "hot_tables"),
];

/// Top-level keys read from environment variables of the same name.
const ENV_TOP_LEVEL: &[&str] = &["ENVIRONMENT", "DEBUG", "LOG_LEVEL", "DATA_DIR"];

/// The loaded configuration and where each value came from.
pub struct LoadedConfig {
    pub config: Config,
    /// dotted key → "default" | "file `<path>`" | "environment VAR"
    pub sources: BTreeMap<String, String>,
    /// Settings given that the service does not know (a typo, most often),
    /// each with the nearest known key: warned about at start-up, refused
    /// in production.
    pub unknown: Vec<Unknown>,
}

/// A setting given that the service does not know.
#[derive(Debug, Clone)]
pub struct Unknown {
    pub key: String,
    /// `file <path>` or `environment VAR`.
    pub source: String,
    /// The nearest known key, when one is near.
    pub nearest: Option<String>,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) is not a setting", self.key, self.source)?;
        match &self.nearest {
            Some(nearest) => write!(f, "; did you mean {nearest}?"),
            None => Ok(()),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (or `$DUCKLAKE_CONFIG`), then the process environment.
    pub fn load(file: Option<PathBuf>) -> Result<LoadedConfig, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &vars)
    }

    /// Like [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<PathBuf>,
        vars: &[(String, String)],
    ) -> Result<LoadedConfig, ConfigError> {
        let defaults = Config::default();
        // The keys we accept: every leaf of the default configuration.
        let known: Vec<String> = settings(&defaults, &BTreeMap::new())
            .into_iter()
            .map(|setting| setting.key)
            .collect();
        let file = file.or_else(|| {
            vars.iter()
                .find(|(k, _)| k == CONFIG_FILE_ENV)
                .map(|(_, v)| PathBuf::from(v))
        });

        let mut figment = Figment::from(Serialized::defaults(&defaults));
        let mut sources: BTreeMap<String, String> = known
            .iter()
            .map(|k| (k.clone(), "default".to_string()))
            .collect();
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        if let Some(path) = &file {
            if !path.is_file() {
                problems.push(ConfigProblem {
                    key: "config file".into(),
                    value: path.display().to_string(),
                    expected: "a readable TOML file".into(),
                });
            } else {
                let layer = Figment::from(Toml::file_exact(path));
                for key in &known {
                    if layer.find_value(key).is_ok() {
                        sources.insert(key.clone(), format!("file {}", path.display()));
                    }
                }
                if let Ok(data) = figment::Provider::data(&layer) {
                    for dict in data.values() {
                        for key in leaves(dict, "") {
                            if !known.contains(&key) {
                                unknown.push(unknown_key(
                                    &key,
                                    &format!("file {}", path.display()),
                                    &known,
                                ));
                            }
                        }
                    }
                }
                figment = figment.merge(Toml::file_exact(path));
            }
        }
        // The environment layer is built from `vars` (the process environment in
        // production), parsed the way figment's Env provider parses values.
        for (name, value) in vars {
            if let Some(key) = env_key(name).filter(|k| !known.contains(k)) {
                unknown.push(unknown_key(&key, &format!("environment {name}"), &known));
            }
            if let Some(key) = env_key(name).filter(|k| known.contains(k)) {
                let parsed = value
                    .parse::<figment::value::Value>()
                    .unwrap_or_else(|_| value.as_str().into());
                figment = figment.merge(Serialized::default(&key, parsed));
                sources.insert(key, format!("environment {name}"));
            }
        }

        let config = extract_sections(&figment, &mut problems);
        if let Some(config) = &config {
            problems.extend(config.validate());
            // Production runs only what it was told, exactly.
            if config.environment == Environment::Production {
                problems.extend(unknown.iter().map(|unknown| ConfigProblem {
                    key: unknown.key.clone(),
                    value: format!("({})", unknown.source),
                    expected: format!(
                        "a known setting{} (ENVIRONMENT=production refuses unknown ones)",
                        unknown
                            .nearest
                            .as_ref()
                            .map(|k| format!(", such as {k}"))
                            .unwrap_or_default()
                    ),
                }));
            }
        }
        match config {
            Some(config) if problems.is_empty() => Ok(LoadedConfig {
                config,
                sources,
                unknown,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// The dotted keys of the values in `dict` (a TOML file's).
fn leaves(dict: &figment::value::Dict, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for (name, value) in dict {
        let key = match prefix {
            "" => name.clone(),
            _ => format!("{prefix}.{name}"),
        };
        match value {
            figment::value::Value::Dict(_, inner) => keys.extend(leaves(inner, &key)),
            _ => keys.push(key),
        }
    }
    keys
}

/// `key` (from `source`) is no setting: with the nearest one.
fn unknown_key(key: &str, source: &str, known: &[String]) -> Unknown {
    let nearest = known
        .iter()
        .map(|k| (strsim::levenshtein(k, key), k))
        .min()
        .filter(|(distance, _)| *distance <= 3)
        .map(|(_, k)| k.clone());
    Unknown {
        key: key.to_string(),
        source: source.to_string(),
        nearest,
    }
}

/// Maps an environment variable name to a dotted config key, if it is one of ours.
fn env_key(name: &str) -> Option<String> {
    if ENV_TOP_LEVEL.contains(&name) {
        return Some(name.to_ascii_lowercase());
    }
    ENV_SECTIONS.iter().find_map(|(prefix, section)| {
        name.strip_prefix(prefix)
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!("{section}.{}", rest.to_ascii_lowercase()))
    })
}

/// Extracts each section on its own so every type error is reported, not just the first.
fn extract_sections(figment: &Figment, problems: &mut Vec<ConfigProblem>) -> Option<Config> {
    #[derive(Deserialize)]
    struct General {
        #[serde(deserialize_with = "lenient::string")]
        environment: String,
        debug: bool,
        #[serde(deserialize_with = "lenient::string")]
        log_level: String,
        data_dir: PathBuf,
    }
    fn section<T: DeserializeOwned>(
        figment: &Figment,
        key: Option<&str>,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<T> {
        let result = match key {
            Some(key) => figment.extract_inner::<T>(key),
            None => figment.extract::<T>(),
        };
        result
            .map_err(|errors| {
                for e in errors {
                    // figment's path holds the section and the field, in no order we rely on.
                    let field: Vec<&str> = e
                        .path
                        .iter()
                        .map(String::as_str)
                        .filter(|p| Some(*p) != key)
                        .collect();
                    let key = match key {
                        Some(section) if field.is_empty() => section.to_string(),
                        Some(section) => format!("{section}.{}", field.join(".")),
                        None => field.join("."),
                    };
                    let (value, expected) = describe_kind(&e.kind);
                    problems.push(ConfigProblem {
                        key,
                        value,
                        expected,
                    });
                }
            })
            .ok()
    }
    let general = section::<General>(figment, None, problems);
    let server = section(figment, Some("server"), problems);
    let duckdb = section(figment, Some("duckdb"), problems);
    let query = section(figment, Some("query"), problems);
    let postgres = section(figment, Some("postgres"), problems);
    let ducklake = section(figment, Some("ducklake"), problems);
    let storage = section(figment, Some("storage"), problems);
    let features = section(figment, Some("features"), problems);
    let auth = section(figment, Some("auth"), problems);
    let ingest = section(figment, Some("ingest"), problems);
    let maintenance = section(figment, Some("maintenance"), problems);
    let jobs = section(figment, Some("jobs"), problems);
    let flight = section(figment, Some("flight"), problems);
    let cache = section(figment, Some("cache"), problems);
    let hot_tables = section(figment, Some("hot_tables"), problems);
    let general = general?;
    Some(Config {
        environment: Environment::parse(&general.environment).unwrap_or_else(|| {
            problems.push(ConfigProblem {
                key: "environment".into(),
                value: general.environment.clone(),
                expected: format!("one of {}", Environment::NAMES.join(", ")),
            });
            Environment::Development
        }),
        debug: general.debug,
        log_level: general.log_level,
        data_dir: general.data_dir,
        server: server?,
        duckdb: duckdb?,
        query: query?,
        postgres: postgres?,
        ducklake: ducklake?,
        storage: storage?,
        features: features?,
        auth: auth?,
        ingest: ingest?,
        maintenance: maintenance?,
        jobs: jobs?,
        flight: flight?,
        cache: cache?,
        hot_tables: hot_tables?,
    })
}

fn describe_kind(kind: &figment::error::Kind) -> (String, String) {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(actual, expected) => (actual.to_string(), expected.clone()),
        Kind::InvalidValue(actual, expected) => (actual.to_string(), expected.clone()),
        Kind::InvalidLength(len, expected) => (format!("length {len}"), expected.clone()),
        Kind::UnknownVariant(v, expected) => (v.clone(), format!("one of {}", expected.join(", "))),
        other => (String::from("?"), other.to_string()),
    }
}

/// Environment variables from pairs, for the tests of every config file.
#[cfg(test)]
pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn defaults_are_the_embedded_lake_on_loopback() {
        let loaded = Config::load_from(None, &[]).expect("defaults are valid");
        assert_eq!(loaded.config.server.host, "127.0.0.1");
        assert_eq!(loaded.config.server.port, 8000);
        assert!(loaded.config.postgres.host.is_none());
        assert!(loaded.config.storage.minio_endpoint.is_none());
        assert_eq!(loaded.sources["server.port"], "default");
    }

    #[test]
    fn origin_environment_names_map_onto_keys() {
        let loaded = Config::load_from(
            None,
            &env(&[
                ("DB_POSTGRES_HOST", "pg.internal"),
                ("DB_POSTGRES_PASSWORD", "12345"),
                ("DB_DUCKLAKE_DATA_INLINING_ROW_LIMIT", "1000"),
                ("DB_DUCKLAKE_CONNECTION_TIMEOUT", "30.0"),
                ("STORAGE_MINIO_ENDPOINT", "minio:9000"),
                ("STORAGE_MINIO_ACCESS_KEY", "ak"),
                ("STORAGE_MINIO_SECRET_KEY", "sk"),
                ("FEATURE_ENABLE_S3_ENCRYPTION", "true"),
                ("STORAGE_KMS_KEY_ID", "alias/lake"),
                ("LOG_LEVEL", "INFO"),
                ("SERVER_PORT", "9100"),
                ("HOT_TABLES_MAX_TABLE_BYTES", "4096"),
                ("HOT_TABLES_ENABLED", "false"),
                ("SOME_UNRELATED_VAR", "x"),
            ]),
        )
        .expect("valid");
        let c = loaded.config;
        assert_eq!(c.postgres.host.as_deref(), Some("pg.internal"));
        assert_eq!(
            c.postgres.password.as_ref().map(Secret::expose),
            Some("12345")
        );
        assert_eq!(c.ducklake.data_inlining_row_limit, Some(1000));
        assert!(c.features.enable_s3_encryption);
        assert_eq!(c.storage.kms_key_id.as_deref(), Some("alias/lake"));
        assert_eq!(c.server.port, 9100);
        assert_eq!(loaded.sources["server.port"], "environment SERVER_PORT");
        assert!(!c.hot_tables.enabled);
        assert_eq!(c.hot_tables.budget(1 << 30), (1 << 26, 4096));
    }

    #[test]
    fn every_problem_is_reported_with_key_value_and_expectation() {
        let err = Config::load_from(
            None,
            &env(&[
                ("SERVER_PORT", "eighty"),
                ("LOG_LEVEL", "loud"),
                ("DUCKDB_MEMORY_LIMIT", "lots"),
            ]),
        )
        .err()
        .expect("invalid");
        let text = err.to_string();
        assert!(text.contains("server.port = "), "{text}");
        assert!(text.contains("eighty"), "{text}");
        // The server section failed to parse, so semantic checks do not run;
        // the other sections' type errors are still all there.
        let err = Config::load_from(
            None,
            &env(&[("LOG_LEVEL", "loud"), ("DUCKDB_MEMORY_LIMIT", "lots")]),
        )
        .err()
        .expect("invalid");
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err
            .to_string()
            .contains("log_level = loud: expected one of trace"));
        assert!(err.to_string().contains("duckdb.memory_limit = lots"));
    }

    #[test]
    fn toml_file_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nport = 9000\nhost = \"0.0.0.0\"\n[auth]\nenabled = true\n",
        )
        .unwrap();
        let loaded =
            Config::load_from(Some(path.clone()), &env(&[("SERVER_PORT", "9001")])).unwrap();
        assert_eq!(loaded.config.server.host, "0.0.0.0");
        assert_eq!(loaded.config.server.port, 9001);
        assert!(loaded.sources["server.host"].starts_with("file "));
    }

    #[test]
    fn an_unknown_setting_is_warned_about_and_refused_in_production() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nprot = 9000\n").unwrap();
        let loaded = Config::load_from(
            Some(path.clone()),
            &env(&[("QUERY_TIMEOUT_MSS", "5"), ("SERVER_PORT", "9001")]),
        )
        .unwrap();
        let said: Vec<String> = loaded.unknown.iter().map(ToString::to_string).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said.iter()
                .any(|w| w.starts_with("server.prot (file ")
                    && w.ends_with("did you mean server.port?")),
            "{said:?}"
        );
        assert!(
            said.iter().any(|w| w
                == "query.timeout_mss (environment QUERY_TIMEOUT_MSS) is not a setting; did you \
                    mean query.timeout_ms?"),
            "{said:?}"
        );
        let err = Config::load_from(
            Some(path),
            &env(&[("ENVIRONMENT", "production"), ("AUTH_ENABLED", "true")]),
        )
        .err()
        .expect("production refuses an unknown setting");
        assert!(err.to_string().contains("server.prot"), "{err}");
    }

    /// The configuration reference (docs/src/reference/configuration.md)
    /// lists every setting, with the environment variable that sets it, and
    /// nothing else: the code's own list holds it to account.
    #[test]
    fn the_configuration_reference_lists_every_setting() {
        let page = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/src/reference/configuration.md"
        ))
        .expect("the docs beside the crate");
        let documented: BTreeMap<String, String> = page
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let var = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((key.to_string(), var.to_string()))
            })
            .collect();
        let known: Vec<String> = settings(&Config::default(), &BTreeMap::new())
            .into_iter()
            .map(|setting| setting.key)
            .collect();
        let mut missing = Vec::new();
        for key in &known {
            match documented.get(key) {
                Some(var) => assert_eq!(env_key(var).as_ref(), Some(key), "{var} sets {key}?"),
                None => missing.push(key.clone()),
            }
        }
        assert!(
            missing.is_empty(),
            "settings missing from the reference: {missing:?}"
        );
        let extra: Vec<&String> = documented.keys().filter(|k| !known.contains(k)).collect();
        assert!(
            extra.is_empty(),
            "the reference lists what is no setting: {extra:?}"
        );
    }
}
