//! `client ingest FILE --table schema.table`: streams a file from disk to
//! `POST /api/v1/tables/{schema}/{table}/data` (never read whole into
//! memory), with a bar of bytes sent and the rate, then a spinner while the
//! service loads it.

use std::{
    fs::File,
    io::{self, Read},
    path::PathBuf,
};

use clap::Args;
use indicatif::ProgressBar;
use reqwest::{blocking::Body, header::CONTENT_TYPE, Method};
use serde_json::Value;

use super::{
    connection::read_json,
    connection::Api,
    failure::Failure,
    output::{print_json, print_text, show_waiting, Progress},
};
use crate::{engine::ingest::FileFormat, format::encode::Format};

fn parse_file_format(name: &str) -> Result<FileFormat, String> {
    FileFormat::from_name(name).ok_or_else(|| "one of csv, tsv, ndjson, parquet".to_string())
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The file to load.
    pub file: PathBuf,
    /// The table: `schema.table`, or `table` in `main`.
    #[arg(short, long, value_name = "SCHEMA.TABLE")]
    pub table: String,
    /// append (the file's rows), replace (every row by the file's) or create
    /// (the table from the file, types inferred).
    #[arg(long, default_value = "append", value_parser = ["append", "replace", "create"])]
    pub mode: String,
    /// csv, tsv, ndjson or parquet [default: from the file's extension].
    #[arg(long, value_parser = parse_file_format)]
    pub format: Option<FileFormat>,
    /// Print the API's JSON answer instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// `schema.table` split at the first dot; a bare name is in `main`.
pub fn split_table(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or(("main", name))
}

/// The file as it is read for the upload: counts bytes into the bar and
/// turns it into a spinner at the end, while the service loads.
struct Upload {
    file: File,
    bar: ProgressBar,
    table: String,
    done: bool,
}

impl Read for Upload {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !self.done {
            self.done = true;
            show_waiting(&self.bar, format!("loading into {}", self.table));
        }
        self.bar.inc(n as u64);
        Ok(n)
    }
}

pub fn run(api: &Api, args: IngestArgs, progress: &Progress) -> Result<(), Failure> {
    let format = args
        .format
        .or_else(|| {
            let extension = args.file.extension()?.to_str()?;
            FileFormat::from_name(extension)
        })
        .ok_or_else(|| {
            Failure::usage(format!(
                "cannot tell the format of {} from its extension: give --format csv|tsv|ndjson|parquet",
                args.file.display()
            ))
        })?;
    let unreadable =
        |err: io::Error| Failure::usage(format!("cannot read {}: {err}", args.file.display()));
    let file = File::open(&args.file).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    let (schema, table) = split_table(&args.table);
    let bar = progress.bytes(size);
    let upload = Upload {
        file,
        bar: bar.clone(),
        table: format!("{schema}.{table}"),
        done: false,
    };
    let mode = args.mode.as_str();
    // The format by name (`format=`); the Content-Type for whatever is in between.
    let media_type = Format::from_name(format.extension())
        .map_or("application/octet-stream", Format::content_type);
    let request = api
        .request(
            Method::POST,
            &["api", "v1", "tables", schema, table, "data"],
        )
        .query(&[("mode", mode), ("format", format.extension())])
        .header(CONTENT_TYPE, media_type)
        .body(Body::sized(upload, size));
    let outcome = api.send(request).and_then(read_json::<Value>);
    bar.finish_and_clear();
    let result = outcome?;
    if args.json {
        return print_json(&result);
    }
    print_text(&format!(
        "loaded {} rows into {schema}.{table} ({mode}, {} bytes, snapshot {}, {} ms)\n",
        result["rows_loaded"], result["bytes"], result["snapshot"], result["elapsed_ms"]
    ))
}
