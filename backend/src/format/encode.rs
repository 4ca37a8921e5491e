//! The wire formats of a query result, each an [`Encoder`] fed DuckDB's Arrow
//! batches one at a time. Output accumulates in the encoder until the caller
//! [takes](Encoder::take) it, so a result streams batch by batch.
//!
//! JSON, JSON objects and NDJSON use our exact JSON mapping ([`super::json`]).
//! CSV/TSV go through arrow-csv; columns arrow-csv would print differently
//! from the JSON mapping (decimals, temporal types, nested types ...) are
//! first turned into text by that same mapping, so a value reads the same in
//! every text format. Arrow IPC (arrow-ipc) and Parquet (parquet) carry
//! DuckDB's Arrow batches as they are.

use std::{io::Write, sync::Arc};

use duckdb::arrow::{
    array::{Array, ArrayRef, RecordBatch, StringBuilder},
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use duckdb::core::LogicalTypeId;
use serde::Serialize;

use crate::{
    error::Error,
    format::{json, types::DuckType},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"columns": [...], "rows": [[...]], "row_count": n, "truncated": b, "elapsed_ms": t}`
    Json,
    /// Like `Json`, each row an object keyed by column name.
    JsonObjects,
    /// One JSON object per line.
    Ndjson,
    Csv,
    Tsv,
    /// Arrow IPC stream format.
    Arrow,
    Parquet,
}

/// Names accepted in `format`, with their media types, for errors and docs.
pub const FORMATS: &[(&str, Format, &str)] = &[
    ("json", Format::Json, "application/json"),
    ("json_objects", Format::JsonObjects, "application/json"),
    ("ndjson", Format::Ndjson, "application/x-ndjson"),
    ("csv", Format::Csv, "text/csv"),
    ("tsv", Format::Tsv, "text/tab-separated-values"),
    (
        "arrow",
        Format::Arrow,
        "application/vnd.apache.arrow.stream",
    ),
    ("parquet", Format::Parquet, "application/vnd.apache.parquet"),
];

impl Format {
    pub fn from_name(name: &str) -> Result<Self, Error> {
        let name = name.trim().to_ascii_lowercase();
        let alias = match name.as_str() {
            "jsonl" | "json_lines" => "ndjson",
            "objects" => "json_objects",
            "arrow_ipc" | "arrows" | "ipc" => "arrow",
            other => other,
        };
        FORMATS
            .iter()
            .find(|(n, _, _)| *n == alias)
            .map(|(_, f, _)| *f)
            .ok_or_else(|| unsupported(&format!("format `{name}`")))
    }

    /// The first acceptable format of an `Accept` header, in the client's
    /// order of preference; `*/*` and `application/*` mean JSON.
    pub fn from_accept(accept: &str) -> Result<Self, Error> {
        let mut ranges: Vec<(f32, usize, &str)> = accept
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.split(';');
                let media = pieces.next()?.trim();
                let q = pieces
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0 && !media.is_empty()).then_some((q, i, media))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, media) in &ranges {
            let media = media.to_ascii_lowercase();
            let found = match media.as_str() {
                "*/*" | "application/*" | "application/json" => Some(Format::Json),
                "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                    Some(Format::Ndjson)
                }
                "text/csv" | "text/*" => Some(Format::Csv),
                "text/tab-separated-values" => Some(Format::Tsv),
                "application/vnd.apache.arrow.stream" => Some(Format::Arrow),
                "application/vnd.apache.parquet" | "application/x-parquet" => Some(Format::Parquet),
                _ => None,
            };
            if let Some(format) = found {
                return Ok(format);
            }
        }
        if ranges.is_empty() {
            return Ok(Format::Json);
        }
        Err(unsupported(&format!("Accept: {accept}")))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::JsonObjects => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8; header=present",
            Format::Tsv => "text/tab-separated-values; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The name `format` takes for it.
    pub fn name(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(_, f, _)| *f == self)
            .map(|(n, _, _)| *n)
            .expect("every format is in FORMATS")
    }

    /// Whether the body itself carries row count and truncation.
    /// JSON, NDJSON, CSV, TSV: formats whose cells are text.
    pub fn is_text(self) -> bool {
        !matches!(self, Format::Arrow | Format::Parquet)
    }

    pub fn carries_metadata(self) -> bool {
        matches!(self, Format::Json | Format::JsonObjects)
    }

    pub fn encoder(self, head: &ResultHead) -> Result<Box<dyn Encoder + Send>, Error> {
        let buffer = SharedBuf::default();
        Ok(match self {
            Format::Json => Box::new(JsonEncoder::new(head, false)),
            Format::JsonObjects => Box::new(JsonEncoder::new(head, true)),
            Format::Ndjson => Box::new(NdjsonEncoder::new(head)),
            Format::Csv => Box::new(CsvEncoder::new(head, b',', buffer)),
            Format::Tsv => Box::new(CsvEncoder::new(head, b'\t', buffer)),
            Format::Arrow => {
                let writer = arrow_ipc::writer::StreamWriter::try_new(buffer.clone(), &head.schema)
                    .map_err(|e| cannot_carry("Arrow IPC", e))?;
                Box::new(ArrowEncoder {
                    writer: Some(writer),
                    buffer,
                })
            }
            Format::Parquet => {
                // parquet panics on unions (ARROW-8817): refuse them cleanly.
                if let Some(field) = head
                    .schema
                    .fields()
                    .iter()
                    .find(|f| has_union(f.data_type()))
                {
                    return Err(cannot_carry(
                        "Parquet",
                        format!(
                            "column {} holds a UNION, which Parquet has no type for",
                            field.name()
                        ),
                    ));
                }
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP))
                    .build();
                let writer = parquet::arrow::ArrowWriter::try_new(
                    buffer.clone(),
                    Arc::clone(&head.schema),
                    Some(props),
                )
                .map_err(|e| cannot_carry("Parquet", e))?;
                Box::new(ParquetEncoder {
                    writer: Some(writer),
                    buffer,
                })
            }
        })
    }
}

fn has_union(data_type: &DataType) -> bool {
    match data_type {
        DataType::Union(..) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_union(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| has_union(f.data_type())),
        DataType::Dictionary(_, value) => has_union(value),
        _ => false,
    }
}

/// Rows per Parquet row group: the most a Parquet response holds in memory.
const PARQUET_ROW_GROUP: usize = 128 * 1024;

fn unsupported(what: &str) -> Error {
    let names: Vec<&str> = FORMATS.iter().map(|(n, _, _)| *n).collect();
    let media: Vec<&str> = FORMATS.iter().map(|(_, _, m)| *m).collect();
    Error::UnsupportedFormat(format!(
        "unsupported {what}; supported formats: {} (media types: {})",
        names.join(", "),
        media.join(", ")
    ))
}

fn cannot_carry(format: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidParameters(format!("{format} cannot carry this result: {e}"))
}

/// What every encoder needs to know before the first batch.
pub struct ResultHead {
    pub columns: Vec<crate::format::types::Column>,
    pub types: Vec<DuckType>,
    pub schema: SchemaRef,
}

/// How the result ended, for formats that say so in the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub row_count: u64,
    pub truncated: bool,
    pub elapsed_ms: f64,
}

pub trait Encoder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error>;
    fn finish(&mut self, summary: &Summary) -> Result<(), Error>;
    /// The bytes encoded since the last call.
    fn take(&mut self) -> Vec<u8>;
    /// How many bytes are waiting to be taken.
    fn pending(&self) -> usize;
}

/// Batches handed to a [`Pipelined`] encoder and not yet encoded, at most.
const PIPELINE_DEPTH: usize = 2;

/// An encoder running on a thread of its own, so encoding one batch overlaps
/// DuckDB producing the next: a long result takes about the longer of the
/// two rather than their sum. Output waits in a shared buffer until taken;
/// an encoding error comes back from the next call. Dropping it closes the
/// channel, which ends the worker after the batch in hand.
pub struct Pipelined {
    batches: Option<std::sync::mpsc::SyncSender<RecordBatch>>,
    out: Arc<parking_lot::Mutex<Encoded>>,
    worker: Option<std::thread::JoinHandle<Box<dyn Encoder + Send>>>,
    /// An error came back: every later call fails too.
    failed: bool,
}

#[derive(Default)]
struct Encoded {
    bytes: Vec<u8>,
    error: Option<Error>,
}

impl Pipelined {
    /// Moves `encoder` (with whatever it holds untaken) to its own thread.
    pub fn start(mut encoder: Box<dyn Encoder + Send>) -> Result<Self, Error> {
        let out = Arc::new(parking_lot::Mutex::new(Encoded {
            bytes: encoder.take(),
            error: None,
        }));
        let (batches, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(PIPELINE_DEPTH);
        let shared = Arc::clone(&out);
        let worker = std::thread::Builder::new()
            .name("encode".into())
            .spawn(move || {
                for batch in rx {
                    let result = encoder.batch(&batch);
                    let bytes = encoder.take();
                    let mut out = shared.lock();
                    if out.bytes.is_empty() {
                        out.bytes = bytes;
                    } else {
                        out.bytes.extend_from_slice(&bytes);
                    }
                    if let Err(err) = result {
                        out.error = Some(err);
                        break;
                    }
                }
                encoder
            })
            .map_err(Error::internal)?;
        Ok(Self {
            batches: Some(batches),
            out,
            worker: Some(worker),
            failed: false,
        })
    }

    fn error(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::internal(anyhow::anyhow!(
                "the encoder stopped after an error"
            )));
        }
        match self.out.lock().error.take() {
            Some(err) => {
                self.failed = true;
                self.batches = None;
                Err(err)
            }
            None => Ok(()),
        }
    }

    /// Waits for every batch handed over to be encoded; the inner encoder.
    fn join(&mut self) -> Result<Box<dyn Encoder + Send>, Error> {
        self.error()?;
        self.batches = None;
        let Some(worker) = self.worker.take() else {
            return Err(Error::internal(anyhow::anyhow!(
                "the encoding thread already ended"
            )));
        };
        let encoder = worker
            .join()
            .map_err(|_| Error::internal(anyhow::anyhow!("the encoding thread panicked")))?;
        self.error()?;
        Ok(encoder)
    }
}

impl Encoder for Pipelined {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.error()?;
        let sent = self
            .batches
            .as_ref()
            .is_some_and(|batches| batches.send(batch.clone()).is_ok());
        if sent {
            Ok(())
        } else {
            // The worker stopped: on an error, which join reports.
            self.join().map(|_| ())
        }
    }
    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        let mut encoder = self.join()?;
        encoder.finish(summary)?;
        let rest = encoder.take();
        self.out.lock().bytes.extend_from_slice(&rest);
        Ok(())
    }
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out.lock().bytes)
    }
    fn pending(&self) -> usize {
        self.out.lock().bytes.len()
    }
}

/// A `Write` the arrow writers own while we drain what they wrote (the
/// Parquet writer wants it `Send`; the lock is never contended).
#[derive(Clone, Default)]
struct SharedBuf(Arc<parking_lot::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock())
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

struct JsonEncoder {
    out: Vec<u8>,
    types: Vec<DuckType>,
    /// `"name":` of each column, pre-encoded, for rows as objects.
    keys: Option<Vec<Vec<u8>>>,
    first: bool,
}

impl JsonEncoder {
    fn new(head: &ResultHead, objects: bool) -> Self {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(b"{\"columns\":");
        serde_json::to_writer(&mut out, &head.columns).expect("columns serialise");
        out.extend_from_slice(b",\"rows\":[");
        Self {
            out,
            types: head.types.clone(),
            keys: objects.then(|| object_keys(head)),
            first: true,
        }
    }
}

fn object_keys(head: &ResultHead) -> Vec<Vec<u8>> {
    head.columns
        .iter()
        .map(|c| {
            let mut key = Vec::new();
            json::write_str(&mut key, &c.name);
            key.push(b':');
            key
        })
        .collect()
}

fn write_row(
    out: &mut Vec<u8>,
    columns: &[json::ColumnWriter],
    row: usize,
    keys: Option<&[Vec<u8>]>,
) {
    out.push(if keys.is_some() { b'{' } else { b'[' });
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(keys) = keys {
            out.extend_from_slice(&keys[i]);
        }
        column.write(out, row);
    }
    out.push(if keys.is_some() { b'}' } else { b']' });
}

fn column_writers<'a>(
    batch: &'a RecordBatch,
    types: &'a [DuckType],
) -> Vec<json::ColumnWriter<'a>> {
    batch
        .columns()
        .iter()
        .zip(types)
        .map(|(column, ty)| json::ColumnWriter::new(column.as_ref(), ty))
        .collect()
}

impl Encoder for JsonEncoder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let columns = column_writers(batch, &self.types);
        for row in 0..batch.num_rows() {
            if !self.first {
                self.out.push(b',');
            }
            self.first = false;
            write_row(&mut self.out, &columns, row, self.keys.as_deref());
        }
        Ok(())
    }
    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        write!(
            self.out,
            "],\"row_count\":{},\"truncated\":{},\"elapsed_ms\":{:.3}}}",
            summary.row_count, summary.truncated, summary.elapsed_ms
        )
        .map_err(Error::internal)
    }
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
    fn pending(&self) -> usize {
        self.out.len()
    }
}

struct NdjsonEncoder {
    out: Vec<u8>,
    types: Vec<DuckType>,
    keys: Vec<Vec<u8>>,
}

impl NdjsonEncoder {
    fn new(head: &ResultHead) -> Self {
        Self {
            out: Vec::with_capacity(64 * 1024),
            types: head.types.clone(),
            keys: object_keys(head),
        }
    }
}

impl Encoder for NdjsonEncoder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let columns = column_writers(batch, &self.types);
        for row in 0..batch.num_rows() {
            write_row(&mut self.out, &columns, row, Some(&self.keys));
            self.out.push(b'\n');
        }
        Ok(())
    }
    fn finish(&mut self, _: &Summary) -> Result<(), Error> {
        Ok(())
    }
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
    fn pending(&self) -> usize {
        self.out.len()
    }
}

struct CsvEncoder {
    writer: arrow_csv::Writer<SharedBuf>,
    buffer: SharedBuf,
    types: Vec<DuckType>,
    /// Columns written as text by the JSON mapping.
    as_text: Vec<bool>,
    schema: SchemaRef,
}

impl CsvEncoder {
    fn new(head: &ResultHead, delimiter: u8, buffer: SharedBuf) -> Self {
        let as_text: Vec<bool> = head
            .types
            .iter()
            .zip(head.schema.fields())
            .map(|(ty, field)| !csv_native(ty, field.data_type()))
            .collect();
        let schema = Arc::new(Schema::new(
            head.schema
                .fields()
                .iter()
                .zip(&as_text)
                .map(|(f, text)| {
                    if *text {
                        Field::new(f.name(), DataType::Utf8, true)
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let writer = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .with_delimiter(delimiter)
            .build(buffer.clone());
        Self {
            writer,
            buffer,
            types: head.types.clone(),
            as_text,
            schema,
        }
    }
}

/// Types arrow-csv prints exactly as the JSON mapping does.
fn csv_native(ty: &DuckType, arrow: &DataType) -> bool {
    use LogicalTypeId as T;
    matches!(
        ty.id,
        T::Boolean
            | T::Tinyint
            | T::Smallint
            | T::Integer
            | T::Bigint
            | T::UTinyint
            | T::USmallint
            | T::UInteger
            | T::UBigint
            | T::Varchar
    ) && matches!(
        arrow,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
    )
}

/// A column as text by the JSON mapping: strings unquoted, the rest as JSON.
fn text_column(array: &dyn Array, ty: &DuckType) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(array.len(), array.len() * 8);
    let mut scratch = Vec::with_capacity(64);
    let writer = json::ColumnWriter::new(array, ty);
    for row in 0..array.len() {
        if array.is_null(row) && !matches!(array.data_type(), DataType::Union(..)) {
            builder.append_null();
            continue;
        }
        scratch.clear();
        writer.write(&mut scratch, row);
        if scratch == b"null" {
            // A union whose member is NULL: an empty cell, as any NULL.
            builder.append_null();
        } else if scratch.first() == Some(&b'"') {
            let inner = &scratch[1..scratch.len() - 1];
            if inner.contains(&b'\\') {
                let text: String = serde_json::from_slice(&scratch).unwrap_or_default();
                builder.append_value(text);
            } else {
                // No escapes: the text between the quotes is the value.
                builder.append_value(String::from_utf8_lossy(inner));
            }
        } else {
            builder.append_value(String::from_utf8_lossy(&scratch));
        }
    }
    Arc::new(builder.finish())
}

impl Encoder for CsvEncoder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let batch = if self.as_text.iter().any(|t| *t) {
            let columns: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if self.as_text[i] {
                        text_column(c.as_ref(), &self.types[i])
                    } else {
                        Arc::clone(c)
                    }
                })
                .collect();
            RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(Error::internal)?
        } else {
            batch.clone()
        };
        self.writer
            .write(&batch)
            .map_err(|e| cannot_carry("CSV", e))
    }
    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        if summary.row_count == 0 {
            // arrow-csv writes the header with the first batch.
            let empty = RecordBatch::new_empty(Arc::clone(&self.schema));
            self.writer
                .write(&empty)
                .map_err(|e| cannot_carry("CSV", e))?;
        }
        Ok(())
    }
    fn take(&mut self) -> Vec<u8> {
        self.buffer.take()
    }
    fn pending(&self) -> usize {
        self.buffer.len()
    }
}

struct ArrowEncoder {
    writer: Option<arrow_ipc::writer::StreamWriter<SharedBuf>>,
    buffer: SharedBuf,
}

impl Encoder for ArrowEncoder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let writer = self.writer.as_mut().expect("not finished");
        writer
            .write(batch)
            .map_err(|e| cannot_carry("Arrow IPC", e))
    }
    fn finish(&mut self, _: &Summary) -> Result<(), Error> {
        if let Some(mut writer) = self.writer.take() {
            writer.finish().map_err(|e| cannot_carry("Arrow IPC", e))?;
        }
        Ok(())
    }
    fn take(&mut self) -> Vec<u8> {
        self.buffer.take()
    }
    fn pending(&self) -> usize {
        self.buffer.len()
    }
}

struct ParquetEncoder {
    writer: Option<parquet::arrow::ArrowWriter<SharedBuf>>,
    buffer: SharedBuf,
}

impl Encoder for ParquetEncoder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let writer = self.writer.as_mut().expect("not finished");
        writer.write(batch).map_err(|e| cannot_carry("Parquet", e))
    }
    fn finish(&mut self, _: &Summary) -> Result<(), Error> {
        if let Some(writer) = self.writer.take() {
            writer.close().map_err(|e| cannot_carry("Parquet", e))?;
        }
        Ok(())
    }
    fn take(&mut self) -> Vec<u8> {
        self.buffer.take()
    }
    fn pending(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> ResultHead {
        let ty = |id, name: &str| DuckType {
            id,
            name: name.into(),
            children: Vec::new(),
        };
        let column = |name: &str, type_name: &str| crate::format::types::Column {
            name: name.into(),
            type_name: type_name.into(),
        };
        ResultHead {
            columns: vec![column("n", "BIGINT"), column("label", "VARCHAR")],
            types: vec![
                ty(LogicalTypeId::Bigint, "BIGINT"),
                ty(LogicalTypeId::Varchar, "VARCHAR"),
            ],
            schema: Arc::new(Schema::new(vec![
                Field::new("n", DataType::Int64, true),
                Field::new("label", DataType::Utf8, true),
            ])),
        }
    }

    fn batches(head: &ResultHead) -> Vec<RecordBatch> {
        use duckdb::arrow::array::{Int64Array, StringArray};
        (0..20)
            .map(|b| {
                let n: Vec<i64> = (b * 1000..(b + 1) * 1000).collect();
                let labels: Vec<String> = n.iter().map(|n| format!("row \"{n}\"")).collect();
                RecordBatch::try_new(
                    Arc::clone(&head.schema),
                    vec![
                        Arc::new(Int64Array::from(n)),
                        Arc::new(StringArray::from(labels)),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    /// Feeds every batch, taking output along the way as the stream does.
    fn encode(
        mut encoder: Box<dyn Encoder + Send>,
        batches: &[RecordBatch],
        pipelined_after: Option<usize>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            if pipelined_after == Some(i) {
                encoder = Box::new(Pipelined::start(encoder).unwrap());
            }
            encoder.batch(batch).unwrap();
            if i % 3 == 0 {
                out.extend(encoder.take());
            }
        }
        let summary = Summary {
            row_count: 20_000,
            ..Summary::default()
        };
        encoder.finish(&summary).unwrap();
        out.extend(encoder.take());
        out
    }

    #[test]
    fn pipelined_encoding_writes_the_same_bytes() {
        let head = head();
        let batches = batches(&head);
        for (name, format, _) in FORMATS {
            let inline = encode(format.encoder(&head).unwrap(), &batches, None);
            for after in [0, 1, 7] {
                let pipelined = encode(format.encoder(&head).unwrap(), &batches, Some(after));
                assert!(
                    inline == pipelined,
                    "{name}: pipelined after {after} differs"
                );
            }
            assert!(inline.len() > 100_000, "{name}");
        }
    }

    /// Fails on its third batch.
    struct Failing(usize);

    impl Encoder for Failing {
        fn batch(&mut self, _: &RecordBatch) -> Result<(), Error> {
            self.0 += 1;
            if self.0 == 3 {
                return Err(Error::InvalidParameters("third batch".into()));
            }
            Ok(())
        }
        fn finish(&mut self, _: &Summary) -> Result<(), Error> {
            Ok(())
        }
        fn take(&mut self) -> Vec<u8> {
            Vec::new()
        }
        fn pending(&self) -> usize {
            0
        }
    }

    #[test]
    fn a_pipelined_encoding_error_comes_back() {
        let head = head();
        let batches = batches(&head);
        let mut encoder = Pipelined::start(Box::new(Failing(0))).unwrap();
        let mut error = None;
        for batch in &batches {
            if let Err(err) = encoder.batch(batch) {
                error = Some(err);
                break;
            }
        }
        let error = match error {
            Some(err) => err,
            None => encoder.finish(&Summary::default()).unwrap_err(),
        };
        assert_eq!(error.to_string(), "third batch");
        // Once stopped, it stays stopped.
        assert!(encoder.batch(&batches[0]).is_err());
    }

    #[test]
    fn names_and_accept_headers_choose_formats() {
        assert_eq!(Format::from_name("CSV").unwrap(), Format::Csv);
        assert_eq!(Format::from_name("jsonl").unwrap(), Format::Ndjson);
        let err = Format::from_name("xml").unwrap_err();
        assert_eq!(err.code(), "unsupported_format");
        assert!(err
            .to_string()
            .contains("json, json_objects, ndjson, csv, tsv, arrow, parquet"));
        assert_eq!(Format::from_accept("").unwrap(), Format::Json);
        assert_eq!(Format::from_accept("*/*").unwrap(), Format::Json);
        assert_eq!(
            Format::from_accept("text/html;q=0.9, application/vnd.apache.arrow.stream").unwrap(),
            Format::Arrow
        );
        assert_eq!(
            Format::from_accept("text/csv;q=0.5, application/x-ndjson;q=0.8").unwrap(),
            Format::Ndjson
        );
        assert_eq!(
            Format::from_accept("image/png").unwrap_err().code(),
            "unsupported_format"
        );
    }
}
