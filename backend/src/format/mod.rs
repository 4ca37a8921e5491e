//! Result encoders. Each writes DuckDB's Arrow batches in one wire format;
//! none of them runs SQL or knows HTTP.

pub mod encode;
pub mod json;
pub mod types;
mod wkt;
