//! TIME WITH TIME ZONE carried as DuckDB's text, which keeps its offset
//! (Arrow's time types have none): the rewrite of a statement that casts
//! each such column, top-level or nested, to VARCHAR in its place.

use super::lake::quote_identifier;
use crate::format::types::DuckType;

/// `sql` with each column that holds a TIME WITH TIME ZONE (at the top or
/// nested in a LIST, ARRAY, STRUCT, MAP or UNION) cast to the same type with
/// VARCHAR in its place, by position and under its own name; `None` when
/// there is no such column.
pub(super) fn timetz_as_text(
    sql: &str,
    types: &[DuckType],
    stmt: &duckdb::Statement,
) -> Option<String> {
    let casts: Vec<Option<String>> = types.iter().map(timetz_as_varchar).collect();
    if casts.iter().all(Option::is_none) {
        return None;
    }
    let columns: Vec<String> = casts
        .iter()
        .enumerate()
        .map(|(i, cast)| {
            let name = stmt.column_name(i).cloned().unwrap_or_default();
            let alias = quote_identifier(&name);
            match cast {
                Some(to) => format!("CAST(#{} AS {to}) AS {alias}", i + 1),
                None => format!("#{} AS {alias}", i + 1),
            }
        })
        .collect();
    let inner = sql.trim().trim_end_matches(';');
    Some(format!(
        "SELECT {} FROM ({inner}\n) AS __timetz",
        columns.join(", ")
    ))
}

/// `ty` in SQL with every TIME WITH TIME ZONE in it replaced by VARCHAR;
/// `None` when it has none. (A type DuckDB cannot cast to from its name
/// alone, such as an ENUM beside it in a STRUCT, makes the cast fail, and
/// the read then keeps DuckDB's Arrow rendering.)
fn timetz_as_varchar(ty: &DuckType) -> Option<String> {
    use duckdb::core::LogicalTypeId as Id;
    let child = |i: usize| -> String {
        ty.child(i)
            .map(|c| timetz_as_varchar(c).unwrap_or_else(|| c.name.clone()))
            .unwrap_or_default()
    };
    let fields = || {
        ty.children
            .iter()
            .map(|(name, c)| {
                let sql = timetz_as_varchar(c).unwrap_or_else(|| c.name.clone());
                format!("{} {sql}", quote_identifier(name))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if ty.id == Id::TimeTZ {
        return Some("VARCHAR".into());
    }
    if !ty
        .children
        .iter()
        .any(|(_, c)| timetz_as_varchar(c).is_some())
    {
        return None;
    }
    Some(match ty.id {
        Id::List => format!("{}[]", child(0)),
        // DuckDB spells an array `CHILD[size]`: keep the size.
        Id::Array => {
            let size = ty.name.rsplit('[').next().unwrap_or("]");
            format!("{}[{size}", child(0))
        }
        Id::Map => format!("MAP({}, {})", child(0), child(1)),
        Id::Struct => format!("STRUCT({})", fields()),
        Id::Union => format!("UNION({})", fields()),
        _ => return None,
    })
}
