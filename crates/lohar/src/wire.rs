//! A connection as the handlers see it: a frame reader and a shareable frame writer.

use std::sync::Arc;

use bhatti_proto::codec::FrameCodec;
use bhatti_proto::msg::{encode_exit, json_frame};
use bhatti_proto::{Frame, FrameType, ProtoError, MAX_PAYLOAD_LEN};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::Mutex;
use tokio_util::codec::FramedRead;

/// Any byte stream a connection can arrive on (TCP, Unix socket, in-memory duplex in tests).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed connection stream.
pub type BoxStream = Box<dyn Stream>;

/// The reading half, decoded into frames (cancel-safe via `StreamExt::next`).
pub type FrameReader = FramedRead<ReadHalf<BoxStream>, FrameCodec>;

/// The writing half; clones share one lock so whole frames never interleave.
#[derive(Clone)]
pub struct FrameWriter {
    inner: Arc<Mutex<WriteHalf<BoxStream>>>,
}

/// Splits a stream into a frame reader and writer.
pub fn split(stream: BoxStream) -> (FrameReader, FrameWriter) {
    let (r, w) = tokio::io::split(stream);
    (
        FramedRead::new(r, FrameCodec),
        FrameWriter {
            inner: Arc::new(Mutex::new(w)),
        },
    )
}

impl FrameWriter {
    /// Writes one frame.
    pub async fn send(&self, ty: FrameType, payload: &[u8]) -> Result<(), ProtoError> {
        let mut w = self.inner.lock().await;
        bhatti_proto::io::write_frame(&mut *w, ty, payload).await
    }

    /// Writes a frame value.
    pub async fn send_frame(&self, f: &Frame) -> Result<(), ProtoError> {
        self.send(f.ty, &f.payload).await
    }

    /// Writes data as one or more frames of `ty`, splitting at the maximum payload.
    pub async fn send_chunked(&self, ty: FrameType, data: &[u8]) -> Result<(), ProtoError> {
        for chunk in data.chunks(MAX_PAYLOAD_LEN) {
            self.send(ty, chunk).await?;
        }
        Ok(())
    }

    /// Writes a JSON payload.
    pub async fn send_json<T: Serialize>(&self, ty: FrameType, v: &T) -> Result<(), ProtoError> {
        self.send_frame(&json_frame(ty, v)).await
    }

    /// Writes an ERROR frame.
    pub async fn error(&self, msg: impl AsRef<str>) -> Result<(), ProtoError> {
        self.send(FrameType::Error, msg.as_ref().as_bytes()).await
    }

    /// Writes an EXIT frame.
    pub async fn exit(&self, code: i32) -> Result<(), ProtoError> {
        self.send(FrameType::Exit, &encode_exit(code)).await
    }

    /// Flushes and shuts the write side down (half-close).
    pub async fn shutdown(&self) {
        use tokio::io::AsyncWriteExt;
        let mut w = self.inner.lock().await;
        let _ = w.shutdown().await;
    }
}
