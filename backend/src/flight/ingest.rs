//! Bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`): the
//! batches are spooled as Parquet beside DuckDB's spill files and loaded by
//! the core's [`Services::load`] in one DuckLake transaction, as the HTTP
//! ingest is: all or nothing, audited, counted. An ingest that names an
//! open transaction joins it (it commits or rolls back with it).

use arrow_array::RecordBatch;
use arrow_flight::{
    decode::FlightRecordBatchStream,
    sql::{server::PeekableFlightDataStream, CommandStatementIngest},
};
use futures_util::{StreamExt, TryStreamExt};

use super::LakeFlight;
use crate::{
    auth::Caller,
    engine::ingest::{FileFormat, LoadMode},
    error::Error,
    role::Role,
    services::Services,
};

impl LakeFlight {
    pub(super) async fn ingest(
        &self,
        caller: &Caller,
        command: CommandStatementIngest,
        stream: PeekableFlightDataStream,
    ) -> Result<(u64, Option<i64>), Error> {
        caller.require(Role::Write)?;
        let transaction = command
            .transaction_id
            .as_deref()
            .map(LakeFlight::transaction_id)
            .transpose()?;
        if command.temporary {
            return Err(Error::InvalidParameters(
                "temporary tables are not kept: ingest into a lake table".into(),
            ));
        }
        let lake = &self.services.engine.lake().name;
        if let Some(catalog) = command.catalog.as_deref().filter(|c| *c != lake.as_str()) {
            return Err(Error::NotFound(format!(
                "no catalog {catalog}: the lake is {lake}"
            )));
        }
        let schema = command.schema.clone().unwrap_or_else(|| "main".into());
        let table = command.table.clone();
        if table.is_empty() {
            return Err(Error::InvalidParameters(
                "the table to ingest into is empty".into(),
            ));
        }
        use arrow_flight::sql::{TableExistsOption as Exists, TableNotExistOption as NotExist};
        let options = command.table_definition_options.unwrap_or_default();
        let create = options.if_not_exist() == NotExist::Create;
        let mode = match options.if_exists() {
            Exists::Append => LoadMode::Append,
            Exists::Replace => LoadMode::Replace,
            Exists::Fail | Exists::Unspecified if create => LoadMode::Create,
            Exists::Fail | Exists::Unspecified => {
                return Err(Error::InvalidParameters(
                    "the ingest neither creates nor appends nor replaces: set if_not_exist or \
                     if_exists"
                        .into(),
                ))
            }
        };
        let spool = spool_batches(&self.services, stream).await?;
        let trail = self.trail(caller);
        let load = |mode| crate::services::Load {
            schema: &schema,
            table: &table,
            location: spool.path.display().to_string(),
            format: FileFormat::Parquet,
            mode,
            bytes: spool.bytes,
            source: None,
        };
        if let Some(id) = transaction {
            let services = &self.services;
            let mut loaded = services.load_in_transaction(caller, id, load(mode)).await;
            if create
                && mode != LoadMode::Create
                && matches!(loaded, Err(Error::NotFound(ref m)) if m.contains("table"))
            {
                loaded = services
                    .load_in_transaction(caller, id, load(LoadMode::Create))
                    .await;
            }
            return loaded.map(|rows| (rows, None));
        }
        let mut loaded = self.services.load(Some(&trail), load(mode)).await;
        // The table is not there yet, and the ingest may create it.
        let missing =
            |r: &Result<_, Error>| matches!(r, Err(Error::NotFound(m)) if m.contains("table"));
        if create && mode != LoadMode::Create && missing(&loaded) {
            loaded = self
                .services
                .load(Some(&trail), load(LoadMode::Create))
                .await;
        }
        loaded.map(|loaded| (loaded.rows_loaded, Some(loaded.snapshot)))
    }
}

/// An ingest's batches in a Parquet file beside DuckDB's spill files, gone
/// when dropped.
struct Spool {
    path: std::path::PathBuf,
    bytes: u64,
    _file: tempfile::TempPath,
    /// Counted against what all files being received may hold, until the
    /// file is gone.
    _claim: crate::uploads::Claim,
}

async fn spool_batches(
    services: &Services,
    stream: PeekableFlightDataStream,
) -> Result<Spool, Error> {
    let dir = services.config.data_dir.join("tmp").join("uploads");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(Error::internal)?;
    let file = tempfile::Builder::new()
        .suffix(".parquet")
        .tempfile_in(&dir)
        .map_err(Error::internal)?;
    let (handle, path) = file.into_parts();
    let limit = services.config.ingest.max_upload_bytes;
    let mut claim = services.uploads.claim();
    let mut batches = FlightRecordBatchStream::new_from_flight_data(stream.map_err(Into::into));
    // Parquet is written on a blocking thread, fed batch by batch.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(4);
    let writing = tokio::task::spawn_blocking(move || -> Result<bool, Error> {
        let cannot = |e: parquet::errors::ParquetError| {
            Error::InvalidData(format!("cannot store the batches: {e}"))
        };
        let mut writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
        let mut file = Some(handle);
        while let Some(batch) = rx.blocking_recv() {
            if writer.is_none() {
                let file = file.take().expect("opened once");
                writer = Some(
                    parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
                        .map_err(cannot)?,
                );
            }
            writer
                .as_mut()
                .expect("opened above")
                .write(&batch)
                .map_err(cannot)?;
        }
        match writer {
            Some(writer) => writer.close().map(|_| true).map_err(cannot),
            None => Ok(false),
        }
    });
    let mut bytes = 0u64;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| {
            Error::InvalidData(format!("the ingested stream is not readable Arrow: {e}"))
        })?;
        let size = batch.get_array_memory_size() as u64;
        bytes += size;
        if bytes > limit {
            return Err(Error::PayloadTooLarge(format!(
                "the ingested data is larger than the limit of {limit} bytes (ingest.max_upload_bytes)"
            )));
        }
        claim.hold(size)?;
        if tx.send(batch).await.is_err() {
            break; // the writer failed: its error follows
        }
    }
    drop(tx);
    let wrote = writing.await.map_err(Error::internal)??;
    if !wrote {
        return Err(Error::InvalidParameters(
            "the ingest sent no batch: nothing to load".into(),
        ));
    }
    Ok(Spool {
        path: path.to_path_buf(),
        bytes,
        _file: path,
        _claim: claim,
    })
}
