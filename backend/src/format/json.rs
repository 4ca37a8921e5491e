//! Exact JSON for every DuckDB type, written straight from Arrow arrays.
//!
//! The mapping (also in docs/src/reference/types.md):
//! - integers of every width, HUGEINT and UHUGEINT: JSON numbers with all digits
//! - DECIMAL: a string with the exact digits and scale (`"12.50"`), since
//!   JSON parsers read numbers into binary floats
//! - FLOAT/DOUBLE: numbers; NaN and ±infinity as the strings `"NaN"`,
//!   `"Infinity"`, `"-Infinity"`
//! - DATE, TIME, TIMESTAMP*: ISO 8601 strings; TIMESTAMP WITH TIME ZONE in UTC with `Z`;
//!   infinite dates/timestamps as `"infinity"` / `"-infinity"`
//! - INTERVAL: an ISO 8601 duration (`"P1Y2M3DT4H5M6.5S"`)
//! - UUID: the canonical hyphenated string; BLOB: base64 (standard alphabet, padded)
//! - BIGNUM: a JSON number with all digits; BIT: a string of its bits (`\"0101\"`)
//! - ENUM, VARCHAR, JSON: strings
//! - LIST/ARRAY: arrays; STRUCT: objects; MAP: objects keyed by the key's
//!   text; UNION: the value of its active member
//! - NULL: null

use std::io::Write;

use base64::Engine as _;
use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use duckdb::arrow::{
    array::{Array, AsArray, BooleanArray, PrimitiveArray, StringArray, StringViewArray},
    datatypes::*,
    temporal_conversions,
    util::display::{ArrayFormatter, FormatOptions},
};
use duckdb::core::LogicalTypeId;

use crate::format::types::DuckType;

/// Writes the value at `row` of `array` as JSON.
fn write_value(out: &mut Vec<u8>, array: &dyn Array, row: usize, ty: &DuckType) {
    let data_type = array.data_type();
    if matches!(data_type, DataType::Null)
        || (!matches!(data_type, DataType::Union(..)) && array.is_null(row))
    {
        out.extend_from_slice(b"null");
        return;
    }
    match data_type {
        DataType::Boolean => out.extend_from_slice(if array.as_boolean().value(row) {
            b"true"
        } else {
            b"false"
        }),
        DataType::Int8 => write_int(out, array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => write_int(out, array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write_int(out, array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write_int(out, array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => write_int(out, array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => write_int(out, array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => write_int(out, array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => write_int(out, array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => write_float(
            out,
            array.as_primitive::<Float32Type>().value(row) as f64,
            true,
        ),
        DataType::Float64 => {
            write_float(out, array.as_primitive::<Float64Type>().value(row), false)
        }
        DataType::Decimal32(_, scale) => write_decimal(
            out,
            array.as_primitive::<Decimal32Type>().value(row) as i128,
            *scale,
            ty,
        ),
        DataType::Decimal64(_, scale) => write_decimal(
            out,
            array.as_primitive::<Decimal64Type>().value(row) as i128,
            *scale,
            ty,
        ),
        DataType::Decimal128(_, scale) => write_decimal(
            out,
            array.as_primitive::<Decimal128Type>().value(row),
            *scale,
            ty,
        ),
        DataType::Decimal256(_, scale) => {
            let digits = array
                .as_primitive::<Decimal256Type>()
                .value(row)
                .to_string();
            write_decimal_digits(out, &digits, *scale, ty)
        }
        DataType::Utf8 => write_str(out, array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => write_str(out, array.as_string::<i64>().value(row)),
        DataType::Utf8View => write_str(out, array.as_string_view().value(row)),
        DataType::Binary => write_bytes(out, array.as_binary::<i32>().value(row), ty),
        DataType::LargeBinary => write_bytes(out, array.as_binary::<i64>().value(row), ty),
        DataType::BinaryView => write_bytes(out, array.as_binary_view().value(row), ty),
        DataType::FixedSizeBinary(_) => {
            write_bytes(out, array.as_fixed_size_binary().value(row), ty)
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            write_date(out, days as i64)
        }
        DataType::Date64 => {
            let ms = array.as_primitive::<Date64Type>().value(row);
            write_date(out, ms.div_euclid(86_400_000))
        }
        DataType::Time32(TimeUnit::Second) => write_time(
            out,
            temporal_conversions::time32s_to_time(
                array.as_primitive::<Time32SecondType>().value(row),
            ),
        ),
        DataType::Time32(_) => write_time(
            out,
            temporal_conversions::time32ms_to_time(
                array.as_primitive::<Time32MillisecondType>().value(row),
            ),
        ),
        DataType::Time64(TimeUnit::Nanosecond) => write_time(
            out,
            temporal_conversions::time64ns_to_time(
                array.as_primitive::<Time64NanosecondType>().value(row),
            ),
        ),
        DataType::Time64(_) => write_time(
            out,
            temporal_conversions::time64us_to_time(
                array.as_primitive::<Time64MicrosecondType>().value(row),
            ),
        ),
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            let per_second: i64 = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            write_timestamp(out, v, per_second, tz.is_some())
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            write_interval(out, v.months, v.days, v.nanoseconds)
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            write_interval(out, 0, v.days, v.milliseconds as i64 * 1_000_000)
        }
        DataType::Interval(IntervalUnit::YearMonth) => write_interval(
            out,
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            write_list(out, list.value(row).as_ref(), ty)
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            write_list(out, list.value(row).as_ref(), ty)
        }
        DataType::FixedSizeList(_, _) => {
            write_list(out, array.as_fixed_size_list().value(row).as_ref(), ty)
        }
        DataType::Struct(_) => {
            let fields = array.as_struct();
            out.push(b'{');
            for (i, column) in fields.columns().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(
                    out,
                    &ty.children
                        .get(i)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_else(|| fields.column_names()[i].to_string()),
                );
                out.push(b':');
                write_value(out, column.as_ref(), row, child_type(ty, i));
            }
            out.push(b'}');
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            out.push(b'{');
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(b',');
                }
                let mut key = Vec::new();
                write_value(&mut key, keys.as_ref(), i, child_type(ty, 0));
                match serde_json::from_slice::<serde_json::Value>(&key) {
                    Ok(serde_json::Value::String(_)) => out.extend_from_slice(&key),
                    _ => write_str(out, &String::from_utf8_lossy(&key)),
                }
                out.push(b':');
                write_value(out, values.as_ref(), i, child_type(ty, 1));
            }
            out.push(b'}');
        }
        DataType::Dictionary(key_type, _) => {
            let dict = array.as_any_dictionary();
            let key = match key_type.as_ref() {
                DataType::UInt8 => array.as_dictionary::<UInt8Type>().key(row),
                DataType::UInt16 => array.as_dictionary::<UInt16Type>().key(row),
                DataType::UInt32 => array.as_dictionary::<UInt32Type>().key(row),
                DataType::UInt64 => array.as_dictionary::<UInt64Type>().key(row),
                DataType::Int8 => array.as_dictionary::<Int8Type>().key(row),
                DataType::Int16 => array.as_dictionary::<Int16Type>().key(row),
                DataType::Int32 => array.as_dictionary::<Int32Type>().key(row),
                DataType::Int64 => array.as_dictionary::<Int64Type>().key(row),
                _ => None,
            };
            match key {
                Some(key) => write_value(out, dict.values().as_ref(), key, ty),
                None => out.extend_from_slice(b"null"),
            }
        }
        DataType::Union(fields, _) => {
            let union = array.as_union();
            let type_id = union.type_id(row);
            let member = fields.iter().position(|(id, _)| id == type_id).unwrap_or(0);
            let child = union.child(type_id);
            write_value(
                out,
                child.as_ref(),
                union.value_offset(row),
                child_type(ty, member),
            );
        }
        _ => write_fallback(out, array, row),
    }
}

/// One column of a batch, downcast once, so each of its values is written
/// without dispatching on its type again: the fast path of [`write_value`]
/// for the common flat types (the same text, shown by the tests below), the
/// general path for everything else.
pub enum ColumnWriter<'a> {
    Boolean(&'a BooleanArray),
    Int8(&'a PrimitiveArray<Int8Type>),
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    UInt8(&'a PrimitiveArray<UInt8Type>),
    UInt16(&'a PrimitiveArray<UInt16Type>),
    UInt32(&'a PrimitiveArray<UInt32Type>),
    UInt64(&'a PrimitiveArray<UInt64Type>),
    Float64(&'a PrimitiveArray<Float64Type>),
    /// DECIMAL columns with a positive scale, as quoted exact text.
    Decimal64(&'a PrimitiveArray<Decimal64Type>, u32),
    Decimal128(&'a PrimitiveArray<Decimal128Type>, u32),
    Utf8(&'a StringArray),
    Utf8View(&'a StringViewArray),
    Date32(&'a PrimitiveArray<Date32Type>),
    /// Microsecond timestamps; `true` with a time zone (written in UTC).
    TimestampMicros(&'a PrimitiveArray<TimestampMicrosecondType>, bool),
    Other(&'a dyn Array, &'a DuckType),
}

impl<'a> ColumnWriter<'a> {
    pub fn new(array: &'a dyn Array, ty: &'a DuckType) -> Self {
        match array.data_type() {
            DataType::Boolean => Self::Boolean(array.as_boolean()),
            DataType::Int8 => Self::Int8(array.as_primitive()),
            DataType::Int16 => Self::Int16(array.as_primitive()),
            DataType::Int32 => Self::Int32(array.as_primitive()),
            DataType::Int64 => Self::Int64(array.as_primitive()),
            DataType::UInt8 => Self::UInt8(array.as_primitive()),
            DataType::UInt16 => Self::UInt16(array.as_primitive()),
            DataType::UInt32 => Self::UInt32(array.as_primitive()),
            DataType::UInt64 => Self::UInt64(array.as_primitive()),
            DataType::Float64 => Self::Float64(array.as_primitive()),
            DataType::Decimal64(_, scale) if *scale > 0 && ty.id == LogicalTypeId::Decimal => {
                Self::Decimal64(array.as_primitive(), *scale as u32)
            }
            DataType::Decimal128(_, scale) if *scale > 0 && ty.id == LogicalTypeId::Decimal => {
                Self::Decimal128(array.as_primitive(), *scale as u32)
            }
            DataType::Utf8 => Self::Utf8(array.as_string()),
            DataType::Utf8View => Self::Utf8View(array.as_string_view()),
            DataType::Date32 => Self::Date32(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Self::TimestampMicros(array.as_primitive(), tz.is_some())
            }
            _ => Self::Other(array, ty),
        }
    }

    /// Writes the value at `row` as JSON.
    pub fn write(&self, out: &mut Vec<u8>, row: usize) {
        macro_rules! int {
            ($a:expr) => {
                if $a.is_null(row) {
                    out.extend_from_slice(b"null")
                } else {
                    write_int(out, $a.value(row))
                }
            };
        }
        match self {
            Self::Int8(a) => int!(a),
            Self::Int16(a) => int!(a),
            Self::Int32(a) => int!(a),
            Self::Int64(a) => int!(a),
            Self::UInt8(a) => int!(a),
            Self::UInt16(a) => int!(a),
            Self::UInt32(a) => int!(a),
            Self::UInt64(a) => int!(a),
            Self::Other(array, ty) => write_value(out, *array, row, ty),
            _ if self.array().is_null(row) => out.extend_from_slice(b"null"),
            Self::Boolean(a) => {
                out.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
            }
            Self::Float64(a) => write_float(out, a.value(row), false),
            Self::Decimal64(a, scale) => write_scaled(out, a.value(row) as i128, *scale),
            Self::Decimal128(a, scale) => write_scaled(out, a.value(row), *scale),
            Self::Utf8(a) => write_str(out, a.value(row)),
            Self::Utf8View(a) => write_str(out, a.value(row)),
            Self::Date32(a) => {
                let days = a.value(row);
                match temporal_conversions::date32_to_datetime(days) {
                    Some(d) if (1..=9999).contains(&d.year()) => {
                        out.push(b'"');
                        write_ymd(out, d.date());
                        out.push(b'"');
                    }
                    // Outside four-digit years (and infinities): the general path.
                    _ => write_value(out, self.array(), row, &UNKNOWN),
                }
            }
            Self::TimestampMicros(a, utc) => {
                let micros = a.value(row);
                match temporal_conversions::timestamp_us_to_datetime(micros) {
                    Some(t) if (1..=9999).contains(&t.year()) => {
                        out.push(b'"');
                        write_ymd(out, t.date());
                        out.push(b'T');
                        write_hms(out, t.time());
                        if *utc {
                            out.push(b'Z');
                        }
                        out.push(b'"');
                    }
                    _ => write_value(out, self.array(), row, &UNKNOWN),
                }
            }
        }
    }

    fn array(&self) -> &dyn Array {
        match self {
            Self::Boolean(a) => *a,
            Self::Int8(a) => *a,
            Self::Int16(a) => *a,
            Self::Int32(a) => *a,
            Self::Int64(a) => *a,
            Self::UInt8(a) => *a,
            Self::UInt16(a) => *a,
            Self::UInt32(a) => *a,
            Self::UInt64(a) => *a,
            Self::Float64(a) => *a,
            Self::Decimal64(a, _) => *a,
            Self::Decimal128(a, _) => *a,
            Self::Utf8(a) => *a,
            Self::Utf8View(a) => *a,
            Self::Date32(a) => *a,
            Self::TimestampMicros(a, _) => *a,
            Self::Other(a, _) => *a,
        }
    }
}

/// `v` at `scale` (> 0) as quoted exact text: `-1234` at 2 is `"-12.34"`.
fn write_scaled(out: &mut Vec<u8>, v: i128, scale: u32) {
    let Some(unit) = 10u128.checked_pow(scale) else {
        return write_decimal_digits(out, &v.to_string(), scale as i8, &DECIMAL);
    };
    let abs = v.unsigned_abs();
    out.push(b'"');
    if v < 0 {
        out.push(b'-');
    }
    let mut digits = itoa::Buffer::new();
    // 64-bit division where the value allows: several times faster.
    let frac = match (u64::try_from(abs), u64::try_from(unit)) {
        (Ok(abs), Ok(unit)) => {
            write_int(out, abs / unit);
            digits.format(abs % unit)
        }
        _ => {
            write_int(out, abs / unit);
            digits.format(abs % unit)
        }
    }
    .as_bytes();
    out.push(b'.');
    out.extend(std::iter::repeat_n(b'0', scale as usize - frac.len()));
    out.extend_from_slice(frac);
    out.push(b'"');
}

static DECIMAL: DuckType = DuckType {
    id: LogicalTypeId::Decimal,
    name: String::new(),
    children: Vec::new(),
};

fn write_digits(out: &mut Vec<u8>, v: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(v).as_bytes();
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(text.len())));
    out.extend_from_slice(text);
}

/// `YYYY-MM-DD` of a date in years 1 to 9999 (chrono's `%Y-%m-%d`).
fn write_ymd(out: &mut Vec<u8>, d: NaiveDate) {
    write_digits(out, d.year() as u32, 4);
    out.push(b'-');
    write_digits(out, d.month(), 2);
    out.push(b'-');
    write_digits(out, d.day(), 2);
}

/// `HH:MM:SS` and the fraction in 0, 3, 6 or 9 digits (chrono's `%H:%M:%S%.f`).
fn write_hms(out: &mut Vec<u8>, t: NaiveTime) {
    write_digits(out, t.hour(), 2);
    out.push(b':');
    write_digits(out, t.minute(), 2);
    out.push(b':');
    write_digits(out, t.second(), 2);
    let nanos = t.nanosecond();
    if nanos == 0 {
        return;
    }
    out.push(b'.');
    if nanos % 1_000_000 == 0 {
        write_digits(out, nanos / 1_000_000, 3);
    } else if nanos % 1_000 == 0 {
        write_digits(out, nanos / 1_000, 6);
    } else {
        write_digits(out, nanos, 9);
    }
}

static UNKNOWN: DuckType = DuckType {
    id: LogicalTypeId::Invalid,
    name: String::new(),
    children: Vec::new(),
};

fn child_type(ty: &DuckType, i: usize) -> &DuckType {
    ty.child(i).unwrap_or(&UNKNOWN)
}

fn write_list(out: &mut Vec<u8>, values: &dyn Array, ty: &DuckType) {
    let element = child_type(ty, 0);
    out.push(b'[');
    for i in 0..values.len() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, values, i, element);
    }
    out.push(b']');
}

fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn write_float(out: &mut Vec<u8>, v: f64, single: bool) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else if single {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v as f32).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Most text needs no escaping: copy it as it is.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write_decimal(out: &mut Vec<u8>, v: i128, scale: i8, ty: &DuckType) {
    if ty.id == LogicalTypeId::UHugeint {
        // Arrow carries a UHUGEINT as a DECIMAL(38,0) holding its 128 bits:
        // read them unsigned (2^127 and above would print negative).
        return write_decimal_digits(out, &(v as u128).to_string(), scale, ty);
    }
    write_decimal_digits(out, &v.to_string(), scale, ty)
}

/// HUGEINT and UHUGEINT travel as DECIMAL(38,0) in Arrow: they stay numbers.
fn write_decimal_digits(out: &mut Vec<u8>, digits: &str, scale: i8, ty: &DuckType) {
    if matches!(
        ty.id,
        LogicalTypeId::Hugeint | LogicalTypeId::UHugeint | LogicalTypeId::Bignum
    ) || scale <= 0 && ty.id != LogicalTypeId::Decimal
    {
        out.extend_from_slice(digits.as_bytes());
        if scale < 0 {
            out.extend(std::iter::repeat_n(b'0', (-scale) as usize));
        }
        return;
    }
    out.push(b'"');
    out.extend_from_slice(decimal_text(digits, scale).as_bytes());
    out.push(b'"');
}

/// `"-1234"` at scale 2 is `"-12.34"`; at scale 5, `"-0.01234"`.
fn decimal_text(digits: &str, scale: i8) -> String {
    let (sign, digits) = digits.strip_prefix('-').map_or(("", digits), |d| ("-", d));
    if scale <= 0 {
        return format!("{sign}{digits}{}", "0".repeat((-scale) as usize));
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8], ty: &DuckType) {
    if ty.id == LogicalTypeId::Uuid && bytes.len() == 16 {
        let uuid = uuid::Uuid::from_slice(bytes).expect("16 bytes are a UUID");
        write!(out, "\"{}\"", uuid.hyphenated()).expect("writing to a Vec cannot fail");
        return;
    }
    // BIT and BIGNUM reach Arrow as DuckDB's own bytes: written as DuckDB
    // writes them (`0101`; every digit of the number).
    if ty.id == LogicalTypeId::Bit {
        if let Some(bits) = bit_text(bytes) {
            write_str(out, &bits);
            return;
        }
    }
    if ty.id == LogicalTypeId::Geometry {
        if let Some(text) = super::wkt::wkt(bytes) {
            write_str(out, &text);
            return;
        }
    }
    if ty.id == LogicalTypeId::Bignum {
        if let Some(digits) = bignum_text(bytes) {
            out.extend_from_slice(digits.as_bytes());
            return;
        }
    }
    out.push(b'"');
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .as_bytes(),
    );
    out.push(b'"');
}

/// DuckDB's BIT: a byte counting the padding bits, then the bits, the
/// first data byte's highest ones being that padding.
fn bit_text(bytes: &[u8]) -> Option<String> {
    let (&padding, data) = bytes.split_first()?;
    let bits = (data.len() * 8).checked_sub(padding as usize)?;
    Some(
        (padding as usize..padding as usize + bits)
            .map(|i| {
                if data[i / 8] & (0x80 >> (i % 8)) != 0 {
                    '1'
                } else {
                    '0'
                }
            })
            .collect(),
    )
}

/// DuckDB's BIGNUM: a 3-byte header (the data's length, its highest bit set
/// for a positive number), then the magnitude big-endian; a negative number
/// has every byte, header included, inverted.
fn bignum_text(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 4 {
        return None;
    }
    let negative = bytes[0] & 0x80 == 0;
    let magnitude: Vec<u8> = bytes[3..]
        .iter()
        .map(|b| if negative { !b } else { *b })
        .collect();
    let digits = num_bigint::BigUint::from_bytes_be(&magnitude).to_string();
    Some(if negative && digits != "0" {
        format!("-{digits}")
    } else {
        digits
    })
}

fn write_infinite(out: &mut Vec<u8>, positive: bool) {
    out.extend_from_slice(if positive {
        b"\"infinity\""
    } else {
        b"\"-infinity\""
    });
}

/// A day (since 1970-01-01) of the proleptic Gregorian calendar as
/// (year, month, day), for any day DuckDB can hold (Howard Hinnant's
/// `civil_from_days`; year 0 is 1 BC).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The date as DuckDB writes it: `YYYY-MM-DD`, years before 1 as
/// `YYYY-MM-DD (BC)`. Returns whether it is BC.
fn write_ymd_text(out: &mut Vec<u8>, days: i64) -> bool {
    let (year, month, day) = civil_from_days(days);
    let bc = year <= 0;
    let shown = if bc { 1 - year } else { year };
    write!(out, "{shown:04}-{month:02}-{day:02}").expect("writing to a Vec cannot fail");
    if bc {
        out.extend_from_slice(b" (BC)");
    }
    bc
}

/// DuckDB's DATE: its ±infinity are ±(2^31 - 1) days.
fn write_date(out: &mut Vec<u8>, days: i64) {
    if days.abs() == i64::from(i32::MAX) {
        return write_infinite(out, days > 0);
    }
    out.push(b'"');
    write_ymd_text(out, days);
    out.push(b'"');
}

fn write_time(out: &mut Vec<u8>, time: Option<NaiveTime>) {
    match time {
        Some(t) => {
            write!(out, "\"{}\"", t.format("%H:%M:%S%.f")).expect("writing to a Vec cannot fail")
        }
        // 24:00:00 is a valid DuckDB TIME that chrono cannot hold.
        None => out.extend_from_slice(b"\"24:00:00\""),
    }
}

/// A timestamp of `value` units (`per_second` to a second) since the
/// epoch: `YYYY-MM-DDTHH:MM:SS[.f]` (`Z` for TIMESTAMPTZ), a BC date as
/// DuckDB writes it (`YYYY-MM-DD (BC) HH:MM:SS`), ±infinity as strings.
fn write_timestamp(out: &mut Vec<u8>, value: i64, per_second: i64, utc: bool) {
    if value.abs() == i64::MAX {
        return write_infinite(out, value > 0);
    }
    let per_day = per_second * 86_400;
    let days = value.div_euclid(per_day);
    let of_day = value.rem_euclid(per_day);
    let seconds = (of_day / per_second) as u32;
    let nanos = ((of_day % per_second) * (1_000_000_000 / per_second)) as u32;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
        .expect("a time of day is within a day");
    out.push(b'"');
    let bc = write_ymd_text(out, days);
    out.push(if bc { b' ' } else { b'T' });
    write!(out, "{}", time.format("%H:%M:%S%.f")).expect("writing to a Vec cannot fail");
    if utc {
        out.push(b'Z');
    }
    out.push(b'"');
}

/// ISO 8601 duration. DuckDB keeps months, days and sub-day time apart (a
/// month is not 30 days), so each part keeps its own sign.
fn write_interval(out: &mut Vec<u8>, months: i32, days: i32, nanos: i64) {
    let mut s = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (v, unit) in [
        (years as i64, 'Y'),
        (months as i64, 'M'),
        (days as i64, 'D'),
    ] {
        if v != 0 {
            s.push_str(&format!("{v}{unit}"));
        }
    }
    if nanos != 0 {
        s.push('T');
        let sign = if nanos < 0 { "-" } else { "" };
        let abs = nanos.unsigned_abs();
        let (hours, rest) = (abs / 3_600_000_000_000, abs % 3_600_000_000_000);
        let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
        let (seconds, frac) = (rest / 1_000_000_000, rest % 1_000_000_000);
        if hours > 0 {
            s.push_str(&format!("{sign}{hours}H"));
        }
        if minutes > 0 {
            s.push_str(&format!("{sign}{minutes}M"));
        }
        if seconds > 0 || frac > 0 {
            let frac = if frac > 0 {
                format!(".{frac:09}").trim_end_matches('0').to_string()
            } else {
                String::new()
            };
            s.push_str(&format!("{sign}{seconds}{frac}S"));
        }
    }
    if s == "P" {
        s.push_str("T0S");
    }
    write_str(out, &s);
}

/// Anything Arrow can show that we have no exact rule for goes out as its text.
fn write_fallback(out: &mut Vec<u8>, array: &dyn Array, row: usize) {
    let text = ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_default();
    write_str(out, &text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_keeps_scale_and_sign() {
        assert_eq!(decimal_text("-1234", 2), "-12.34");
        assert_eq!(decimal_text("1234", 5), "0.01234");
        assert_eq!(decimal_text("-5", 3), "-0.005");
        assert_eq!(decimal_text("150", 2), "1.50");
        assert_eq!(decimal_text("7", 0), "7");
    }

    #[test]
    fn intervals_are_iso_durations() {
        let text = |m, d, n| {
            let mut out = Vec::new();
            write_interval(&mut out, m, d, n);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            text(
                14,
                3,
                4 * 3_600_000_000_000 + 5 * 60_000_000_000 + 6_500_000_000
            ),
            "\"P1Y2M3DT4H5M6.5S\""
        );
        assert_eq!(text(0, 0, 0), "\"PT0S\"");
        assert_eq!(text(-1, 0, -1_000_000_000), "\"P-1MT-1S\"");
    }

    /// Every value the fast path writes, written by the general path.
    fn same_as_general(array: &dyn Array, ty: &DuckType) {
        let writer = ColumnWriter::new(array, ty);
        assert!(
            !matches!(writer, ColumnWriter::Other(..)),
            "{:?} takes the fast path",
            array.data_type()
        );
        for row in 0..array.len() {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            writer.write(&mut fast, row);
            write_value(&mut general, array, row, ty);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(general).unwrap(),
                "row {row} of {:?}",
                array.data_type()
            );
        }
    }

    fn duck(id: LogicalTypeId) -> DuckType {
        DuckType {
            id,
            name: String::new(),
            children: Vec::new(),
        }
    }

    #[test]
    fn fast_path_writes_what_the_general_path_writes() {
        use duckdb::arrow::array::{
            Date32Array, Decimal128Array, Decimal64Array, Float64Array, Int64Array,
            TimestampMicrosecondArray,
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let ints: Vec<Option<i64>> = (0..2000)
            .map(|i| (i % 7 != 0).then(|| next() as i64 >> (i % 60)))
            .chain([Some(i64::MIN), Some(i64::MAX), Some(0)])
            .collect();
        same_as_general(
            &Int64Array::from(ints.clone()),
            &duck(LogicalTypeId::Bigint),
        );
        for (precision, scale) in [(38u8, 1i8), (38, 3), (38, 18), (38, 37), (21, 1)] {
            let values: Vec<Option<i128>> = ints
                .iter()
                .map(|v| v.map(|v| v as i128 * (next() as i128 % 1_000_000)))
                .chain([Some(0), Some(-5), Some(7), Some(-(10i128.pow(37)) + 1)])
                .collect();
            let array = Decimal128Array::from(values)
                .with_precision_and_scale(precision, scale)
                .unwrap();
            same_as_general(&array, &duck(LogicalTypeId::Decimal));
        }
        let array = Decimal64Array::from(
            ints.iter()
                .map(|v| v.map(|v| v % 10i64.pow(17)))
                .collect::<Vec<_>>(),
        )
        .with_precision_and_scale(18, 4)
        .unwrap();
        same_as_general(&array, &duck(LogicalTypeId::Decimal));
        let floats: Vec<Option<f64>> = ints
            .iter()
            .map(|v| v.map(|v| f64::from_bits(v as u64)))
            .chain([Some(f64::NAN), Some(f64::INFINITY), Some(-0.0), Some(0.1)])
            .collect();
        same_as_general(&Float64Array::from(floats), &duck(LogicalTypeId::Double));
        // Every day from year 1 to 10000, infinities and far years included.
        let days: Vec<Option<i32>> = (-719_162 - 10..2_932_897 + 10)
            .step_by(3)
            .map(Some)
            .chain([None, Some(i32::MAX), Some(-i32::MAX), Some(5_000_000)])
            .collect();
        same_as_general(&Date32Array::from(days), &duck(LogicalTypeId::Date));
        let micros: Vec<Option<i64>> = ints
            .iter()
            .map(|v| v.map(|v| v % 400_000_000_000_000_000))
            .chain([
                Some(0),
                Some(1_000),
                Some(1_500_000),
                Some(1),
                Some(-1),
                Some(i64::MAX),
                Some(-i64::MAX),
            ])
            .collect();
        let array = TimestampMicrosecondArray::from(micros.clone());
        same_as_general(&array, &duck(LogicalTypeId::Timestamp));
        let array = TimestampMicrosecondArray::from(micros).with_timezone("UTC");
        same_as_general(&array, &duck(LogicalTypeId::TimestampTZ));
        let text = duckdb::arrow::array::StringArray::from(vec![
            Some("plain"),
            Some("quote \" and \\ and \n and \u{1}"),
            None,
            Some("ünïcode ✓"),
            Some(""),
        ]);
        same_as_general(&text, &duck(LogicalTypeId::Varchar));
        let flags = duckdb::arrow::array::BooleanArray::from(vec![Some(true), None, Some(false)]);
        same_as_general(&flags, &duck(LogicalTypeId::Boolean));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for text in [
            "",
            "plain",
            "a\"b",
            "back\\slash",
            "tab\t",
            "\u{7f}\u{1f}",
            "é✓",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }

    #[test]
    fn non_finite_floats_are_strings() {
        let mut out = Vec::new();
        write_float(&mut out, f64::NAN, false);
        out.push(b',');
        write_float(&mut out, f64::NEG_INFINITY, false);
        out.push(b',');
        write_float(&mut out, 0.1, true);
        assert_eq!(String::from_utf8(out).unwrap(), "\"NaN\",\"-Infinity\",0.1");
    }

    #[test]
    fn wide_and_bit_types_are_written_as_duckdb_writes_them() {
        let text = |ty: LogicalTypeId, write: &dyn Fn(&mut Vec<u8>, &DuckType)| {
            let mut out = Vec::new();
            write(&mut out, &duck(ty));
            String::from_utf8(out).unwrap()
        };
        let uhuge = |v: u128| {
            text(LogicalTypeId::UHugeint, &|out, ty| {
                write_decimal(out, v as i128, 0, ty)
            })
        };
        assert_eq!(uhuge(u128::MAX), "340282366920938463463374607431768211455");
        assert_eq!(uhuge(1 << 127), "170141183460469231731687303715884105728");
        assert_eq!(uhuge(7), "7");
        // DuckDB's own bytes, read back from `SELECT 'x'::BIT` / `::BIGNUM`.
        let bytes = |ty: LogicalTypeId, hex: &str| {
            let raw: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            text(ty, &|out, t| write_bytes(out, &raw, t))
        };
        assert_eq!(bytes(LogicalTypeId::Bit, "04f5"), "\"0101\"");
        assert_eq!(bytes(LogicalTypeId::Bit, "07ff"), "\"1\"");
        assert_eq!(bytes(LogicalTypeId::Bit, "07ff55"), "\"101010101\"");
        for (hex, number) in [
            ("80000100", "0"),
            ("80000101", "1"),
            ("7ffffefe", "-1"),
            ("800001ff", "255"),
            ("8000020100", "256"),
            ("7ffffdfeff", "-256"),
            (
                "80001508727f6369aaf83ca15026747af8c7f196ce3f0ad2",
                "12345678901234567890123456789012345678901234567890",
            ),
        ] {
            assert_eq!(bytes(LogicalTypeId::Bignum, hex), number, "{hex}");
        }
    }
}
