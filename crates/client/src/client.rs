//! The client core: base URL, bearer token, request plumbing and error mapping. Resource
//! methods live in one file per resource (`sandboxes.rs`, `secrets.rs`, …).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bhatti_api::{ErrorBody, Health, X_BHATTI_MIN_CLI, X_BHATTI_VERSION};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;

use crate::ClientError;

/// A client of one bhatti daemon, authenticated with one API key.
///
/// Cheap to clone (the connection pool and the observed server headers are shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    base_str: String,
    token: Option<String>,
    seen: Arc<Mutex<Seen>>,
}

/// Headers observed on responses, and the timing of the latest request.
#[derive(Debug, Default)]
struct Seen {
    server_version: Option<String>,
    min_cli: Option<String>,
    last: Option<Timing>,
}

/// How long the latest request took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From sending the request (including connection setup) to the response headers.
    pub server: Duration,
    /// Reading the response body.
    pub transfer: Duration,
    /// Both.
    pub total: Duration,
}

impl Client {
    /// A client of the daemon at `base_url` (`http://host:port`, optionally with a path prefix),
    /// sending `Authorization: Bearer <token>` when a non-empty token is given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let base = Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("must start with http:// or https://"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("bhatti-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ClientError::Transport {
                url: trimmed.to_string(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            base_str: trimmed.to_string(),
            token: token.filter(|t| !t.is_empty()),
            seen: Arc::default(),
        })
    }

    /// The daemon's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_str
    }

    /// The API key, if any (for connections reqwest does not make, e.g. WebSockets).
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether an API key is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The server version from the `X-Bhatti-Version` header of the latest response that had
    /// one (every daemon response does); `None` before the first response.
    pub fn server_version(&self) -> Option<String> {
        self.seen.lock().ok()?.server_version.clone()
    }

    /// The minimum CLI version the server asks for (`X-Bhatti-Min-CLI`), if it sent one.
    pub fn min_cli_version(&self) -> Option<String> {
        self.seen.lock().ok()?.min_cli.clone()
    }

    /// Timing of the latest request whose response was received.
    pub fn last_timing(&self) -> Option<Timing> {
        self.seen.lock().ok()?.last
    }

    /// `GET /health` (unauthenticated on the server side; the token is sent anyway).
    pub async fn health(&self) -> Result<Health, ClientError> {
        let url = self.url(&["health"]);
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// Decodes a 2xx JSON body (and records how long reading it took).
    pub(crate) async fn decode<T: DeserializeOwned>(
        &self,
        resp: Response,
        url: &Url,
    ) -> Result<T, ClientError> {
        let started = Instant::now();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Decode {
            url: url.to_string(),
            reason: format!("reading body: {e}"),
        })?;
        if let Ok(mut seen) = self.seen.lock() {
            if let Some(t) = seen.last.as_mut() {
                t.transfer = started.elapsed();
                t.total = t.server + t.transfer;
            }
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// The URL of an API path given as segments (each is percent-encoded as one segment).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the auth header set.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request, records the `X-Bhatti-*` headers, and turns non-2xx answers into
    /// [`ClientError::Api`].
    pub(crate) async fn send(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        let req = rb.build().map_err(|source| ClientError::Transport {
            url: self.base_str.clone(),
            source,
        })?;
        let url = req.url().to_string();
        let started = Instant::now();
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source: source.without_url(),
            })?;
        self.observe(&resp, started.elapsed());
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(api_error(resp).await)
        }
    }

    fn observe(&self, resp: &Response, server: Duration) {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let version = header(X_BHATTI_VERSION);
        let min_cli = header(X_BHATTI_MIN_CLI);
        if let Ok(mut seen) = self.seen.lock() {
            seen.last = Some(Timing {
                server,
                transfer: Duration::ZERO,
                total: server,
            });
            if version.is_some() {
                seen.server_version = version;
            }
            if min_cli.is_some() {
                seen.min_cli = min_cli;
            }
        }
    }
}

/// Builds [`ClientError::Api`] from an error response: the `{"error": …}` body when there is
/// one, else the raw body text, else the status text.
async fn api_error(resp: Response) -> ClientError {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let (message, request_id) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => (b.error, b.request_id),
        Err(_) => {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            if text.is_empty() {
                (
                    status.canonical_reason().unwrap_or("error").to_lowercase(),
                    None,
                )
            } else {
                (text, None)
            }
        }
    };
    ClientError::Api {
        status: status.as_u16(),
        message,
        request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_http_urls() {
        assert!(Client::new("localhost:8080", None).is_err());
        assert!(Client::new("ftp://x", None).is_err());
        assert!(Client::new("http://x?y=1", None).is_err());
        assert!(Client::new("http://127.0.0.1:8080/", None).is_ok());
    }

    #[test]
    fn builds_urls_from_segments() {
        let c = Client::new("http://h:1/", None).unwrap();
        assert_eq!(c.base_url(), "http://h:1");
        assert_eq!(
            c.url(&["sandboxes", "dev"]).as_str(),
            "http://h:1/sandboxes/dev"
        );
        let c = Client::new("https://h/prefix/", None).unwrap();
        assert_eq!(
            c.url(&["secrets", "A B/c"]).as_str(),
            "https://h/prefix/secrets/A%20B%2Fc"
        );
    }

    #[test]
    fn empty_token_is_no_token() {
        assert!(!Client::new("http://h", Some(String::new()))
            .unwrap()
            .has_token());
        assert!(Client::new("http://h", Some("t".into()))
            .unwrap()
            .has_token());
    }
}
