//! The parts of a SQL request: its parameters, bound through a prepared
//! statement (never spliced into the SQL), and its result columns. Running
//! and streaming it is [`super::stream`].

use duckdb::types::Value;
use serde::Serialize;

use crate::error::ApiError;

/// Query parameters: positional (`?`, `$1`) or named (`$name`).
#[derive(Debug, Clone, Default)]
pub enum Params {
    #[default]
    None,
    Positional(Vec<serde_json::Value>),
    Named(serde_json::Map<String, serde_json::Value>),
}

impl Params {
    /// A request's `params` field: an array binds positional parameters, an
    /// object named ones.
    pub fn from_json(value: Option<serde_json::Value>) -> Result<Self, ApiError> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(Params::None),
            Some(serde_json::Value::Array(values)) => Ok(Params::Positional(values)),
            Some(serde_json::Value::Object(map)) => Ok(Params::Named(map)),
            Some(_) => Err(ApiError::InvalidParameters(
                "params must be an array (positional) or an object (named)".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Orders the request's parameters the way the statement numbers them.
pub(crate) fn bind_values(
    stmt: &duckdb::Statement<'_>,
    params: &Params,
) -> Result<Vec<Value>, ApiError> {
    let expected = stmt.parameter_count();
    match params {
        Params::None if expected == 0 => Ok(Vec::new()),
        Params::None => Err(ApiError::InvalidParameters(format!(
            "the statement takes {expected} parameter(s) and none were given"
        ))),
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(ApiError::InvalidParameters(format!(
                    "the statement takes {expected} parameter(s), {} were given",
                    values.len()
                )));
            }
            Ok(values.iter().map(json_to_value).collect())
        }
        Params::Named(map) => {
            let mut values = Vec::with_capacity(expected);
            for i in 1..=expected {
                let name = stmt.parameter_name(i).map_err(ApiError::from_duckdb)?;
                let value = map.get(&name).ok_or_else(|| {
                    ApiError::InvalidParameters(format!("no value given for parameter ${name}"))
                })?;
                values.push(json_to_value(value));
            }
            if let Some(extra) = map.keys().find(|k| {
                !(1..=expected).any(|i| stmt.parameter_name(i).ok().as_deref() == Some(k.as_str()))
            }) {
                return Err(ApiError::InvalidParameters(format!(
                    "the statement has no parameter ${extra}"
                )));
            }
            Ok(values)
        }
    }
}

/// JSON scalars bind as themselves; arrays and objects bind as their JSON
/// text, which DuckDB casts to LIST, STRUCT or JSON where the statement needs it.
fn json_to_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::BigInt(i),
            (None, Some(u), _) => Value::UBigInt(u),
            (_, _, Some(f)) => Value::Double(f),
            _ => Value::Text(n.to_string()),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}
