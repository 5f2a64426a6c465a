//! The per-sandbox token check every connection passes first.

use std::time::Duration;

use bhatti_proto::{Frame, FrameType};
use subtle::ConstantTimeEq;

/// The host must present the token within this time.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `frame` is an AUTH frame carrying exactly `token` (constant-time comparison).
pub fn check(frame: &Frame, token: &str) -> bool {
    frame.ty == FrameType::Auth && bool::from(frame.payload.as_ref().ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_token_passes() {
        assert!(check(&Frame::new(FrameType::Auth, &b"tok"[..]), "tok"));
        assert!(!check(&Frame::new(FrameType::Auth, &b"tok2"[..]), "tok"));
        assert!(!check(&Frame::new(FrameType::Auth, &b"to"[..]), "tok"));
        assert!(!check(&Frame::new(FrameType::Stdin, &b"tok"[..]), "tok"));
    }
}
