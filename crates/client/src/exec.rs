//! `POST /sandboxes/:id/exec`: buffered, streamed (NDJSON) and detached.

use bhatti_api::{ExecEvent, ExecRequest, ExecResult, NDJSON};
use reqwest::{Method, Response, Url};

use crate::{Client, ClientError};

impl Client {
    /// Runs a command and waits for its result (buffered; also for `detach: true`, which
    /// returns at once with `pid`/`output_file`).
    pub async fn exec(
        &self,
        id_or_name: &str,
        req: &ExecRequest,
    ) -> Result<ExecResult, ClientError> {
        let url = self.url(&["sandboxes", id_or_name, "exec"]);
        let resp = self
            .send(self.request(Method::POST, url.clone()).json(req))
            .await?;
        self.decode(resp, &url).await
    }

    /// Runs a command and returns its events as they are produced.
    pub async fn exec_stream(
        &self,
        id_or_name: &str,
        req: &ExecRequest,
    ) -> Result<ExecStream, ClientError> {
        let url = self.url(&["sandboxes", id_or_name, "exec"]);
        let resp = self
            .send(
                self.request(Method::POST, url.clone())
                    .header(reqwest::header::ACCEPT, NDJSON)
                    .json(req),
            )
            .await?;
        Ok(ExecStream {
            resp,
            url,
            buf: Vec::new(),
            done: false,
        })
    }
}

/// The events of a streamed exec.
#[derive(Debug)]
pub struct ExecStream {
    resp: Response,
    url: Url,
    buf: Vec<u8>,
    done: bool,
}

impl ExecStream {
    /// The next event; `Ok(None)` when the stream ended.
    pub async fn next_event(&mut self) -> Result<Option<ExecEvent>, ClientError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| self.decode_err(e.to_string()));
            }
            if self.done {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return serde_json::from_slice(&rest)
                    .map(Some)
                    .map_err(|e| self.decode_err(e.to_string()));
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                Ok(None) => self.done = true,
                Err(e) => return Err(self.decode_err(format!("stream broken: {e}"))),
            }
        }
    }

    fn decode_err(&self, reason: String) -> ClientError {
        ClientError::Decode {
            url: self.url.to_string(),
            reason,
        }
    }
}
