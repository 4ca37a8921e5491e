//! The effective configuration as the operator sees it: [`Config::redacted`]
//! (secrets as `***`) and its flat list of [`Setting`]s with their sources,
//! the one rendering `/config/summary` and `check-config` show.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sections::Config;

/// One setting of the effective configuration: its dotted key, its value
/// (a secret as `***`) and where it came from (None: the default).
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub key: String,
    pub value: serde_json::Value,
    pub source: Option<String>,
}

/// Every setting of `config`, in key order, with its source from `sources`
/// (dotted key → "file `<path>`" | "environment VAR"): the one rendering that
/// `/config/summary` and `check-config` show.
pub fn settings(config: &Config, sources: &BTreeMap<String, String>) -> Vec<Setting> {
    fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    leaves("", &config.redacted(), &mut out);
    out.into_iter()
        .map(|(key, value)| Setting {
            source: sources.get(&key).cloned(),
            key,
            value,
        })
        .collect()
}

impl Config {
    /// The effective configuration as a JSON tree, secrets shown as `***`.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("Config serialises to JSON")
    }
}
