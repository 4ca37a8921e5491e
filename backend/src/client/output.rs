//! Where results go and how they look: a table on a terminal, else the
//! API's own bytes streamed to stdout or a file; progress bars on stderr
//! only when it is a terminal.

use std::{
    fs::File,
    io::{self, BufWriter, IsTerminal, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::Response;
use serde_json::Value;

use super::{connection::read_json, failure::Failure};
use crate::format::encode::{Format, FORMATS};

/// A result's format: a table rendered here from the API's JSON, or one of
/// the API's formats, passed through byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    Table,
    Api(Format),
}

impl ResultFormat {
    /// `table`, or any name the API accepts in `format`.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.trim().eq_ignore_ascii_case("table") {
            return Ok(Self::Table);
        }
        Format::from_name(name)
            .map(Self::Api)
            .map_err(|err| err.to_string())
    }

    /// The format to ask the API for.
    pub fn api_name(self) -> &'static str {
        let format = match self {
            Self::Table => Format::Json,
            Self::Api(format) => format,
        };
        FORMATS
            .iter()
            .find(|(_, f, _)| *f == format)
            .map_or("json", |(name, _, _)| name)
    }

    fn is_binary(self) -> bool {
        matches!(self, Self::Api(Format::Arrow | Format::Parquet))
    }

    fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "txt" => Some(Self::Table),
            ext => Format::from_name(ext).ok().map(Self::Api),
        }
    }
}

/// `--format` and `--output` of the commands that print a result.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// table (default when stdout is a terminal), json, json_objects, ndjson,
    /// csv (default otherwise), tsv, arrow, parquet.
    #[arg(long, value_parser = ResultFormat::parse)]
    pub format: Option<ResultFormat>,
    /// Write the result to FILE, not stdout (format from its extension unless --format).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl OutputArgs {
    /// The format to write; binary formats never go to a terminal.
    pub fn resolve(&self) -> Result<ResultFormat, Failure> {
        let to_terminal = self.output.is_none() && io::stdout().is_terminal();
        let format = self
            .format
            .or_else(|| {
                self.output
                    .as_deref()
                    .and_then(ResultFormat::from_extension)
            })
            .unwrap_or(if to_terminal {
                ResultFormat::Table
            } else {
                ResultFormat::Api(Format::Csv)
            });
        if format.is_binary() && to_terminal {
            return Err(Failure::usage(format!(
                "{} is binary: write it to a file with --output FILE or redirect stdout",
                format.api_name()
            )));
        }
        Ok(format)
    }

    /// Writes a result response in `format`: a table rendered from its JSON,
    /// or the body as it streams in.
    pub fn write_result(&self, format: ResultFormat, response: Response) -> Result<(), Failure> {
        let truncated = response
            .headers()
            .get("x-result-truncated")
            .is_some_and(|v| v == "true");
        let mut sink = Sink::open(self.output.as_deref())?;
        let written = if format == ResultFormat::Table {
            let body: Value = read_json(response)?;
            let wrap = self.output.is_none() && io::stdout().is_terminal();
            let text = render_result(&body, wrap);
            let rows = body["row_count"].as_u64().unwrap_or(0);
            sink.write(text.as_bytes()).and_then(|()| sink.finish())?;
            eprintln!("{rows} row{}", if rows == 1 { "" } else { "s" });
            body["truncated"].as_bool().unwrap_or(truncated)
        } else {
            sink.copy_from(response)?;
            truncated
        };
        if written {
            eprintln!("warning: the result was truncated at the row limit (max_rows)");
        }
        Ok(())
    }
}

/// stdout or a file; a file left half-written by a failure is removed.
pub struct Sink {
    out: Box<dyn Write>,
    path: Option<PathBuf>,
}

impl Sink {
    pub fn open(path: Option<&Path>) -> Result<Self, Failure> {
        let out: Box<dyn Write> = match path {
            Some(path) => Box::new(BufWriter::new(File::create(path).map_err(|err| {
                Failure::usage(format!("cannot create {}: {err}", path.display()))
            })?)),
            None => Box::new(io::stdout().lock()),
        };
        Ok(Self {
            out,
            path: path.map(Path::to_path_buf),
        })
    }

    fn fail(&self, failure: Failure) -> Failure {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
        failure
    }

    fn write_failure(&self, err: io::Error) -> Result<(), Failure> {
        // A reader that went away (`| head`) is not an error of ours.
        if self.path.is_none() && err.kind() == io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        Err(self.fail(Failure::usage(format!("cannot write the output: {err}"))))
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match self.out.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(err) => self.write_failure(err),
        }
    }

    pub fn finish(&mut self) -> Result<(), Failure> {
        match self.out.flush() {
            Ok(()) => Ok(()),
            Err(err) => self.write_failure(err),
        }
    }

    /// Streams a response body out; one that breaks off is a service failure.
    pub fn copy_from(&mut self, mut response: Response) -> Result<(), Failure> {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = match response.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(self.fail(Failure::Service(format!(
                        "the response broke off after {total} bytes: {err}"
                    ))))
                }
            };
            if let Err(err) = self.out.write_all(&buf[..n]) {
                return self.write_failure(err);
            }
            total += n;
        }
        self.finish()
    }
}

/// A value as a table cell: strings bare, NULL spelled out, the rest as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table; `wrap` fits it to the terminal's width.
pub fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[bool], wrap: bool) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let width = std::env::var("COLUMNS").ok();
    match fit(wrap, table.width(), width.as_deref()) {
        Some(width) => {
            table
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(width);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table.set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    for (i, right) in right.iter().enumerate() {
        if let (true, Some(column)) = (*right, table.column_mut(i)) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!("{table}\n")
}

/// The width to wrap a table to: the terminal's, else `$COLUMNS`; none
/// (no wrapping) when neither is a usable width, such as a terminal that
/// reports a size of 0, where wrapping would squeeze every column to one
/// character.
fn fit(wrap: bool, terminal: Option<u16>, columns: Option<&str>) -> Option<u16> {
    const NARROWEST: u16 = 20;
    if !wrap {
        return None;
    }
    terminal
        .filter(|w| *w >= NARROWEST)
        .or_else(|| columns?.trim().parse().ok().filter(|w| *w >= NARROWEST))
}

/// The query API's JSON result (`columns`, `rows`) as a table, numbers right-aligned.
pub fn render_result(body: &Value, wrap: bool) -> String {
    let columns = body["columns"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let right: Vec<bool> = columns
        .iter()
        .map(|c| is_numeric(c["type"].as_str().unwrap_or("")))
        .collect();
    let rows = body["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| row.as_array().map(|r| r.iter().map(cell).collect()))
                .map(Option::unwrap_or_default)
                .collect()
        })
        .unwrap_or_default();
    table(&names, rows, &right, wrap)
}

fn is_numeric(duckdb_type: &str) -> bool {
    const NUMERIC: [&str; 6] = ["INT", "DECIMAL", "DOUBLE", "FLOAT", "REAL", "NUMERIC"];
    !duckdb_type.contains('[')
        && !duckdb_type.starts_with("STRUCT")
        && !duckdb_type.starts_with("MAP")
        && NUMERIC.iter().any(|n| duckdb_type.contains(n))
        && !duckdb_type.starts_with("INTERVAL")
}

/// Progress bars on stderr, only when it is a terminal and not `--no-progress`;
/// otherwise every bar is hidden and writes nothing at all.
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn new(no_progress: bool) -> Self {
        Self {
            enabled: !no_progress && io::stderr().is_terminal(),
        }
    }

    /// A bar of bytes out of `total`, with the rate.
    pub fn bytes(&self, total: u64) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(
            "{spinner} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        ProgressBar::new(total).with_style(style)
    }

    /// A bar of percent done (DuckDB's estimate), with a message, ticking
    /// by itself while there is no estimate yet.
    pub fn percent(&self, message: String) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("=> ");
        let bar = ProgressBar::new(100)
            .with_style(style)
            .with_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

/// Switches a bytes bar to a spinner once the upload is done and the
/// service is working on it.
pub fn show_waiting(bar: &ProgressBar, message: String) {
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
}

/// Text on stdout; a reader that went away (`| head`) is not an error.
pub fn print_text(text: &str) -> Result<(), Failure> {
    let mut sink = Sink::open(None)?;
    sink.write(text.as_bytes())?;
    sink.finish()
}

/// Pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| Failure::usage(format!("cannot encode JSON: {err}")))?;
    let mut sink = Sink::open(None)?;
    sink.write(text.as_bytes())?;
    sink.write(b"\n")?;
    sink.finish()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_terminal_without_a_size_does_not_squeeze_the_table() {
        assert_eq!(fit(true, Some(120), None), Some(120));
        assert_eq!(fit(true, Some(0), None), None);
        assert_eq!(fit(true, Some(0), Some("90")), Some(90));
        assert_eq!(fit(true, None, Some("junk")), None);
        assert_eq!(fit(false, Some(120), None), None);
        // Unwrapped, a wide result keeps every character.
        let body = serde_json::json!({
            "columns": [{"name": "a_long_column_name", "type": "VARCHAR"}],
            "rows": [["a value wider than a squeezed column"]],
        });
        assert!(render_result(&body, false).contains("a value wider than a squeezed column"));
    }

    use super::*;

    #[test]
    fn a_result_renders_as_a_table_with_nulls_and_nested_values() {
        let body = serde_json::json!({
            "columns": [{"name": "id", "type": "BIGINT"}, {"name": "tags", "type": "VARCHAR[]"}],
            "rows": [[1, ["a"]], [22, null]], "row_count": 2});
        let text = render_result(&body, false);
        assert!(text.contains("│  1 ┆ [\"a\"] │"), "{text}");
        assert!(text.contains("│ 22 ┆ NULL  │"), "{text}");
    }

    #[test]
    fn formats_follow_the_output_file_extension() {
        let args = OutputArgs {
            format: None,
            output: Some("r.parquet".into()),
        };
        assert_eq!(args.resolve().unwrap(), ResultFormat::Api(Format::Parquet));
        assert_eq!(ResultFormat::parse("jsonl").unwrap().api_name(), "ndjson");
        assert!(is_numeric("DECIMAL(18,3)") && !is_numeric("INTERVAL") && !is_numeric("INTEGER[]"));
    }
}
