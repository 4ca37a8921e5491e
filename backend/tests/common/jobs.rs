//! Talking to the jobs API of any replica (in-process app or child process).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A replica's base URL and, with authentication on, the key to use.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: Option<String>,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            key: None,
            client: reqwest::Client::new(),
        }
    }

    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: Some(key.to_string()),
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Sends a request; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Submits a job that must be accepted; returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let (status, job) = self
            .call(reqwest::Method::POST, "/api/v1/jobs", Some(body))
            .await;
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["status"], "queued", "{job}");
        job["id"].as_str().expect("an id").to_string()
    }

    pub async fn job(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/api/v1/jobs/{id}"), None)
            .await
    }

    /// Polls until the job has this status (panics on another end, or after
    /// a bound that only a hang reaches).
    pub async fn wait_for(&self, id: &str, wanted: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, job) = self.job(id).await;
            assert_eq!(status, 200, "{job}");
            let now = job["status"].as_str().unwrap().to_string();
            if now == wanted {
                return job;
            }
            let live = now == "queued" || now == "running";
            assert!(live, "job {id} ended {now}, not {wanted}: {job}");
            assert!(Instant::now() < deadline, "job {id} still {now}: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// DELETE of a job: status and the job (Null when deleted).
    pub async fn delete(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, &format!("/api/v1/jobs/{id}"), None)
            .await
    }

    /// Cancels a live job; returns its record once it has ended. DELETE
    /// waits only a few heartbeats for the runner to stop the job, then
    /// answers 202 with the cancellation requested: a loaded machine can
    /// take longer than that, so a 202 is followed until the end.
    pub async fn cancel(&self, id: &str) -> Value {
        let (status, job) = self.delete(id).await;
        match status {
            200 => job,
            202 => {
                assert_eq!(job["cancel_requested"], true, "{job}");
                self.wait_for(id, "cancelled").await
            }
            _ => panic!("DELETE of live job {id} answered {status}: {job}"),
        }
    }

    /// Submits and waits until the job succeeded; returns its record.
    pub async fn run(&self, sql: &str) -> Value {
        let id = self.submit(json!({ "sql": sql })).await;
        self.wait_for(&id, "succeeded").await
    }

    /// GET of a job's result: status, content type and body bytes.
    pub async fn result(&self, id: &str, format: Option<&str>) -> (u16, String, Vec<u8>) {
        let path = match format {
            Some(f) => format!("/api/v1/jobs/{id}/result?format={f}"),
            None => format!("/api/v1/jobs/{id}/result"),
        };
        let res = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (
            status,
            content_type,
            res.bytes().await.expect("body").to_vec(),
        )
    }

    /// The status of POST /api/v1/query in `format`.
    pub async fn query_bytes_status(&self, sql: &str, format: &str) -> u16 {
        self.request(reqwest::Method::POST, "/api/v1/query")
            .json(&json!({ "sql": sql, "format": format }))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// POST /api/v1/query in `format`: the synchronous answer to compare with.
    pub async fn query_bytes(&self, sql: &str, format: &str) -> Vec<u8> {
        let res = self
            .request(reqwest::Method::POST, "/api/v1/query")
            .json(&json!({ "sql": sql, "format": format }))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "{sql}");
        res.bytes().await.expect("body").to_vec()
    }

    /// The job's result equals the synchronous query's in `format`
    /// (JSON bodies compared without `elapsed_ms`).
    pub async fn assert_same_result(&self, id: &str, sql: &str, format: &str) {
        let (status, _, job_bytes) = self.result(id, Some(format)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&job_bytes));
        let sync_bytes = self.query_bytes(sql, format).await;
        if format == "json" || format == "json_objects" {
            let mut from_job: Value = serde_json::from_slice(&job_bytes).unwrap();
            let mut from_query: Value = serde_json::from_slice(&sync_bytes).unwrap();
            from_job.as_object_mut().unwrap().remove("elapsed_ms");
            from_query.as_object_mut().unwrap().remove("elapsed_ms");
            assert_eq!(from_job, from_query, "{format}");
        } else if format == "arrow" || format == "parquet" {
            // Compared decoded: the writers order field metadata as they like.
            assert_eq!(
                decode(format, job_bytes),
                decode(format, sync_bytes),
                "{format}"
            );
        } else {
            assert!(
                job_bytes == sync_bytes,
                "{format}: the job's {} bytes differ from the query's {}",
                job_bytes.len(),
                sync_bytes.len()
            );
        }
    }
}

/// The job ended with this error code and a message saying `why`.
pub fn assert_job_error(job: &Value, code: &str, why: &str) {
    assert_eq!(job["error"]["code"], code, "{job}");
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{job}");
}

/// The job ended cancelled, with the error saying so.
pub fn assert_cancelled(job: &Value) {
    assert_eq!(job["status"].as_str(), Some("cancelled"), "{job}");
    assert_job_error(job, "cancelled", "cancelled");
}

/// The schema and batches of an Arrow IPC stream or a Parquet file.
fn decode(
    format: &str,
    bytes: Vec<u8>,
) -> (
    duckdb::arrow::datatypes::SchemaRef,
    Vec<duckdb::arrow::array::RecordBatch>,
) {
    if format == "arrow" {
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let schema = reader.schema();
        (schema, reader.map(Result::unwrap).collect())
    } else {
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            actix_web::web::Bytes::from(bytes),
        )
        .unwrap();
        let schema = builder.schema().clone();
        (
            schema,
            builder.build().unwrap().map(Result::unwrap).collect(),
        )
    }
}
