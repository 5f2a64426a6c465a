//! The host ↔ guest (lohar) wire protocol of bhatti.
//!
//! A frame is `u32 BE length | u8 type | payload`, where `length = 1 + payload.len()`, at most
//! [`MAX_FRAME_LEN`], and never zero. Everything here is pure: the codec works on byte buffers,
//! and the optional `tokio` feature adds helpers over any `AsyncRead`/`AsyncWrite`.

pub mod codec;
pub mod error;
pub mod frame;
pub mod msg;

#[cfg(feature = "tokio")]
pub mod io;

pub use codec::{encode_frame, encode_into, FrameDecoder};
pub use error::ProtoError;
pub use frame::{Frame, FrameType, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN};
