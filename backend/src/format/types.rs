//! DuckDB's logical types of a result, as a small owned tree.
//!
//! The Arrow schema alone cannot tell a HUGEINT from a DECIMAL(38,0) or a
//! JSON from a VARCHAR, so encoders walk this tree beside the Arrow arrays,
//! and the API reports [`DuckType::name`] as each column's type.

use duckdb::arrow::datatypes::DataType;
use duckdb::core::{LogicalTypeHandle, LogicalTypeId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuckType {
    pub id: LogicalTypeId,
    /// DuckDB's spelling: `INTEGER`, `DECIMAL(18,3)`, `STRUCT(a INTEGER, b VARCHAR[])` ...
    pub name: String,
    /// List/array element, struct fields or union members (named), map key and value.
    pub children: Vec<(String, DuckType)>,
}

impl DuckType {
    /// Builds the tree from DuckDB's handle; `arrow` supplies what the C API
    /// does not expose through the crate (fixed array sizes).
    pub fn from_logical(handle: &LogicalTypeHandle, arrow: &DataType) -> Self {
        let id = handle.id();
        let alias = handle.get_alias();
        let child_arrow = |i: usize| -> DataType {
            match arrow {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                    f.data_type().clone()
                }
                DataType::Struct(fields) => fields
                    .get(i)
                    .map(|f| f.data_type().clone())
                    .unwrap_or(DataType::Null),
                DataType::Union(fields, _) => fields
                    .iter()
                    .nth(i)
                    .map(|(_, f)| f.data_type().clone())
                    .unwrap_or(DataType::Null),
                DataType::Map(entries, _) => match entries.data_type() {
                    DataType::Struct(kv) => kv
                        .get(i)
                        .map(|f| f.data_type().clone())
                        .unwrap_or(DataType::Null),
                    _ => DataType::Null,
                },
                _ => DataType::Null,
            }
        };
        let children: Vec<(String, DuckType)> = match id {
            LogicalTypeId::List | LogicalTypeId::Array => {
                vec![(
                    String::new(),
                    Self::from_logical(&handle.child(0), &child_arrow(0)),
                )]
            }
            LogicalTypeId::Map => vec![
                (
                    "key".into(),
                    Self::from_logical(&handle.child(0), &child_arrow(0)),
                ),
                (
                    "value".into(),
                    Self::from_logical(&handle.child(1), &child_arrow(1)),
                ),
            ],
            LogicalTypeId::Struct | LogicalTypeId::Union => (0..handle.num_children())
                .map(|i| {
                    (
                        handle.child_name(i),
                        Self::from_logical(&handle.child(i), &child_arrow(i)),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let name = match alias {
            Some(alias) => alias.to_ascii_uppercase(),
            None => type_name(id, handle, arrow, &children),
        };
        Self { id, name, children }
    }

    pub fn child(&self, i: usize) -> Option<&DuckType> {
        self.children.get(i).map(|(_, t)| t)
    }
}

fn type_name(
    id: LogicalTypeId,
    handle: &LogicalTypeHandle,
    arrow: &DataType,
    children: &[(String, DuckType)],
) -> String {
    let fields = |children: &[(String, DuckType)]| {
        children
            .iter()
            .map(|(n, t)| format!("{} {}", quote_field(n), t.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match id {
        LogicalTypeId::Boolean => "BOOLEAN".into(),
        LogicalTypeId::Tinyint => "TINYINT".into(),
        LogicalTypeId::Smallint => "SMALLINT".into(),
        LogicalTypeId::Integer => "INTEGER".into(),
        LogicalTypeId::Bigint => "BIGINT".into(),
        LogicalTypeId::UTinyint => "UTINYINT".into(),
        LogicalTypeId::USmallint => "USMALLINT".into(),
        LogicalTypeId::UInteger => "UINTEGER".into(),
        LogicalTypeId::UBigint => "UBIGINT".into(),
        LogicalTypeId::Hugeint => "HUGEINT".into(),
        LogicalTypeId::UHugeint => "UHUGEINT".into(),
        LogicalTypeId::Float => "FLOAT".into(),
        LogicalTypeId::Double => "DOUBLE".into(),
        LogicalTypeId::Decimal => format!(
            "DECIMAL({},{})",
            handle.decimal_width(),
            handle.decimal_scale()
        ),
        LogicalTypeId::Varchar => "VARCHAR".into(),
        LogicalTypeId::Blob => "BLOB".into(),
        LogicalTypeId::Date => "DATE".into(),
        LogicalTypeId::Time => "TIME".into(),
        LogicalTypeId::TimeNs => "TIME_NS".into(),
        LogicalTypeId::TimeTZ => "TIME WITH TIME ZONE".into(),
        LogicalTypeId::Timestamp => "TIMESTAMP".into(),
        LogicalTypeId::TimestampS => "TIMESTAMP_S".into(),
        LogicalTypeId::TimestampMs => "TIMESTAMP_MS".into(),
        LogicalTypeId::TimestampNs => "TIMESTAMP_NS".into(),
        LogicalTypeId::TimestampTZ => "TIMESTAMP WITH TIME ZONE".into(),
        LogicalTypeId::Interval => "INTERVAL".into(),
        LogicalTypeId::Uuid => "UUID".into(),
        LogicalTypeId::Enum => "ENUM".into(),
        LogicalTypeId::Bit => "BIT".into(),
        LogicalTypeId::Bignum => "BIGNUM".into(),
        LogicalTypeId::SqlNull => "NULL".into(),
        LogicalTypeId::Geometry => "GEOMETRY".into(),
        LogicalTypeId::Variant => "VARIANT".into(),
        LogicalTypeId::List => format!("{}[]", children[0].1.name),
        LogicalTypeId::Array => match arrow {
            DataType::FixedSizeList(_, n) => format!("{}[{n}]", children[0].1.name),
            _ => format!("{}[]", children[0].1.name),
        },
        LogicalTypeId::Map => format!("MAP({}, {})", children[0].1.name, children[1].1.name),
        LogicalTypeId::Struct => format!("STRUCT({})", fields(children)),
        LogicalTypeId::Union => format!("UNION({})", fields(children)),
        other => format!("{other:?}").to_ascii_uppercase(),
    }
}

fn quote_field(name: &str) -> String {
    if crate::config::is_identifier(name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// One column of a result: its name and DuckDB's name of its type.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}
