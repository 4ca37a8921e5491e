//! `client jobs ...`: async query jobs through `/api/v1/jobs`. `submit
//! --wait` and `wait` poll the job with a bar of DuckDB's progress estimate
//! and the rows produced so far; a job that ends failed or cancelled exits 4
//! with its error.

use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::HumanBytes;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    connection::Api,
    failure::Failure,
    lake::{collect_pages, print_list, ListArgs},
    output::{cell, print_json, print_text, OutputArgs, Progress},
    query::SqlSource,
};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Submit SQL; print the job's id, or with --wait watch it and print its result.
    Submit(SubmitArgs),
    /// Jobs, newest first (every page, or --limit).
    List(JobListArgs),
    /// One job: status, progress, times, error.
    Status {
        id: String,
        /// The API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Watch a job until it ends: exit 0 if it succeeded, 4 if it failed or was cancelled.
    Wait {
        id: String,
        #[command(flatten)]
        poll: PollArgs,
    },
    /// A succeeded job's result, in any format.
    Result {
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cancel a queued or running job, or delete a finished one and its result.
    Cancel { id: String },
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// How often to ask for the job's progress.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub poll_ms: u64,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub source: SqlSource,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Interrupt the job after this long (capped by the service).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Watch the job, then print its result (as `query` would).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub poll: PollArgs,
}

#[derive(Debug, Args)]
pub struct JobListArgs {
    /// Only jobs with this status.
    #[arg(long, value_parser = ["queued", "running", "succeeded", "failed", "cancelled"])]
    pub status: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

pub fn run(api: &Api, command: JobsCommand, progress: &Progress) -> Result<(), Failure> {
    match command {
        JobsCommand::Submit(args) => submit(api, args, progress),
        JobsCommand::List(args) => list(api, args),
        JobsCommand::Status { id, json } => {
            let job: Value = api.get_json(&["api", "v1", "jobs", &id], &[])?;
            if json {
                print_json(&job)
            } else {
                print_status(&job)
            }
        }
        JobsCommand::Wait { id, poll } => {
            let job = watch(api, &id, progress, &poll)?;
            print_status(&job)
        }
        JobsCommand::Result { id, output } => result(api, &id, &output),
        JobsCommand::Cancel { id } => {
            let response = api.send(api.request(Method::DELETE, &["api", "v1", "jobs", &id]))?;
            print_text(&match response.status() {
                StatusCode::NO_CONTENT => format!("deleted job {id} and its result\n"),
                StatusCode::ACCEPTED => format!("cancel requested for job {id}\n"),
                _ => format!("cancelled job {id}\n"),
            })
        }
    }
}

fn submit(api: &Api, args: SubmitArgs, progress: &Progress) -> Result<(), Failure> {
    // With --wait the result is printed here, so its format must suit stdout.
    let format = if args.wait {
        Some(args.output.resolve()?)
    } else {
        args.output.format
    };
    let (sql, params) = args.source.read()?;
    let mut body = json!({ "sql": sql });
    if let Some(params) = params {
        body["params"] = params;
    }
    if let Some(format) = format {
        body["format"] = format.api_name().into();
    }
    if let Some(timeout_ms) = args.timeout_ms {
        body["timeout_ms"] = timeout_ms.into();
    }
    let response = api.send(
        api.request(Method::POST, &["api", "v1", "jobs"])
            .json(&body),
    )?;
    let job: Value = super::connection::read_json(response)?;
    let id = cell(&job["id"]);
    if !args.wait {
        return print_text(&format!("{id}\n"));
    }
    eprintln!("submitted job {id}");
    watch(api, &id, progress, &args.poll)?;
    result(api, &id, &args.output)
}

/// Polls a job until it ends; its error when it did not succeed.
fn watch(api: &Api, id: &str, progress: &Progress, poll: &PollArgs) -> Result<Value, Failure> {
    let bar = progress.percent(format!("job {id}"));
    let outcome = loop {
        let job: Value = match api.get_json(&["api", "v1", "jobs", id], &[]) {
            Ok(job) => job,
            Err(failure) => break Err(failure),
        };
        let status = job["status"].as_str().unwrap_or("").to_string();
        if let Some(percent) = job["progress_percent"].as_f64() {
            bar.set_position(percent.round() as u64);
        }
        bar.set_message(format!(
            "job {id} {status}: {} rows, {}",
            job["row_count"].as_i64().unwrap_or(0),
            HumanBytes(job["result_bytes"].as_u64().unwrap_or(0))
        ));
        match status.as_str() {
            "succeeded" => break Ok(job),
            "failed" | "cancelled" => {
                let error = &job["error"];
                break Err(Failure::Job {
                    code: error["code"].as_str().unwrap_or(&status).to_string(),
                    message: error["message"]
                        .as_str()
                        .map_or_else(|| format!("the job {status}"), str::to_string),
                });
            }
            _ => std::thread::sleep(Duration::from_millis(poll.poll_ms.max(10))),
        }
    };
    bar.finish_and_clear();
    outcome
}

fn result(api: &Api, id: &str, output: &OutputArgs) -> Result<(), Failure> {
    let format = output.resolve()?;
    let response = api.send(
        api.request(Method::GET, &["api", "v1", "jobs", id, "result"])
            .query(&[("format", format.api_name())]),
    )?;
    output.write_result(format, response)
}

fn list(api: &Api, args: JobListArgs) -> Result<(), Failure> {
    let filters: Vec<(&str, String)> = args.status.into_iter().map(|s| ("status", s)).collect();
    let items = collect_pages(api, &["api", "v1", "jobs"], &filters, "jobs", &args.list)?;
    let field = |name: &'static str| move |job: &Value| cell(&job[name]);
    let sql = |job: &Value| {
        let sql = cell(&job["sql"])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        match sql.char_indices().nth(60) {
            Some((at, _)) => format!("{}…", &sql[..at]),
            None => sql,
        }
    };
    print_list(
        &items,
        args.list.json,
        &[
            ("JOB", &field("id"), false),
            ("STATUS", &field("status"), false),
            ("SUBMITTED", &field("submitted_at"), false),
            ("ROWS", &field("row_count"), true),
            ("ELAPSED MS", &field("elapsed_ms"), true),
            ("SQL", &sql, false),
        ],
    )
}

fn print_status(job: &Value) -> Result<(), Failure> {
    let mut text = format!("job {}: {}\n", cell(&job["id"]), cell(&job["status"]));
    for (label, name) in [
        ("submitted", "submitted_at"),
        ("started", "started_at"),
        ("finished", "finished_at"),
        ("elapsed ms", "elapsed_ms"),
        ("rows", "row_count"),
        ("result bytes", "result_bytes"),
        ("format", "format"),
        ("expires", "expires_at"),
    ] {
        if !job[name].is_null() {
            text.push_str(&format!("  {label}: {}\n", cell(&job[name])));
        }
    }
    if let Some(error) = job["error"].as_object() {
        text.push_str(&format!(
            "  error: {}: {}\n",
            cell(&error["code"]),
            cell(&error["message"])
        ));
    }
    print_text(&text)
}
