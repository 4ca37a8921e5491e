//! `POST /api/v1/tables/{schema}/{table}/data`: load a CSV, TSV, NDJSON or
//! Parquet file into a table.
//!
//! The body streams to a file in the spill directory as it arrives (never
//! held in memory; cut off with 413 past `ingest.max_upload_bytes`), then
//! DuckDB loads it in one transaction (see [`crate::engine::ingest`]). The
//! file is deleted whatever happens, also when the client goes away mid-way
//! (the handler is dropped: nothing was loaded). `?url=s3://bucket/key`
//! loads a file already in the lake's bucket instead of a body.

use crate::api::{
    access::{Authorized, Writer},
    routes::{serve, Routes},
};
use std::{path::PathBuf, time::Instant};

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::{
    api::{answer::SNAPSHOT_HEADER, state::AppState},
    engine::{
        catalog::validate_name,
        ingest::{FileFormat, LoadMode},
    },
    error::Error,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IngestParams {
    /// append (default), replace or create (the table from the file's columns).
    #[serde(default)]
    pub mode: LoadMode,
    /// csv, tsv, ndjson or parquet; else taken from Content-Type
    /// (text/csv, text/tab-separated-values, application/x-ndjson,
    /// application/vnd.apache.parquet).
    pub format: Option<String>,
    /// Load `s3://<the lake's bucket>/<ingest prefix>/...` instead of the
    /// request body (storage.ingest_prefix, default `<prefix>-ingest`).
    pub url: Option<String>,
    /// `url` may be a glob (`*`, `**`, `[..]`, `{a,b}`), matched inside the
    /// ingest prefix only.
    #[serde(default)]
    pub glob: bool,
}

/// What a load did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestResult {
    pub schema: String,
    pub table: String,
    pub mode: LoadMode,
    pub format: FileFormat,
    pub rows_loaded: u64,
    /// Bytes uploaded (0 for `url`).
    pub bytes: u64,
    /// The snapshot the load created.
    pub snapshot: i64,
    pub elapsed_ms: f64,
}

/// Load a file into a table in one transaction (write role): all its rows
/// or, on any error, none.
#[utoipa::path(post, path = "/api/v1/tables/{schema}/{table}/data", tag = "lake",
    params(("schema" = String, Path), ("table" = String, Path), IngestParams),
    request_body(content = Vec<u8>, description = "The file", content_type = "text/csv"),
    responses(
        (status = 200, body = IngestResult, description = "Loaded (append, replace)"),
        (status = 201, body = IngestResult, description = "Table created and loaded"),
        (status = 404, description = "not_found: no such schema or table", body = crate::api::error::ErrorResponse),
        (status = 409, description = "already_exists (create), write_conflict", body = crate::api::error::ErrorResponse),
        (status = 413, description = "payload_too_large", body = crate::api::error::ErrorResponse),
        (status = 415, description = "unsupported_media_type", body = crate::api::error::ErrorResponse),
        (status = 422, description = "invalid_data: the file cannot be loaded (DuckDB's reason); invalid_parameters", body = crate::api::error::ErrorResponse),
    ))]
pub async fn ingest(
    _caller: Authorized<Writer>,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    params: web::Query<IngestParams>,
    mut payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let started = Instant::now();
    let (schema, table) = path.into_inner();
    validate_name("schema", &schema)?;
    validate_name("table", &table)?;
    let params = params.into_inner();
    let format = file_format(&params, &req)?;
    let engine = &state.engine;

    let (location, bytes, _upload) = match &params.url {
        Some(url) => (ingest_url(engine.lake(), url, params.glob)?, 0, None),
        None => {
            let dir = state.config.data_dir.join("tmp").join("uploads");
            let mut upload = Upload::create(dir, format, &state.uploads).await?;
            let limit = state.config.ingest.max_upload_bytes;
            let mut file = tokio::fs::File::create(&upload.path)
                .await
                .map_err(Error::internal)?;
            let mut bytes = 0u64;
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::InvalidRequest(format!("the upload did not arrive whole: {e}"))
                })?;
                bytes += chunk.len() as u64;
                if bytes > limit {
                    return Err(Error::PayloadTooLarge(format!(
                        "the upload is larger than the limit of {limit} bytes (ingest.max_upload_bytes)"
                    )));
                }
                upload.claim.hold(chunk.len() as u64)?;
                file.write_all(&chunk).await.map_err(Error::internal)?;
            }
            file.flush().await.map_err(Error::internal)?;
            drop(file);
            if bytes == 0 {
                return Err(Error::InvalidParameters(
                    "the request body is empty: send the file, or give url=".into(),
                ));
            }
            let location = upload.path.display().to_string();
            (location, bytes, Some(upload))
        }
    };
    let trail = crate::api::trail::trail(&req);
    let loaded = state
        .load(
            trail.as_ref(),
            crate::services::Load {
                schema: &schema,
                table: &table,
                location,
                format,
                mode: params.mode,
                bytes,
                source: params.url.as_deref(),
            },
        )
        .await?;
    let result = IngestResult {
        schema,
        table,
        mode: params.mode,
        format,
        rows_loaded: loaded.rows_loaded,
        bytes,
        snapshot: loaded.snapshot,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    let mut response = if params.mode == LoadMode::Create {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response
        .insert_header((SNAPSHOT_HEADER, loaded.snapshot.to_string()))
        .json(result))
}

fn file_format(params: &IngestParams, req: &HttpRequest) -> Result<FileFormat, Error> {
    const KNOWN: &str = "csv, tsv, ndjson, parquet";
    if let Some(name) = &params.format {
        return FileFormat::from_name(name).ok_or_else(|| {
            Error::InvalidParameters(format!("format `{name}` is not one of {KNOWN}"))
        });
    }
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    FileFormat::from_media_type(media).ok_or_else(|| {
        Error::UnsupportedMediaType(format!(
            "cannot load Content-Type `{media}`: send text/csv, text/tab-separated-values, \
             application/x-ndjson or application/vnd.apache.parquet, or give format= ({KNOWN})"
        ))
    })
}

/// `url` if it names an object under the lake's ingest prefix (never the
/// data path, job results or anything else in the bucket); a glob only when
/// asked for, and then matched inside that prefix.
fn ingest_url(
    lake: &crate::engine::lake::LakeSpec,
    url: &str,
    glob: bool,
) -> Result<String, Error> {
    let Some(root) = lake.ingest_root() else {
        return Err(Error::InvalidParameters(
            "url= loads from the lake's S3 bucket; this lake keeps its data in a local directory"
                .into(),
        ));
    };
    let key = url.strip_prefix(&root).unwrap_or("");
    let outside = || {
        Error::InvalidParameters(format!(
            "url must name an object under the ingest prefix: {root}<key> \
             (storage.ingest_prefix)"
        ))
    };
    if key.is_empty()
        || key.starts_with('/')
        || key.split('/').any(|part| part == ".." || part == ".")
        || url.contains(['\0', '?', '\\'])
    {
        return Err(outside());
    }
    if !glob && key.contains(['*', '[', '{']) {
        return Err(Error::InvalidParameters(
            "url holds glob characters (*, [, {): pass glob=true to load every file it matches \
             under the ingest prefix"
                .into(),
        ));
    }
    Ok(url.to_string())
}

/// An upload's file, deleted when dropped (done, failed, or abandoned by
/// a client that went away).
struct Upload {
    path: PathBuf,
    /// Its bytes on disk, counted against what all files being received
    /// may hold.
    claim: crate::uploads::Claim,
}

impl Upload {
    async fn create(
        dir: PathBuf,
        format: FileFormat,
        budget: &crate::uploads::SpoolBudget,
    ) -> Result<Self, Error> {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(Error::internal)?;
        let path = dir.join(format!("{}.{}", uuid::Uuid::new_v4(), format.extension()));
        Ok(Self {
            path,
            claim: budget.claim(),
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || {
                    let _ = std::fs::remove_file(path);
                });
            }
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, ingest);
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn only_keys_under_the_ingest_prefix_load_and_globs_only_when_asked() {
        let mut config = crate::config::Config::default();
        config.storage.minio_endpoint = Some("minio:9000".into());
        config.storage.default_bucket = "b".into();
        let lake = crate::engine::lake::LakeSpec::from_config(&config);
        let ok = [
            "s3://b/lake-ingest/k.csv",
            "s3://b/lake-ingest/2026/12/k.parquet",
        ];
        for url in ok {
            assert_eq!(ingest_url(&lake, url, false).unwrap(), url);
        }
        assert!(ingest_url(&lake, "s3://b/lake-ingest/2026/*.csv", true).is_ok());
        let refused = [
            ("s3://b/lake/main/t/data.parquet", false),
            ("s3://b/lake-jobs/x/result.arrow", false),
            ("s3://b/other.csv", false),
            ("s3://b/", true),
            ("s3://b/lake-ingest/", true),
            ("s3://b/lake-ingest/../lake/x.parquet", true),
            ("s3://b/lake-ingest/./x", true),
            ("s3://b/lake-ingest//etc", true),
            ("s3://other/lake-ingest/k.csv", true),
            ("s3://b/lake-ingest/k.csv?versionId=1", true),
            ("s3://b/lake-ingest/*.csv", false),
            ("s3://b/lake-ingest/{a,b}.csv", false),
            ("s3://b/*/x.csv", true),
            ("S3://b/lake-ingest/k.csv", true),
        ];
        for (url, glob) in refused {
            assert_eq!(
                ingest_url(&lake, url, glob).map_err(|e| e.code()),
                Err("invalid_parameters"),
                "{url}"
            );
        }
        let local = crate::engine::lake::LakeSpec::from_config(&crate::config::Config::default());
        assert!(ingest_url(&local, "s3://b/lake-ingest/k.csv", false).is_err());
    }
}
