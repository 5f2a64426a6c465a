//! `/sandboxes/:id/files`: streamed read, write with an exact length, stat, ls.

use bhatti_api::ops::{X_FILE_ISDIR, X_FILE_MODE, X_FILE_SIZE};
use bhatti_api::{FileEntry, StatusResponse};
use reqwest::{Method, Response};

use crate::{Client, ClientError};

/// A file being downloaded.
#[derive(Debug)]
pub struct FileDownload {
    /// Size of the whole file (`X-File-Size`).
    pub size: u64,
    resp: Response,
}

impl FileDownload {
    /// The next chunk of content; `Ok(None)` at the end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ClientError> {
        self.resp.chunk().await.map_err(|e| ClientError::Decode {
            url: self.resp.url().to_string(),
            reason: format!("download broken: {e}"),
        })
    }
}

/// `HEAD` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    /// Bytes.
    pub size: u64,
    /// Permission bits, `%04o`.
    pub mode: String,
    /// A directory.
    pub is_dir: bool,
}

impl Client {
    fn files_url(&self, id_or_name: &str, pairs: &[(&str, &str)]) -> reqwest::Url {
        let mut url = self.url(&["sandboxes", id_or_name, "files"]);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// `GET …/files?path=`: starts downloading a file.
    pub async fn read_file(
        &self,
        id_or_name: &str,
        path: &str,
    ) -> Result<FileDownload, ClientError> {
        let url = self.files_url(id_or_name, &[("path", path)]);
        let resp = self.send(self.request(Method::GET, url)).await?;
        let size = header_u64(&resp, X_FILE_SIZE).unwrap_or(0);
        Ok(FileDownload { size, resp })
    }

    /// `PUT …/files?path=[&mode=]`: writes exactly `len` bytes from `body` atomically.
    pub async fn write_file(
        &self,
        id_or_name: &str,
        path: &str,
        mode: Option<&str>,
        body: impl Into<reqwest::Body>,
        len: u64,
    ) -> Result<StatusResponse, ClientError> {
        let mut pairs = vec![("path", path)];
        if let Some(m) = mode {
            pairs.push(("mode", m));
        }
        let url = self.files_url(id_or_name, &pairs);
        let rb = self
            .request(Method::PUT, url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        let resp = self.send(rb).await?;
        self.decode(resp, &url).await
    }

    /// `GET …/files?path=&ls=true`: a directory listing (capped at 10 000 entries + sentinel).
    pub async fn list_dir(
        &self,
        id_or_name: &str,
        path: &str,
    ) -> Result<Vec<FileEntry>, ClientError> {
        let url = self.files_url(id_or_name, &[("path", path), ("ls", "true")]);
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `HEAD …/files?path=`: size, mode, directory or not.
    pub async fn stat_file(&self, id_or_name: &str, path: &str) -> Result<FileStat, ClientError> {
        let url = self.files_url(id_or_name, &[("path", path)]);
        let resp = self.send(self.request(Method::HEAD, url)).await?;
        Ok(FileStat {
            size: header_u64(&resp, X_FILE_SIZE).unwrap_or(0),
            mode: header(&resp, X_FILE_MODE).unwrap_or_default(),
            is_dir: header(&resp, X_FILE_ISDIR).as_deref() == Some("true"),
        })
    }
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn header_u64(resp: &Response, name: &str) -> Option<u64> {
    header(resp, name).and_then(|v| v.parse().ok())
}
