//! `GET /sandboxes/:id/ws`: an interactive shell over a WebSocket.
//!
//! [`Client::shell`] connects, waits for the server's `{"type":"session"}` message and returns
//! the session id with independent writer and reader halves.

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Client, ClientError};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Sends keystrokes and resizes.
pub struct ShellWriter {
    tx: SplitSink<Ws, Message>,
    url: String,
}

/// Receives terminal output.
pub struct ShellReader {
    rx: SplitStream<Ws>,
    url: String,
}

/// What the server sends after the session message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellEvent {
    /// Terminal output.
    Output(Bytes),
    /// A text message (errors such as `shell error: …`).
    Text(String),
    /// The server closed the socket; code 1000 means the shell exited.
    Closed {
        /// Close code, if any.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
}

fn ws_err(url: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::WebSocket {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

impl Client {
    /// Opens a shell: `session` attaches to that session, `new` forces a new one; otherwise the
    /// newest detached shell is reattached or a new one starts. Returns the session id.
    pub async fn shell(
        &self,
        id_or_name: &str,
        session: Option<&str>,
        new: bool,
    ) -> Result<(String, ShellWriter, ShellReader), ClientError> {
        let mut url = self.url(&["sandboxes", id_or_name, "ws"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = session {
                q.append_pair("session", s);
            }
            if new {
                q.append_pair("new", "true");
            }
        }
        let ws_scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let _ = url.set_scheme(ws_scheme);
        let url_s = url.to_string();
        let mut req = url_s
            .as_str()
            .into_client_request()
            .map_err(|e| ws_err(&url_s, e))?;
        if let Some(t) = self.token() {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|e| ws_err(&url_s, e))?;
            req.headers_mut().insert("authorization", v);
        }
        let (ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(x) => x,
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().as_deref().unwrap_or_default();
                let message = serde_json::from_slice::<bhatti_api::ErrorBody>(body)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
                return Err(ClientError::Api {
                    status,
                    message,
                    request_id: None,
                });
            }
            Err(e) => return Err(ws_err(&url_s, e)),
        };
        let (tx, mut rx) = ws.split();
        let session_id = loop {
            match rx.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    match (v["type"].as_str(), v["session_id"].as_str()) {
                        (Some("session"), Some(id)) => break id.to_string(),
                        _ => return Err(ws_err(&url_s, t.as_str())),
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(f))) => {
                    return Err(ws_err(
                        &url_s,
                        format!(
                            "closed before the session started{}",
                            f.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                        ),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ws_err(&url_s, e)),
                None => return Err(ws_err(&url_s, "closed before the session started")),
            }
        };
        Ok((
            session_id,
            ShellWriter {
                tx,
                url: url_s.clone(),
            },
            ShellReader { rx, url: url_s },
        ))
    }
}

impl ShellWriter {
    /// Sends keystrokes.
    pub async fn input(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.tx
            .send(Message::Binary(Bytes::copy_from_slice(data)))
            .await
            .map_err(|e| ws_err(&self.url, e))
    }

    /// Resizes the terminal.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), ClientError> {
        let m = serde_json::json!({"type": "resize", "rows": rows, "cols": cols}).to_string();
        self.tx
            .send(Message::Text(m.into()))
            .await
            .map_err(|e| ws_err(&self.url, e))
    }

    /// Closes the socket (detaches; the shell keeps running).
    pub async fn close(&mut self) {
        let _ = self.tx.send(Message::Close(None)).await;
        let _ = self.tx.close().await;
    }
}

impl ShellReader {
    /// The next event; `Ok(None)` when the connection ended without a close frame.
    pub async fn next(&mut self) -> Result<Option<ShellEvent>, ClientError> {
        loop {
            return match self.rx.next().await {
                Some(Ok(Message::Binary(b))) => Ok(Some(ShellEvent::Output(b))),
                Some(Ok(Message::Text(t))) => Ok(Some(ShellEvent::Text(t.as_str().to_string()))),
                Some(Ok(Message::Close(f))) => Ok(Some(ShellEvent::Closed {
                    code: f.as_ref().map(|f| u16::from(f.code)),
                    reason: f.map(|f| f.reason.to_string()).unwrap_or_default(),
                })),
                Some(Ok(_)) => continue,
                Some(Err(e)) => Err(ws_err(&self.url, e)),
                None => Ok(None),
            };
        }
    }
}
