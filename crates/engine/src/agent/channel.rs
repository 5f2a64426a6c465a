//! A framed connection to lohar, read as events and written as typed frames.

use bhatti_proto::codec::FrameCodec;
use bhatti_proto::msg::{decode_exit, encode_resize, parse_json, SessionInfo, WindowSize};
use bhatti_proto::{Frame, FrameType, MAX_PAYLOAD_LEN};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

use super::{AgentError, BoxedStream};

/// What lohar sends during an exec or session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// Session metadata (first event of a session).
    SessionInfo(SessionInfo),
    /// Output bytes (the terminal's output for TTY sessions).
    Stdout(Bytes),
    /// Error output bytes (piped execs).
    Stderr(Bytes),
    /// The process ended with this code (or the client was detached by a steal: code 0).
    Exit(i32),
    /// lohar reported an error.
    Error(String),
}

/// The read side of a channel.
pub struct ChannelReader {
    rd: FramedRead<ReadHalf<BoxedStream>, FrameCodec>,
}

/// The write side of a channel.
pub struct ChannelWriter {
    wr: WriteHalf<BoxedStream>,
}

/// A connection carrying one exec or session.
pub struct AgentChannel {
    reader: ChannelReader,
    writer: ChannelWriter,
}

impl AgentChannel {
    pub(crate) fn new(stream: BoxedStream) -> Self {
        let (r, w) = tokio::io::split(stream);
        AgentChannel {
            reader: ChannelReader {
                rd: FramedRead::new(r, FrameCodec),
            },
            writer: ChannelWriter { wr: w },
        }
    }

    /// The next event; `Ok(None)` when lohar closed the connection.
    pub async fn next_event(&mut self) -> Result<Option<AgentEvent>, AgentError> {
        self.reader.next_event().await
    }

    /// The next raw frame (for exchanges other than exec).
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Frame>, AgentError> {
        self.reader.next_frame().await
    }

    /// Access to the writer.
    pub fn writer(&mut self) -> &mut ChannelWriter {
        &mut self.writer
    }

    /// Splits into independently usable halves (e.g. for a WebSocket relay).
    pub fn into_split(self) -> (ChannelReader, ChannelWriter) {
        (self.reader, self.writer)
    }
}

impl ChannelReader {
    /// The next raw frame; `Ok(None)` at clean EOF.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Frame>, AgentError> {
        match self.rd.next().await {
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// The next event, skipping frame types this version does not know.
    pub async fn next_event(&mut self) -> Result<Option<AgentEvent>, AgentError> {
        loop {
            let Some(f) = self.next_frame().await? else {
                return Ok(None);
            };
            let ev = match f.ty {
                FrameType::Stdout => AgentEvent::Stdout(f.payload),
                FrameType::Stderr => AgentEvent::Stderr(f.payload),
                FrameType::Exit => AgentEvent::Exit(decode_exit(&f.payload)?),
                FrameType::Error => AgentEvent::Error(f.text()),
                FrameType::SessionInfo => AgentEvent::SessionInfo(parse_json(&f)?),
                _ => continue,
            };
            return Ok(Some(ev));
        }
    }
}

impl ChannelWriter {
    pub(crate) async fn frame(&mut self, ty: FrameType, payload: &[u8]) -> Result<(), AgentError> {
        bhatti_proto::io::write_frame(&mut self.wr, ty, payload).await?;
        Ok(())
    }

    /// Sends input bytes (split into frames as needed; empty input is a no-op).
    pub async fn stdin(&mut self, data: &[u8]) -> Result<(), AgentError> {
        for chunk in data.chunks(MAX_PAYLOAD_LEN) {
            self.frame(FrameType::Stdin, chunk).await?;
        }
        Ok(())
    }

    /// Closes the process's stdin (an empty STDIN frame).
    pub async fn close_stdin(&mut self) -> Result<(), AgentError> {
        self.frame(FrameType::Stdin, &[]).await
    }

    /// Resizes the session's terminal.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), AgentError> {
        self.frame(FrameType::Resize, &encode_resize(WindowSize { rows, cols }))
            .await
    }

    /// KILL: SIGKILL to a piped exec's process group, SIGTERM to a session's.
    pub async fn kill(&mut self) -> Result<(), AgentError> {
        self.frame(FrameType::Kill, &[]).await
    }

    /// Closes the write side.
    pub async fn shutdown(&mut self) {
        let _ = self.wr.shutdown().await;
    }
}
