//! Parameters bound to a prepared statement arrive as an Arrow batch, one
//! column per placeholder, one row per execution. Each value becomes the
//! engine's [`Param`] with its type: integers keep their exact text (as the
//! HTTP API's JSON numbers), text stays text, and floats, decimals, dates,
//! times, timestamps with and without zone, binary values and lists of
//! these bind as their DuckDB type (`SELECT ? + INTERVAL 1 DAY` with a
//! date, `typeof(?)` of a float is DOUBLE).

use arrow_array::{
    cast::AsArray,
    types::{
        Date32Type, Decimal128Type, Float32Type, Float64Type, Time64MicrosecondType,
        TimestampMicrosecondType,
    },
    Array, ArrayRef, RecordBatch,
};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, TimeUnit};

use crate::{
    engine::query::{Bind, Param, Params, Typed},
    error::Error,
};

/// The parameters of each row of `batch`.
pub fn rows(batch: &RecordBatch) -> Result<Vec<Params>, Error> {
    for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
        if sql_type(column.data_type()).is_none() {
            return Err(unbindable(field.name(), column.data_type()));
        }
    }
    (0..batch.num_rows())
        .map(|row| {
            let values = batch
                .columns()
                .iter()
                .zip(batch.schema().fields())
                .map(|(column, field)| param(column, row, field.name()))
                .collect::<Result<_, _>>()?;
            Ok(Params::Positional(values))
        })
        .collect()
}

fn unbindable(name: &str, ty: &DataType) -> Error {
    Error::InvalidParameters(format!(
        "parameter {name} is of type {ty}, which cannot be bound: bind numbers, booleans, \
         text, dates, times, timestamps, decimals, binary values or lists of these"
    ))
}

/// DuckDB's name of the type a value of `ty` binds as, if it binds.
fn sql_type(ty: &DataType) -> Option<String> {
    Some(match ty {
        DataType::Null => "VARCHAR".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s)
            if *s >= 0 && *p <= 38 =>
        {
            format!("DECIMAL({p},{s})")
        }
        DataType::Decimal256(..) => "VARCHAR".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("{}[]", sql_type(item.data_type())?)
        }
        _ => return None,
    })
}

/// `array` cast to `to` (a canonical type whose values are read below).
fn cast(array: &dyn Array, to: &DataType) -> Result<ArrayRef, Error> {
    arrow_cast::cast(array, to).map_err(|e| Error::InvalidParameters(format!("{e}")))
}

/// The value at `row` of `column` as a parameter.
fn param(column: &ArrayRef, row: usize, name: &str) -> Result<Param, Error> {
    if column.is_null(row) {
        return Ok(Param::Json(serde_json::Value::Null));
    }
    let ty = column.data_type();
    let typed = |text: String, bind: Bind| {
        Param::Typed(Typed {
            sql_type: sql_type(ty).expect("checked bindable"),
            text,
            bind,
        })
    };
    let one = column.slice(row, 1);
    Ok(match ty {
        DataType::Boolean => Param::Json(serde_json::Value::Bool(column.as_boolean().value(row))),
        ty if ty.is_integer() => Param::Number(display(&one)?),
        DataType::Float16 | DataType::Float32 => {
            let value = cast(&one, &DataType::Float32)?
                .as_primitive::<Float32Type>()
                .value(0);
            typed(value.to_string(), Bind::Float)
        }
        DataType::Float64 => typed(
            column.as_primitive::<Float64Type>().value(row).to_string(),
            Bind::Double,
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Decimal256(..) => {
            // Decimal256: wider than DuckDB's decimals; its text, as JSON's.
            match ty {
                DataType::Decimal256(..) => Param::Number(display(&one)?),
                _ => Param::Json(serde_json::Value::String(display(&one)?)),
            }
        }
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            let unscaled = cast(&one, &DataType::Decimal128(*p, *s))?
                .as_primitive::<Decimal128Type>()
                .value(0);
            typed(
                display(&one)?,
                Bind::Decimal {
                    width: *p,
                    scale: *s as u8,
                    unscaled: unscaled.to_string(),
                },
            )
        }
        DataType::Date32 | DataType::Date64 => {
            let days = cast(&one, &DataType::Date32)?
                .as_primitive::<Date32Type>()
                .value(0);
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::days(days.into())))
                .ok_or_else(|| out_of_range(name))?;
            typed(date.format("%Y-%m-%d").to_string(), Bind::Date(days))
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let micros = cast(&one, &DataType::Time64(TimeUnit::Microsecond))?
                .as_primitive::<Time64MicrosecondType>()
                .value(0);
            let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                (micros / 1_000_000) as u32,
                (micros % 1_000_000) as u32 * 1000,
            )
            .ok_or_else(|| out_of_range(name))?;
            typed(time.format("%H:%M:%S%.6f").to_string(), Bind::Time(micros))
        }
        DataType::Timestamp(_, zone) => {
            let micros = cast(
                &one,
                &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
            )?
            .as_primitive::<TimestampMicrosecondType>()
            .value(0);
            let at = chrono::DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| out_of_range(name))?;
            let text = match zone {
                // The instant, in UTC (the zone's name is no part of the value).
                Some(_) => at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
                None => at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            };
            typed(text, Bind::Timestamp(micros))
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            let bytes = cast(&one, &DataType::LargeBinary)?
                .as_binary::<i64>()
                .value(0)
                .to_vec();
            let text = bytes.iter().map(|b| format!("\\x{b:02X}")).collect();
            typed(text, Bind::Blob(bytes))
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let items = match ty {
                DataType::List(_) => column.as_list::<i32>().value(row),
                DataType::LargeList(_) => column.as_list::<i64>().value(row),
                _ => column.as_fixed_size_list().value(row),
            };
            let items = (0..items.len())
                .map(|i| param(&items, i, name))
                .collect::<Result<Vec<_>, _>>()?;
            let text = format!(
                "[{}]",
                items
                    .iter()
                    .map(list_item_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            typed(text, Bind::List(items))
        }
        DataType::Null => Param::Json(serde_json::Value::Null),
        other => return Err(unbindable(name, other)),
    })
}

/// An item of a list's text as DuckDB's cast of text to a list reads it.
fn list_item_text(item: &Param) -> String {
    let quoted = |text: &str| format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"));
    match item {
        Param::Json(serde_json::Value::Null) => "NULL".into(),
        Param::Json(serde_json::Value::String(text)) => quoted(text),
        Param::Json(other) => other.to_string(),
        Param::Number(text) => text.clone(),
        Param::Typed(typed) => match &typed.bind {
            Bind::List(_) => typed.text.clone(),
            _ => quoted(&typed.text),
        },
    }
}

fn out_of_range(name: &str) -> Error {
    Error::InvalidParameters(format!("parameter {name} is out of range for its type"))
}

/// The one value of `array` as Arrow displays it.
fn display(array: &dyn Array) -> Result<String, Error> {
    let options = FormatOptions::default().with_null("");
    let formatter = ArrayFormatter::try_new(array, &options)
        .map_err(|e| Error::InvalidParameters(format!("{e}")))?;
    Ok(formatter.value(0).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
        StringArray, StructArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    };
    use arrow_schema::{Field, Schema};

    use super::*;

    fn typed(param: &Param) -> (&str, &str) {
        match param {
            Param::Typed(typed) => (typed.sql_type.as_str(), typed.text.as_str()),
            other => panic!("not typed: {other:?}"),
        }
    }

    #[test]
    fn each_row_becomes_positional_parameters_of_their_types() {
        let columns: Vec<(DataType, ArrayRef)> = vec![
            (
                DataType::Int64,
                Arc::new(Int64Array::from(vec![Some(i64::MAX), None])),
            ),
            (
                DataType::Utf8,
                Arc::new(StringArray::from(vec![Some("it's"), Some("")])),
            ),
            (
                DataType::Boolean,
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
            ),
            (
                DataType::Float64,
                Arc::new(Float64Array::from(vec![Some(0.1), Some(f64::NAN)])),
            ),
            (
                DataType::Decimal128(20, 3),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345678901234567890), None])
                        .with_precision_and_scale(20, 3)
                        .unwrap(),
                ),
            ),
            (
                DataType::Date32,
                Arc::new(Date32Array::from(vec![Some(19000), None])),
            ),
            (
                DataType::Time64(TimeUnit::Microsecond),
                Arc::new(Time64MicrosecondArray::from(vec![
                    Some(45_296_789_000),
                    None,
                ])),
            ),
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_704_164_645_678_901),
                    None,
                ])),
            ),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("+02:00".into())),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_704_164_645_000_000), None])
                        .with_timezone("+02:00"),
                ),
            ),
            (
                DataType::Binary,
                Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff"[..]), None])),
            ),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, (ty, _))| Field::new(i.to_string(), ty.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema, columns.into_iter().map(|(_, a)| a).collect()).unwrap();
        let rows = rows(&batch).unwrap();
        let Params::Positional(first) = &rows[0] else {
            panic!()
        };
        assert_eq!(first[0], Param::Number(i64::MAX.to_string()));
        assert_eq!(first[1], Param::Json("it's".into()));
        assert_eq!(first[2], Param::Json(true.into()));
        assert_eq!(typed(&first[3]), ("DOUBLE", "0.1"));
        assert_eq!(typed(&first[4]), ("DECIMAL(20,3)", "12345678901234567.890"));
        assert_eq!(typed(&first[5]), ("DATE", "2022-01-08"));
        assert_eq!(typed(&first[6]), ("TIME", "12:34:56.789000"));
        assert_eq!(
            typed(&first[7]),
            ("TIMESTAMP", "2024-01-02 03:04:05.678901")
        );
        assert_eq!(
            typed(&first[8]),
            ("TIMESTAMPTZ", "2024-01-02 03:04:05.000000+00")
        );
        assert_eq!(typed(&first[9]), ("BLOB", "\\x00\\xFF"));
        let Params::Positional(second) = &rows[1] else {
            panic!()
        };
        assert_eq!(typed(&second[3]), ("DOUBLE", "NaN"));
        assert!(second[5..]
            .iter()
            .all(|p| *p == Param::Json(serde_json::Value::Null)));
        // A handle carries them through JSON unchanged.
        let text = serde_json::to_string(&rows[1]).unwrap();
        let back: Params = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_json_text(), rows[1].to_json_text());
    }

    #[test]
    fn a_list_binds_typed_and_a_struct_is_refused_with_its_name() {
        let list = arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(
            vec![Some(vec![Some(1), None, Some(3)])],
        );
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ids",
            list.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(list)]).unwrap();
        let rows = rows(&batch).unwrap();
        let Params::Positional(values) = &rows[0] else {
            panic!()
        };
        assert_eq!(typed(&values[0]), ("INTEGER[]", "[1, NULL, 3]"));

        let inner: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let st = StructArray::from(vec![(
            Arc::new(Field::new("a", DataType::Int64, true)),
            inner,
        )]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "st",
            st.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(st)]).unwrap();
        let err = super::rows(&batch).unwrap_err();
        assert_eq!(err.code(), "invalid_parameters");
        assert!(err.to_string().contains("st"), "{err}");
    }
}
