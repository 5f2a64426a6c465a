//! Typed payloads of the frames. JSON payloads use the original bhatti's field names.

mod activity;
mod exec;
mod file;
mod forward;
mod fs;

pub use activity::Activity;
pub use exec::{
    decode_exit, decode_resize, decode_signal, encode_exit, encode_resize, encode_signal,
    DetachReply, ExecKillRequest, ExecRequest, ProcStarted, SessionInfo, WindowSize,
};
pub use file::{
    FileInfo, FileReadRequest, FileReadResponse, FileWriteRequest, PathRequest, StatusResponse,
};
pub use forward::{FwdRequest, FwdResponse};
pub use fs::{FsEntry, FsOp, FsRequest, FsResponse, WatchEvent, WatchRequest};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::ProtoError;
use crate::frame::{Frame, FrameType};

/// Serialises a JSON payload into a frame.
pub fn json_frame<T: Serialize>(ty: FrameType, value: &T) -> Frame {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no custom impls.
    let bytes = serde_json::to_vec(value).expect("protocol payloads always serialise");
    Frame::new(ty, bytes)
}

/// Parses the JSON payload of a frame, naming the frame type in the error.
pub fn parse_json<T: DeserializeOwned>(frame: &Frame) -> Result<T, ProtoError> {
    serde_json::from_slice(&frame.payload).map_err(|e| ProtoError::bad_payload(frame.ty.name(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_frame() {
        let f = Frame::new(FrameType::ExecReq, &b"{not json"[..]);
        let err = parse_json::<ExecRequest>(&f).unwrap_err().to_string();
        assert!(err.contains("ExecReq"), "{err}");
    }
}
