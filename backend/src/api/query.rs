//! `POST /api/v1/query`: run SQL on the lake and answer with its rows.

use std::time::Instant;

use actix_web::{http::header::ContentType, post, web, HttpResponse};
use serde::Deserialize;

use crate::{
    api::AppState,
    engine::{Params, QueryRequest},
    error::ApiError,
};

pub const TRUNCATED_HEADER: &str = "x-result-truncated";
pub const ROW_COUNT_HEADER: &str = "x-row-count";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// The SQL to run; several statements separated by `;` run in order and
    /// the last one's result is returned.
    pub sql: String,
    /// Positional (`[1, "a"]` for `?`/`$1`) or named (`{"id": 1}` for `$id`).
    #[serde(default)]
    pub params: Option<serde_json::Value>,
    /// Per-request timeout, capped by the server's `query.max_timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Row limit, capped by the server's `query.max_rows`.
    #[serde(default)]
    pub max_rows: Option<u64>,
}

impl QueryBody {
    fn into_request(self) -> Result<QueryRequest, ApiError> {
        let params = match self.params {
            None | Some(serde_json::Value::Null) => Params::None,
            Some(serde_json::Value::Array(values)) => Params::Positional(values),
            Some(serde_json::Value::Object(map)) => Params::Named(map),
            Some(_) => {
                return Err(ApiError::InvalidParameters(
                    "params must be an array (positional) or an object (named)".into(),
                ))
            }
        };
        if self.timeout_ms == Some(0) {
            return Err(ApiError::InvalidParameters(
                "timeout_ms must be more than 0".into(),
            ));
        }
        Ok(QueryRequest {
            sql: self.sql,
            params,
            timeout_ms: self.timeout_ms,
            max_rows: self.max_rows,
        })
    }
}

#[post("/api/v1/query")]
pub async fn query(
    state: web::Data<AppState>,
    body: web::Json<QueryBody>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let request = body.into_inner().into_request()?;
    let output = state.engine.query(request).await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        rows = output.row_count,
        truncated = output.truncated,
        elapsed_ms,
        "query finished"
    );

    let mut body = Vec::with_capacity(output.rows_json.len() + 256);
    body.extend_from_slice(b"{\"columns\":");
    serde_json::to_writer(&mut body, &output.columns).map_err(ApiError::internal)?;
    body.extend_from_slice(b",\"rows\":");
    body.extend_from_slice(&output.rows_json);
    body.extend_from_slice(
        format!(
            ",\"row_count\":{},\"truncated\":{},\"elapsed_ms\":{:.3}}}",
            output.row_count, output.truncated, elapsed_ms
        )
        .as_bytes(),
    );
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .insert_header((ROW_COUNT_HEADER, output.row_count.to_string()))
        .insert_header((TRUNCATED_HEADER, output.truncated.to_string()))
        .body(body))
}
