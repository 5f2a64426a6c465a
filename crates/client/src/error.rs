//! The one error type of the client.

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with a non-2xx status. `message` is the body's `error` field (or the
    /// raw body when it was not the usual `{"error": …}` shape).
    #[error("{}: {message}", status_text(*status))]
    Api {
        /// HTTP status code.
        status: u16,
        /// The server's message.
        message: String,
        /// `req_…` id of a sanitised internal error, for the operator's logs.
        request_id: Option<String>,
    },
    /// The request never got an HTTP answer (connection refused, DNS, TLS, timeout …).
    #[error("cannot reach {url}: {}", root_cause(source))]
    Transport {
        /// The URL that was requested.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The base URL given to [`crate::Client::new`] is not a usable http(s) URL.
    #[error("invalid API URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The daemon answered 2xx but the body was not what the API promises.
    #[error("unexpected response from {url}: {reason}")]
    Decode {
        /// The URL that was requested.
        url: String,
        /// What could not be decoded.
        reason: String,
    },
    /// A WebSocket could not be opened or broke.
    #[error("websocket {url}: {reason}")]
    WebSocket {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message, for API errors.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            ClientError::Api { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// The innermost cause of an error: for transport failures the useful part
/// (`Connection refused (os error 111)`, not `error sending request`).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The canonical reason phrase of a status code (`404` → `Not Found`), as Go's
/// `http.StatusText` renders it.
pub fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_renders_status_text_then_message() {
        let e = ClientError::Api {
            status: 404,
            message: "not found".into(),
            request_id: None,
        };
        assert_eq!(e.to_string(), "Not Found: not found");
        let e = ClientError::Api {
            status: 429,
            message: "rate limit exceeded".into(),
            request_id: None,
        };
        assert_eq!(e.to_string(), "Too Many Requests: rate limit exceeded");
    }

    #[test]
    fn unknown_status_still_renders() {
        assert_eq!(status_text(599), "HTTP 599");
    }
}
