//! Parameters bound to a prepared statement arrive as an Arrow batch, one
//! column per placeholder, one row per execution. Each value becomes the
//! engine's [`Param`] as the HTTP API's JSON would give it: numbers keep
//! their exact text, text stays text, dates and times go as their ISO text
//! (DuckDB casts them where the statement needs a typed value), so both
//! protocols bind the same way and the sandbox checks the same statement.

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;

use crate::{
    engine::query::{Param, Params},
    error::Error,
};

/// The parameters of each row of `batch`.
pub fn rows(batch: &RecordBatch) -> Result<Vec<Params>, Error> {
    let options = FormatOptions::default().with_null("");
    let columns = batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(column, field)| {
            check_type(field.name(), column.data_type())?;
            ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(|e| Error::InvalidParameters(format!("parameter {}: {e}", field.name())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    (0..batch.num_rows())
        .map(|row| {
            let values = batch
                .columns()
                .iter()
                .zip(&columns)
                .map(|(column, formatter)| value(column.as_ref(), formatter, row))
                .collect();
            Ok(Params::Positional(values))
        })
        .collect()
}

fn check_type(name: &str, ty: &DataType) -> Result<(), Error> {
    let bindable = ty.is_primitive()
        || matches!(
            ty,
            DataType::Null
                | DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        );
    if bindable {
        Ok(())
    } else {
        Err(Error::InvalidParameters(format!(
            "parameter {name} is of type {ty}, which cannot be bound: bind numbers, booleans, \
             text, dates or times"
        )))
    }
}

fn value(column: &dyn Array, formatter: &ArrayFormatter, row: usize) -> Param {
    if column.is_null(row) {
        return Param::Json(serde_json::Value::Null);
    }
    let text = formatter.value(row).to_string();
    let ty = column.data_type();
    if *ty == DataType::Boolean {
        return Param::Json(serde_json::Value::Bool(text == "true"));
    }
    let numeric = ty.is_numeric() && !matches!(ty, DataType::Float16);
    // NaN and the infinities have no JSON number: DuckDB reads the text.
    if numeric && text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) && text != "-inf" {
        return Param::Number(text);
    }
    Param::Json(serde_json::Value::String(text))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
    };
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn each_row_becomes_positional_parameters_with_exact_numbers() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("0", DataType::Int64, true),
            Field::new("1", DataType::Utf8, true),
            Field::new("2", DataType::Boolean, true),
            Field::new("3", DataType::Float64, true),
            Field::new("4", DataType::Decimal128(20, 3), true),
            Field::new("5", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(i64::MAX), None])),
                Arc::new(StringArray::from(vec![Some("it's"), Some("")])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
                Arc::new(Float64Array::from(vec![Some(0.1), Some(f64::NAN)])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345678901234567890), None])
                        .with_precision_and_scale(20, 3)
                        .unwrap(),
                ),
                Arc::new(Date32Array::from(vec![Some(19000), None])),
            ],
        )
        .unwrap();
        let rows = rows(&batch).unwrap();
        let texts: Vec<String> = rows.iter().map(Params::to_json_text).collect();
        assert_eq!(
            texts,
            [
                r#"[9223372036854775807,"it's",true,0.1,12345678901234567.890,"2022-01-08"]"#,
                r#"[null,"",false,"NaN",null,null]"#,
            ]
        );
    }

    #[test]
    fn a_nested_parameter_is_refused_with_its_name() {
        let list = arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(
            vec![Some(vec![Some(1)])],
        );
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ids",
            list.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(list)]).unwrap();
        let err = rows(&batch).unwrap_err();
        assert_eq!(err.code(), "invalid_parameters");
        assert!(err.to_string().contains("ids"), "{err}");
    }
}
