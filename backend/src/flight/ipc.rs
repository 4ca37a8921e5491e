//! An Arrow IPC stream, as the engine encodes it for the HTTP API's
//! `arrow` format, cut into Flight messages: each encapsulated IPC message
//! (continuation marker, metadata length, the `Message` flatbuffer, its
//! body) is one `FlightData` (`data_header` = the flatbuffer, `data_body` =
//! the body). Nothing is decoded or encoded again, so Flight carries the
//! very batches the HTTP API does at the cost of a copy.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use arrow_flight::FlightData;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;

use crate::error::Error;

const CONTINUATION: [u8; 4] = [0xff; 4];

/// One encapsulated message cut off the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The `Message` flatbuffer (with its padding).
    pub header: Bytes,
    pub body: Bytes,
}

impl Message {
    pub fn into_flight_data(self) -> FlightData {
        FlightData {
            flight_descriptor: None,
            data_header: self.header,
            app_metadata: Bytes::new(),
            data_body: self.body,
        }
    }

    /// The message as an encapsulated IPC message (what `FlightInfo.schema`
    /// holds for a schema message).
    pub fn encapsulated(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + self.header.len() + self.body.len());
        out.extend_from_slice(&CONTINUATION);
        out.extend_from_slice(&(self.header.len() as i32).to_le_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.body);
        out.freeze()
    }
}

/// Cuts messages off the bytes pushed so far. The engine sends whole
/// messages in each chunk, so a message is a slice of its chunk (no copy);
/// only a message cut across chunks is copied together.
#[derive(Default)]
pub struct Splitter {
    buffer: Bytes,
    /// The end-of-stream marker was read.
    ended: bool,
}

impl Splitter {
    pub fn push(&mut self, bytes: Bytes) {
        if self.buffer.is_empty() {
            self.buffer = bytes;
        } else {
            let mut joined = BytesMut::with_capacity(self.buffer.len() + bytes.len());
            joined.extend_from_slice(&self.buffer);
            joined.extend_from_slice(&bytes);
            self.buffer = joined.freeze();
        }
    }

    /// The next whole message, `None` while it has not all arrived (or
    /// after the end marker).
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        if self.ended || self.buffer.len() < 8 {
            return Ok(None);
        }
        let mut prefix = &self.buffer[..8];
        let (skip, length) = if prefix[..4] == CONTINUATION {
            prefix.advance(4);
            (8, prefix.get_i32_le())
        } else {
            // The legacy framing: the length alone.
            (4, prefix.get_i32_le())
        };
        if length == 0 {
            self.ended = true;
            self.buffer.clear();
            return Ok(None);
        }
        let length = usize::try_from(length).map_err(|_| broken("a negative message length"))?;
        if self.buffer.len() < skip + length {
            return Ok(None);
        }
        let message = arrow_ipc::root_as_message(&self.buffer[skip..skip + length])
            .map_err(|e| broken(&format!("an unreadable message header: {e}")))?;
        let body_length =
            usize::try_from(message.bodyLength()).map_err(|_| broken("a negative body length"))?;
        if self.buffer.len() < skip + length + body_length {
            return Ok(None);
        }
        self.buffer.advance(skip);
        let header = self.buffer.split_to(length);
        let body = self.buffer.split_to(body_length);
        Ok(Some(Message { header, body }))
    }

    /// Whether the stream's end marker was seen.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

fn broken(what: &str) -> Error {
    Error::internal(anyhow::anyhow!("the Arrow IPC stream has {what}"))
}

/// Encoded bytes in, Flight messages out. A stream of bytes that stops
/// before its end marker is an error, never a short result.
pub struct Messages<S> {
    bytes: Option<S>,
    splitter: Splitter,
}

impl<S> Messages<S>
where
    S: Stream<Item = Result<Bytes, Error>> + Unpin,
{
    pub fn new(bytes: S) -> Self {
        Self {
            bytes: Some(bytes),
            splitter: Splitter::default(),
        }
    }
}

impl<S> Stream for Messages<S>
where
    S: Stream<Item = Result<Bytes, Error>> + Unpin,
{
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.splitter.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(err) => {
                    self.bytes = None;
                    return Poll::Ready(Some(Err(err)));
                }
            }
            let Some(bytes) = self.bytes.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(bytes).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => self.splitter.push(chunk),
                Poll::Ready(Some(Err(err))) => {
                    self.bytes = None;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    // The body ended (and is dropped): whole only with its marker.
                    self.bytes = None;
                    if !self.splitter.ended() {
                        return Poll::Ready(Some(Err(broken("no end marker"))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use futures_util::StreamExt;

    use super::*;

    fn ipc_stream(batches: usize) -> (Vec<u8>, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let made: Vec<RecordBatch> = (0..batches)
            .map(|b| {
                let ids: Vec<i64> = (0..100).map(|i| (b * 100 + i) as i64).collect();
                let names: Vec<Option<String>> = ids
                    .iter()
                    .map(|i| (i % 3 != 0).then(|| format!("n{i}")))
                    .collect();
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from(ids)),
                        Arc::new(StringArray::from(names)),
                    ],
                )
                .unwrap()
            })
            .collect();
        let mut out = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
        for batch in &made {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        drop(writer);
        (out, made)
    }

    async fn decode(chunks: Vec<Bytes>) -> Result<Vec<RecordBatch>, Error> {
        let messages: Vec<Message> = Messages::new(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<_, Error>),
        ))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
        let data = messages.into_iter().map(|m| Ok(m.into_flight_data()));
        let decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            futures_util::stream::iter(data.collect::<Vec<_>>()),
        )
        .collect::<Vec<_>>()
        .await;
        Ok(decoded.into_iter().map(|b| b.unwrap()).collect())
    }

    #[tokio::test]
    async fn cut_at_any_chunk_size_the_batches_come_out_as_written() {
        let (stream, written) = ipc_stream(5);
        for size in [1, 7, 64, 1000, stream.len()] {
            let chunks = stream.chunks(size).map(Bytes::copy_from_slice).collect();
            assert_eq!(decode(chunks).await.unwrap(), written, "chunk size {size}");
        }
    }

    #[tokio::test]
    async fn a_stream_without_its_end_marker_is_an_error() {
        let (stream, _) = ipc_stream(2);
        let cut = Bytes::copy_from_slice(&stream[..stream.len() - 8]);
        let err = decode(vec![cut]).await.unwrap_err();
        assert!(err.to_string().contains("internal"), "{err}");
        let messages: Vec<_> = Messages::new(futures_util::stream::iter(vec![Ok::<_, Error>(
            Bytes::copy_from_slice(&stream[..stream.len() - 8]),
        )]))
        .collect()
        .await;
        assert!(messages.last().unwrap().is_err());
    }
}
