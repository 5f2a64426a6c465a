//! Errors of the wire protocol.

use thiserror::Error;

/// Everything that can go wrong while encoding or decoding frames and payloads.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The length field (or a frame to be written) exceeds the protocol maximum.
    #[error("frame too large: length {len} exceeds maximum {max}")]
    FrameTooLarge {
        /// The offending length (type byte + payload).
        len: usize,
        /// The protocol maximum.
        max: usize,
    },
    /// A length field of zero: every frame carries at least its type byte.
    #[error("invalid frame: zero length")]
    EmptyFrame,
    /// The stream ended in the middle of a frame.
    #[error("unexpected end of stream inside a frame")]
    UnexpectedEof,
    /// A payload did not have the shape its frame type requires.
    #[error("bad {ty} payload: {reason}")]
    BadPayload {
        /// Name of the frame type whose payload was malformed.
        ty: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing the underlying stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// Convenience constructor for [`ProtoError::BadPayload`].
    pub fn bad_payload(ty: &'static str, reason: impl std::fmt::Display) -> Self {
        ProtoError::BadPayload {
            ty,
            reason: reason.to_string(),
        }
    }
}
