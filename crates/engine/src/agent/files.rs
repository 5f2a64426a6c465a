//! File transfer over the agent connection: streamed reads and writes.

use bhatti_proto::msg::{
    json_frame, parse_json, FileReadRequest, FileReadResponse, FileWriteRequest,
};
use bhatti_proto::FrameType;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{AgentChannel, AgentClient, AgentError};

/// Chunk size of uploads.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// A file being read: its header, then its content in chunks.
pub struct FileReader {
    /// Size and mode of the whole file.
    pub header: FileReadResponse,
    ch: AgentChannel,
    done: bool,
}

impl FileReader {
    /// The next content chunk; `Ok(None)` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, AgentError> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.ch.next_frame().await? {
                Some(f) if f.ty == FrameType::Stdout => return Ok(Some(f.payload)),
                Some(f) if f.ty == FrameType::Exit => {
                    self.done = true;
                    return Ok(None);
                }
                Some(f) if f.ty == FrameType::Error => return Err(AgentError::Remote(f.text())),
                Some(_) => continue,
                None => return Err(AgentError::Unexpected("end of stream inside a file".into())),
            }
        }
    }

    /// Reads the rest of the content into memory.
    pub async fn read_all(mut self) -> Result<Vec<u8>, AgentError> {
        let mut out = Vec::with_capacity(self.header.size.min(64 << 20) as usize);
        while let Some(c) = self.next_chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}

impl AgentClient {
    /// Starts reading a file (whole, or lines when `limit`/`max_bytes` are set).
    pub async fn read_file(&self, req: &FileReadRequest) -> Result<FileReader, AgentError> {
        let mut ch = self
            .request(&json_frame(FrameType::FileReadReq, req))
            .await?;
        match ch.next_frame().await? {
            Some(f) if f.ty == FrameType::FileReadResp => Ok(FileReader {
                header: parse_json(&f)?,
                ch,
                done: false,
            }),
            Some(f) if f.ty == FrameType::Error => Err(AgentError::Remote(f.text())),
            Some(f) => Err(AgentError::Unexpected(f.ty.to_string())),
            None => Err(AgentError::Unexpected("end of stream".into())),
        }
    }

    /// Writes `size` bytes from `src` to `path` atomically with permission bits `mode`.
    pub async fn write_file<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        mode: u32,
        size: u64,
        mut src: R,
    ) -> Result<(), AgentError> {
        let req = FileWriteRequest {
            path: path.into(),
            mode: format!("{mode:04o}"),
            size: size as i64,
        };
        let mut ch = self
            .request(&json_frame(FrameType::FileWriteReq, &req))
            .await?;
        let mut sent = 0u64;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        let mut upload_err = None;
        while sent < size {
            let want = ((size - sent) as usize).min(buf.len());
            let n = src
                .read(&mut buf[..want])
                .await
                .map_err(|e| AgentError::Unexpected(format!("reading upload source: {e}")))?;
            if n == 0 {
                return Err(AgentError::Unexpected(format!(
                    "upload source ended after {sent} of {size} bytes"
                )));
            }
            // lohar may refuse early (too large, bad path) and close: its answer says why.
            if let Err(e) = ch.writer().stdin(&buf[..n]).await {
                upload_err = Some(e);
                break;
            }
            sent += n as u64;
        }
        match ch.next_frame().await {
            Ok(Some(f)) if f.ty == FrameType::FileWriteResp => Ok(()),
            Ok(Some(f)) if f.ty == FrameType::Error => Err(AgentError::Remote(f.text())),
            Ok(Some(f)) => Err(AgentError::Unexpected(f.ty.to_string())),
            Ok(None) => {
                Err(upload_err.unwrap_or_else(|| AgentError::Unexpected("end of stream".into())))
            }
            Err(e) => Err(upload_err.unwrap_or(e)),
        }
    }

    /// Writes a byte slice atomically.
    pub async fn write_file_bytes(
        &self,
        path: &str,
        mode: u32,
        data: &[u8],
    ) -> Result<(), AgentError> {
        self.write_file(path, mode, data.len() as u64, data).await
    }

    /// Reads a whole file into memory.
    pub async fn read_file_all(&self, path: &str) -> Result<Vec<u8>, AgentError> {
        let req = FileReadRequest {
            path: path.into(),
            ..Default::default()
        };
        self.read_file(&req).await?.read_all().await
    }
}
