//! Job results in object storage: written once as the Arrow IPC stream of
//! DuckDB's own batches (with each column's DuckDB type kept in the job's
//! record), read back in any format by decoding that stream batch by batch
//! on a blocking thread and feeding the same encoders as `/api/v1/query`.
//! `arrow` is the spooled bytes as they are. Memory stays bounded both ways:
//! uploads go out in parts, reads come in as the object streams.

use std::{
    io::Read,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use duckdb::core::LogicalTypeId;
use futures_util::{Stream, StreamExt};
use object_store::{path::Path, ObjectStoreExt, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    bucket::{storage_error, SideStore},
    engine::stream::CHUNK_BYTES,
    error::Error,
    format::encode::{Format, Pipelined, ResultHead, Summary},
    format::types::{Column, DuckType},
    store::jobs::JobRow,
};

/// Where a job's result goes inside the spool.
pub fn location(spool: &SideStore, id: Uuid) -> String {
    spool
        .prefix
        .clone()
        .join(id.to_string())
        .join("result.arrows")
        .to_string()
}

/// A result being written, in parts.
pub struct Upload(WriteMultipart);

/// Parts uploading at once at most (each is 5 MiB): the writer's memory bound.
const PARTS_IN_FLIGHT: usize = 2;

impl Upload {
    pub async fn start(spool: &SideStore, location: &str) -> Result<Self, Error> {
        let upload = spool
            .store
            .put_multipart(&Path::from(location))
            .await
            .map_err(storage_error)?;
        Ok(Self(WriteMultipart::new(upload)))
    }

    pub async fn write(&mut self, bytes: Bytes) -> Result<(), Error> {
        self.0
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(storage_error)?;
        self.0.put(bytes);
        Ok(())
    }

    pub async fn finish(self) -> Result<(), Error> {
        self.0.finish().await.map_err(storage_error)?;
        Ok(())
    }

    pub async fn abort(self) {
        if let Err(err) = self.0.abort().await {
            tracing::warn!(error = %err, "could not abort a job's result upload");
        }
    }
}

/// Deletes a result; one that is already gone is fine.
pub async fn delete(spool: &SideStore, location: &str) -> Result<(), Error> {
    match spool.store.delete(&Path::from(location)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(storage_error(err).into()),
    }
}

/// A column's DuckDB type, as kept in the job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredType {
    id: u32,
    name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    children: Vec<(String, StoredType)>,
}

impl From<&DuckType> for StoredType {
    fn from(ty: &DuckType) -> Self {
        Self {
            id: ty.id as u32,
            name: ty.name.clone(),
            children: ty
                .children
                .iter()
                .map(|(n, t)| (n.clone(), t.into()))
                .collect(),
        }
    }
}

impl From<StoredType> for DuckType {
    fn from(ty: StoredType) -> Self {
        Self {
            id: LogicalTypeId::from(ty.id),
            name: ty.name,
            children: ty
                .children
                .into_iter()
                .map(|(n, t)| (n, t.into()))
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredColumn {
    name: String,
    #[serde(rename = "type")]
    ty: StoredType,
}

/// The columns and DuckDB types of a result, as JSON text for the record.
pub fn columns_json(columns: &[Column], types: &[DuckType]) -> String {
    let stored: Vec<StoredColumn> = columns
        .iter()
        .zip(types)
        .map(|(c, t)| StoredColumn {
            name: c.name.clone(),
            ty: t.into(),
        })
        .collect();
    serde_json::to_string(&stored).expect("columns serialise")
}

fn parse_columns(text: &str) -> Result<(Vec<Column>, Vec<DuckType>), Error> {
    let stored: Vec<StoredColumn> = serde_json::from_str(text)
        .map_err(|e| Error::internal(anyhow::anyhow!("a job's stored columns: {e}")))?;
    Ok(stored
        .into_iter()
        .map(|c| {
            let column = Column {
                name: c.name,
                type_name: c.ty.name.clone(),
            };
            (column, DuckType::from(c.ty))
        })
        .unzip())
}

/// A result on its way to the client.
pub struct ResultBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, Error>>,
}

impl Stream for ResultBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.rx.poll_recv(cx)
    }
}

/// Opens a succeeded job's result in `format`. Errors before the first
/// bytes (a missing object, a format that cannot carry the result) are
/// returned as such.
pub async fn read(spool: &SideStore, row: &JobRow, format: Format) -> Result<ResultBody, Error> {
    let location = row
        .result_location
        .as_deref()
        .ok_or_else(|| Error::NotFound(format!("job {} has no result", row.id)))?;
    let object = spool
        .store
        .get(&Path::from(location))
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::NotFound(format!(
                "the result of job {} is no longer in storage",
                row.id
            )),
            e => storage_error(e).into(),
        })?;
    let mut source = object.into_stream();
    let (tx, mut rx) = mpsc::channel(8);
    if format == Format::Arrow {
        tokio::spawn(async move {
            while let Some(chunk) = source.next().await {
                let chunk = chunk.map_err(|e| Error::from(storage_error(e)));
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
    } else {
        let (columns, types) = parse_columns(row.result_columns.as_deref().unwrap_or("[]"))?;
        let elapsed_ms = match (row.started_at, row.finished_at) {
            (Some(start), Some(end)) => (end - start).num_microseconds().unwrap_or(0) as f64 / 1e3,
            _ => 0.0,
        };
        let (in_tx, in_rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(chunk) = source.next().await {
                if in_tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx: in_rx,
                current: Bytes::new(),
            };
            let head = Transcode {
                columns,
                types,
                elapsed_ms,
                tx: tx.clone(),
            };
            if let Err(err) = head.run(reader, format) {
                let _ = tx.blocking_send(Err(err));
            }
        });
    }
    match rx.recv().await {
        Some(Ok(first)) => Ok(ResultBody {
            first: Some(first),
            rx,
        }),
        Some(Err(err)) => Err(err),
        None => Ok(ResultBody { first: None, rx }),
    }
}

/// Decodes the spooled Arrow IPC stream and encodes it in another format.
struct Transcode {
    columns: Vec<Column>,
    types: Vec<DuckType>,
    elapsed_ms: f64,
    tx: mpsc::Sender<Result<Bytes, Error>>,
}

impl Transcode {
    fn run(self, reader: ChannelReader, format: Format) -> Result<(), Error> {
        let unreadable = |e: duckdb::arrow::error::ArrowError| {
            Error::internal(anyhow::anyhow!("reading a spooled result: {e}"))
        };
        let batches =
            arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(reader), None)
                .map_err(unreadable)?;
        let head = ResultHead {
            columns: self.columns,
            types: self.types,
            schema: batches.schema(),
        };
        let mut encoder = format.encoder(&head)?;
        let mut pipelined = false;
        let mut summary = Summary {
            elapsed_ms: self.elapsed_ms,
            ..Summary::default()
        };
        for batch in batches {
            let batch = batch.map_err(unreadable)?;
            summary.row_count += batch.num_rows() as u64;
            encoder.batch(&batch)?;
            if encoder.pending() >= CHUNK_BYTES {
                if self
                    .tx
                    .blocking_send(Ok(Bytes::from(encoder.take())))
                    .is_err()
                {
                    return Ok(());
                }
                // A long result: encode beside reading the spool, as
                // /api/v1/query does.
                if !pipelined {
                    encoder = Box::new(Pipelined::start(encoder)?);
                    pipelined = true;
                }
            }
        }
        encoder.finish(&summary)?;
        let _ = self.tx.blocking_send(Ok(Bytes::from(encoder.take())));
        Ok(())
    }
}

/// The object's bytes as they arrive, as a blocking `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_survive_the_record() {
        let leaf = |id, name: &str| DuckType {
            id,
            name: name.into(),
            children: Vec::new(),
        };
        let types = vec![
            leaf(LogicalTypeId::Hugeint, "HUGEINT"),
            leaf(LogicalTypeId::Decimal, "DECIMAL(38,0)"),
            DuckType {
                id: LogicalTypeId::Struct,
                name: "STRUCT(a JSON, \"b c\" UUID[])".into(),
                children: vec![
                    ("a".into(), leaf(LogicalTypeId::Varchar, "JSON")),
                    (
                        "b c".into(),
                        DuckType {
                            id: LogicalTypeId::List,
                            name: "UUID[]".into(),
                            children: vec![(String::new(), leaf(LogicalTypeId::Uuid, "UUID"))],
                        },
                    ),
                ],
            },
        ];
        let columns: Vec<Column> = ["h", "d", "s"]
            .iter()
            .zip(&types)
            .map(|(n, t)| Column {
                name: n.to_string(),
                type_name: t.name.clone(),
            })
            .collect();
        let (back_columns, back_types) = parse_columns(&columns_json(&columns, &types)).unwrap();
        assert_eq!(back_columns, columns);
        assert_eq!(back_types, types);
    }
}
