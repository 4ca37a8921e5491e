//! The parts of a SQL request: its parameters, bound through a prepared
//! statement (never spliced into the SQL), and its result columns. Running
//! and streaming it is [`super::stream`].

use std::collections::BTreeMap;

use duckdb::types::Value;

use serde_json::value::RawValue;

use crate::error::Error;

/// One parameter as the client sent it. A number keeps its exact text until
/// DuckDB casts it: a JSON parser would read `12345678901234567890.123` or
/// `2^100` into a binary float first. A typed value (Flight SQL's Arrow
/// parameters) keeps its type.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Param {
    Number(String),
    Json(serde_json::Value),
    Typed(Typed),
}

/// A value of a DuckDB type: a date, a time, a timestamp with or without
/// zone, a decimal, a float, a blob, a list of such.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Typed {
    /// DuckDB's name of its type (`DATE`, `TIMESTAMPTZ`, `DECIMAL(20,3)`,
    /// `INTEGER[]` ...).
    pub sql_type: String,
    /// The value as DuckDB's cast from text reads it.
    pub text: String,
    pub bind: Bind,
}

/// How a [`Typed`] value binds to a prepared statement's parameter.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Bind {
    /// DOUBLE / FLOAT, by their shortest exact text (NaN and the
    /// infinities too).
    Double,
    Float,
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01 00:00 (UTC for a timestamp with zone,
    /// whose type DuckDB's binding cannot carry: see [`Typed::exact`]).
    Timestamp(i64),
    Decimal {
        width: u8,
        scale: u8,
        unscaled: String,
    },
    Blob(Vec<u8>),
    /// A list: its text binds (DuckDB casts it where the statement needs a
    /// list); a SELECT gets the elements written in, typed.
    List(Vec<Param>),
}

impl Typed {
    /// Whether a prepared statement's binding keeps the type exactly (a
    /// timestamp with zone binds as its UTC instant without the zone, a
    /// list as its text): where it does not, a SELECT runs with the value
    /// written in as a typed literal.
    pub fn exact(&self) -> bool {
        !matches!(self.bind, Bind::List(_)) && self.sql_type != "TIMESTAMPTZ"
    }

    /// The value as a SQL expression of its type.
    pub fn literal(&self, element: impl Fn(&Param) -> String) -> String {
        match &self.bind {
            Bind::List(items) => {
                let items: Vec<String> = items.iter().map(element).collect();
                format!("CAST([{}] AS {})", items.join(", "), self.sql_type)
            }
            _ => format!("CAST({} AS {})", quote_text(&self.text), self.sql_type),
        }
    }

    fn value(&self) -> Value {
        use duckdb::types::TimeUnit;
        match &self.bind {
            Bind::Double => self
                .text
                .parse()
                .map_or_else(|_| Value::Text(self.text.clone()), Value::Double),
            Bind::Float => self
                .text
                .parse()
                .map_or_else(|_| Value::Text(self.text.clone()), Value::Float),
            Bind::Date(days) => Value::Date32(*days),
            Bind::Time(micros) => Value::Time64(TimeUnit::Microsecond, *micros),
            Bind::Timestamp(micros) => Value::Timestamp(TimeUnit::Microsecond, *micros),
            Bind::Decimal {
                width,
                scale,
                unscaled,
            } => unscaled
                .parse::<i128>()
                .ok()
                .and_then(|unscaled| duckdb::types::Decimal::new(*width, *scale, unscaled).ok())
                .map_or_else(|| Value::Text(self.text.clone()), Value::Decimal),
            Bind::Blob(bytes) => Value::Blob(bytes.clone()),
            Bind::List(_) => Value::Text(self.text.clone()),
        }
    }
}

/// `text` as a SQL string literal (a NUL, which cannot sit inside SQL
/// text, as `chr(0)`).
pub(crate) fn quote_text(text: &str) -> String {
    text.split('\0')
        .map(|part| format!("'{}'", part.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" || chr(0) || ")
}

impl Param {
    fn from_raw(raw: &RawValue) -> Result<Self, Error> {
        let text = raw.get();
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            // Beyond a double's range with an exponent (1e400): no type holds it.
            if serde_json::from_str::<serde_json::Number>(text).is_err() {
                return Err(Error::InvalidParameters(format!(
                    "the parameter {text} is out of range for every numeric type"
                )));
            }
            return Ok(Param::Number(text.to_string()));
        }
        serde_json::from_str(text)
            .map(Param::Json)
            .map_err(|e| Error::InvalidParameters(format!("params is not valid JSON: {e}")))
    }

    /// The parameter as JSON text (numbers exactly as sent; a typed value
    /// as an object naming its type).
    pub fn to_json_text(&self) -> String {
        match self {
            Param::Number(text) => text.clone(),
            Param::Json(value) => value.to_string(),
            Param::Typed(typed) => serde_json::json!({
                "$type": typed.sql_type,
                "value": typed.text,
            })
            .to_string(),
        }
    }
}

/// Query parameters: positional (`?`, `$1`) or named (`$name`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub enum Params {
    #[default]
    None,
    Positional(Vec<Param>),
    Named(BTreeMap<String, Param>),
}

impl Params {
    /// A request's `params` field as sent: an array binds positional
    /// parameters, an object named ones.
    pub fn from_raw(raw: Option<&RawValue>) -> Result<Self, Error> {
        match raw {
            None => Ok(Params::None),
            Some(raw) => Self::parse(raw.get()),
        }
    }

    /// [`Params::from_raw`] from JSON text (the query string's `params`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |e: serde_json::Error| {
            Error::InvalidParameters(format!("params is not valid JSON: {e}"))
        };
        match text.trim_start().as_bytes().first() {
            Some(b'[') => serde_json::from_str::<Vec<Box<RawValue>>>(text)
                .map_err(invalid)?
                .iter()
                .map(|raw| Param::from_raw(raw))
                .collect::<Result<_, _>>()
                .map(Params::Positional),
            Some(b'{') => serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(text)
                .map_err(invalid)?
                .into_iter()
                .map(|(name, raw)| Ok((name, Param::from_raw(&raw)?)))
                .collect::<Result<_, _>>()
                .map(Params::Named),
            _ if text.trim() == "null" => Ok(Params::None),
            _ => {
                serde_json::from_str::<serde_json::Value>(text).map_err(invalid)?;
                Err(Error::InvalidParameters(
                    "params must be an array (positional) or an object (named)".into(),
                ))
            }
        }
    }

    /// Whether every value binds with its type exactly (see
    /// [`Typed::exact`]).
    pub fn bind_exactly(&self) -> bool {
        let exact = |param: &Param| !matches!(param, Param::Typed(typed) if !typed.exact());
        match self {
            Params::None => true,
            Params::Positional(values) => values.iter().all(exact),
            Params::Named(map) => map.values().all(exact),
        }
    }

    /// The parameters as JSON text, numbers exactly as sent.
    pub fn to_json_text(&self) -> String {
        match self {
            Params::None => String::new(),
            Params::Positional(values) => format!(
                "[{}]",
                values
                    .iter()
                    .map(Param::to_json_text)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Params::Named(map) => format!(
                "{{{}}}",
                map.iter()
                    .map(|(name, value)| format!(
                        "{}:{}",
                        serde_json::Value::from(name.as_str()),
                        value.to_json_text()
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// The rows of `sql` with `params`, each mapped by `row`: DuckDB's prepare,
/// query and collect as one call with one error to map.
pub(crate) fn query_vec<T, P: duckdb::Params>(
    conn: &duckdb::Connection,
    sql: &str,
    params: P,
    row: impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<T>,
) -> duckdb::Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, row)?.collect();
    rows
}

/// Orders the request's parameters the way the statement numbers them.
pub(crate) fn bind_values(
    stmt: &duckdb::Statement<'_>,
    params: &Params,
) -> Result<Vec<Value>, Error> {
    let expected = stmt.parameter_count();
    match params {
        Params::None if expected == 0 => Ok(Vec::new()),
        Params::None => Err(Error::InvalidParameters(format!(
            "the statement takes {expected} parameter(s) and none were given"
        ))),
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(Error::InvalidParameters(format!(
                    "the statement takes {expected} parameter(s), {} were given",
                    values.len()
                )));
            }
            Ok(values.iter().map(json_to_value).collect())
        }
        Params::Named(map) => {
            let mut values = Vec::with_capacity(expected);
            for i in 1..=expected {
                let name = stmt.parameter_name(i).map_err(Error::from_duckdb)?;
                let value = map.get(&name).ok_or_else(|| {
                    Error::InvalidParameters(format!("no value given for parameter ${name}"))
                })?;
                values.push(json_to_value(value));
            }
            if let Some(extra) = map.keys().find(|k| {
                !(1..=expected).any(|i| stmt.parameter_name(i).ok().as_deref() == Some(k.as_str()))
            }) {
                return Err(Error::InvalidParameters(format!(
                    "the statement has no parameter ${extra}"
                )));
            }
            Ok(values)
        }
    }
}

/// JSON scalars bind as themselves; arrays and objects bind as their JSON
/// text, which DuckDB casts to LIST, STRUCT or JSON where the statement needs it.
/// A number binds as the narrowest exact type for its text: BIGINT,
/// UBIGINT, HUGEINT or UHUGEINT when whole, DECIMAL with the digits as sent
/// when it has a fraction (as the same literal in SQL does), DOUBLE with an
/// exponent, and its text (which DuckDB casts) when no such type holds it.
fn json_to_value(value: &Param) -> Value {
    match value {
        Param::Number(text) => number_value(text),
        Param::Json(serde_json::Value::Null) => Value::Null,
        Param::Json(serde_json::Value::Bool(b)) => Value::Boolean(*b),
        Param::Json(serde_json::Value::Number(n)) => number_value(&n.to_string()),
        Param::Json(serde_json::Value::String(s)) => Value::Text(s.clone()),
        Param::Json(other) => Value::Text(other.to_string()),
        Param::Typed(typed) => typed.value(),
    }
}

/// Whether a number's text binds as text (no numeric type holds it), which
/// DuckDB then casts where the statement needs it.
pub(crate) fn number_binds_as_text(text: &str) -> bool {
    matches!(number_value(text), Value::Text(_))
}

fn number_value(text: &str) -> Value {
    if let Ok(v) = text.parse::<i64>() {
        return Value::BigInt(v);
    }
    if let Ok(v) = text.parse::<u64>() {
        return Value::UBigInt(v);
    }
    if let Ok(v) = text.parse::<i128>() {
        return Value::HugeInt(v);
    }
    if let Ok(v) = text.parse::<u128>() {
        return Value::UHugeInt(v);
    }
    if text.contains(['e', 'E']) {
        if let Ok(v) = text.parse::<f64>() {
            return Value::Double(v);
        }
    }
    if let Some((int, frac)) = text.split_once('.') {
        let digits = format!("{int}{frac}");
        let width = digits.trim_start_matches('-').len().max(frac.len() + 1);
        if let (Ok(unscaled), Ok(width), Ok(scale)) = (
            digits.parse::<i128>(),
            u8::try_from(width),
            u8::try_from(frac.len()),
        ) {
            if let Ok(decimal) = duckdb::types::Decimal::new(width, scale, unscaled) {
                return Value::Decimal(decimal);
            }
        }
    }
    Value::Text(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_exact_text() {
        let params = Params::parse(
            "[1, -2, 18446744073709551615, 1267650600228229401496703205376, \
             12345678901234567890.1234567891, 1.5, 1e300, \"s\", null, [1.25]]",
        )
        .unwrap();
        let Params::Positional(values) = &params else {
            panic!("positional")
        };
        assert_eq!(
            values[4],
            Param::Number("12345678901234567890.1234567891".into())
        );
        let bound: Vec<Value> = values.iter().map(json_to_value).collect();
        assert_eq!(bound[0], Value::BigInt(1));
        assert_eq!(bound[1], Value::BigInt(-2));
        assert_eq!(bound[2], Value::UBigInt(u64::MAX));
        assert_eq!(bound[3], Value::HugeInt(1 << 100));
        assert_eq!(
            bound[4],
            Value::Decimal(
                duckdb::types::Decimal::new(30, 10, 123456789012345678901234567891).unwrap()
            )
        );
        assert_eq!(
            bound[5],
            Value::Decimal(duckdb::types::Decimal::new(2, 1, 15).unwrap())
        );
        assert_eq!(bound[6], Value::Double(1e300));
        assert_eq!(bound[7], Value::Text("s".into()));
        assert_eq!(bound[8], Value::Null);
        assert_eq!(bound[9], Value::Text("[1.25]".into()));
        assert_eq!(
            params.to_json_text(),
            "[1,-2,18446744073709551615,1267650600228229401496703205376,\
             12345678901234567890.1234567891,1.5,1e300,\"s\",null,[1.25]]"
        );
        // Wider than any DuckDB integer: its text, which DuckDB casts.
        let huge = "1".repeat(60);
        assert_eq!(number_value(&huge), Value::Text(huge.clone()));
        assert_eq!(
            number_value("-0.001"),
            Value::Decimal(duckdb::types::Decimal::new(4, 3, -1).unwrap())
        );
        let named = Params::parse(r#"{"b": 2.50, "a": "x"}"#).unwrap();
        assert_eq!(named.to_json_text(), r#"{"a":"x","b":2.50}"#);
        assert!(matches!(Params::parse("null").unwrap(), Params::None));
        assert_eq!(Params::parse("3").unwrap_err().code(), "invalid_parameters");
        assert_eq!(
            Params::parse("[1,").unwrap_err().code(),
            "invalid_parameters"
        );
        assert_eq!(
            Params::parse("[1e400]").unwrap_err().code(),
            "invalid_parameters"
        );
    }
}
