//! The Connect protocol, JSON codec only: unary calls are plain JSON bodies, server streams are
//! a sequence of envelopes (`u8 flags | u32 BE length | JSON`) ended by an end-of-stream
//! envelope (flag 0x02) that carries `{}` or `{"error": …}`. Errors of unary calls are an HTTP
//! status with `{"code": "<name>", "message": …}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// Flag of an end-of-stream envelope.
pub const END_STREAM: u8 = 0x02;
/// Flag of a compressed envelope (not supported: the SDKs never compress requests).
pub const COMPRESSED: u8 = 0x01;
/// Largest request envelope accepted.
pub const MAX_ENVELOPE: usize = 4 * 1024 * 1024;

/// Connect error codes (the subset this facade produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The client cancelled.
    Canceled,
    /// Bad request.
    InvalidArgument,
    /// A deadline passed (e.g. a process's `Connect-Timeout-Ms`).
    DeadlineExceeded,
    /// No such thing.
    NotFound,
    /// Already there.
    AlreadyExists,
    /// Not allowed.
    PermissionDenied,
    /// Wrong state for the operation.
    FailedPrecondition,
    /// Not implemented by this facade.
    Unimplemented,
    /// Something broke inside.
    Internal,
    /// The sandbox cannot be reached.
    Unavailable,
    /// No valid credentials.
    Unauthenticated,
    /// Too much.
    ResourceExhausted,
}

impl Code {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Unauthenticated => "unauthenticated",
            Code::ResourceExhausted => "resource_exhausted",
        }
    }

    /// The HTTP status of a unary error with this code (Connect's mapping).
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// A Connect error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The code.
    pub code: Code,
    /// Human-readable message.
    pub message: String,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// The JSON error object.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code.name(), "message": self.message})
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        (
            self.code.http_status(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.json().to_string(),
        )
            .into_response()
    }
}

/// One envelope.
pub fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(flags);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// A message envelope of `msg` as JSON.
pub fn message<T: Serialize>(msg: &T) -> Bytes {
    let json = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    envelope(0, &json)
}

/// The end-of-stream envelope: `{}` on success, else `{"error": …}`.
pub fn end_stream(err: Option<&RpcError>) -> Bytes {
    let body = match err {
        None => serde_json::json!({}),
        Some(e) => serde_json::json!({"error": e.json()}),
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

/// The payload of the first envelope of a streaming request body.
pub fn first_envelope(body: &[u8]) -> Result<&[u8], RpcError> {
    if body.len() < 5 {
        return Err(RpcError::new(
            Code::InvalidArgument,
            "request is not a Connect envelope",
        ));
    }
    if body[0] & COMPRESSED != 0 {
        return Err(RpcError::new(
            Code::Unimplemented,
            "compressed requests are not supported",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len > MAX_ENVELOPE || body.len() < 5 + len {
        return Err(RpcError::new(
            Code::InvalidArgument,
            "truncated or oversized Connect envelope",
        ));
    }
    Ok(&body[5..5 + len])
}

/// Parses a JSON request message; an empty body is `{}`.
pub fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, RpcError> {
    let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        json
    };
    serde_json::from_slice(json)
        .map_err(|e| RpcError::new(Code::InvalidArgument, format!("invalid request: {e}")))
}

/// `Connect-Timeout-Ms` as a duration (absent, zero or garbage: none).
pub fn timeout_ms(h: &axum::http::HeaderMap) -> Option<std::time::Duration> {
    h.get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v > 0)
        .map(std::time::Duration::from_millis)
}

/// Protobuf-JSON helpers: bytes are base64, 64-bit integers may come as strings.
pub mod pbjson {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer};

    /// Base64 of bytes.
    pub fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    /// Bytes from base64 (standard or URL-safe, padded or not).
    pub fn from_b64(s: &str) -> Option<Vec<u8>> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        STANDARD
            .decode(s)
            .or_else(|_| STANDARD_NO_PAD.decode(s))
            .or_else(|_| URL_SAFE.decode(s))
            .or_else(|_| URL_SAFE_NO_PAD.decode(s))
            .ok()
    }

    /// A number that may be sent as a JSON number or string.
    pub fn num<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum N {
            U(u64),
            S(String),
        }
        Ok(match Option::<N>::deserialize(d)? {
            None => None,
            Some(N::U(n)) => Some(n),
            Some(N::S(s)) => s.parse().ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let e = envelope(0, b"{\"a\":1}");
        assert_eq!(&e[..5], &[0, 0, 0, 0, 7]);
        assert_eq!(first_envelope(&e).unwrap(), b"{\"a\":1}");
        let end = end_stream(None);
        assert_eq!(end[0], END_STREAM);
        assert_eq!(&end[5..], b"{}");
        let err = end_stream(Some(&RpcError::new(Code::NotFound, "gone")));
        let v: serde_json::Value = serde_json::from_slice(&err[5..]).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "gone");
    }

    #[test]
    fn bad_envelopes() {
        assert!(first_envelope(b"").is_err());
        assert!(first_envelope(&[0, 0, 0, 0, 9, b'{']).is_err());
        assert_eq!(
            first_envelope(&[1, 0, 0, 0, 0]).unwrap_err().code,
            Code::Unimplemented
        );
        assert!(first_envelope(&[0, 0xff, 0, 0, 0]).is_err());
    }

    #[test]
    fn codes_and_statuses() {
        assert_eq!(Code::NotFound.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(Code::Unimplemented.http_status().as_u16(), 501);
        assert_eq!(Code::DeadlineExceeded.name(), "deadline_exceeded");
        let r = RpcError::new(Code::InvalidArgument, "x").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn parsing() {
        #[derive(serde::Deserialize, Default)]
        struct M {
            #[serde(default, deserialize_with = "pbjson::num")]
            n: Option<u64>,
        }
        assert_eq!(parse::<M>(b"").unwrap().n, None);
        assert_eq!(parse::<M>(br#"{"n":"12"}"#).unwrap().n, Some(12));
        assert_eq!(parse::<M>(br#"{"n":12}"#).unwrap().n, Some(12));
        assert!(parse::<M>(b"{").is_err());
        assert_eq!(
            pbjson::from_b64(&pbjson::b64(b"\x00\xff")).unwrap(),
            b"\x00\xff"
        );
        let mut h = axum::http::HeaderMap::new();
        h.insert("connect-timeout-ms", "1500".parse().unwrap());
        assert_eq!(timeout_ms(&h), Some(std::time::Duration::from_millis(1500)));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_body_is_an_envelope_or_a_clean_error(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = first_envelope(&body) {
                prop_assert!(p.len() + 5 <= body.len());
            }
        }

        #[test]
        fn envelopes_round_trip(flags in 0u8..1, payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let e = envelope(flags * 2, &payload);
            prop_assert_eq!(first_envelope(&e).unwrap(), &payload[..]);
        }
    }
}
