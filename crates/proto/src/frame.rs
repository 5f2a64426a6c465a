//! Frame types and the frame value.

use bytes::Bytes;

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;
/// Maximum value of the length field (type byte + payload): 1 MiB.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Maximum payload of one frame.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - 1;

macro_rules! frame_types {
    ($( $(#[$doc:meta])* $name:ident = $code:literal ),* $(,)?) => {
        /// The type byte of a frame. Unknown codes are kept as [`FrameType::Other`] so that
        /// readers can skip frames from newer peers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FrameType {
            $( $(#[$doc])* $name, )*
            /// A code this version does not know.
            Other(u8),
        }

        impl FrameType {
            /// Every known frame type, in code order.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$name),*];

            /// The wire code.
            pub const fn code(self) -> u8 {
                match self {
                    $( FrameType::$name => $code, )*
                    FrameType::Other(c) => c,
                }
            }

            /// Maps a wire code to a type; unknown codes become [`FrameType::Other`].
            pub const fn from_code(code: u8) -> FrameType {
                match code {
                    $( $code => FrameType::$name, )*
                    c => FrameType::Other(c),
                }
            }

            /// A short upper-case name, as in the protocol reference.
            pub const fn name(self) -> &'static str {
                match self {
                    $( FrameType::$name => stringify!($name), )*
                    FrameType::Other(_) => "OTHER",
                }
            }
        }
    };
}

frame_types! {
    /// host→guest: raw bytes for the process's stdin.
    Stdin = 0x01,
    /// guest→host: raw stdout bytes.
    Stdout = 0x02,
    /// guest→host: raw stderr bytes.
    Stderr = 0x03,
    /// host→guest: `u16 rows BE, u16 cols BE`.
    Resize = 0x04,
    /// guest→host: `i32 exit code BE`.
    Exit = 0x05,
    /// either way: a UTF-8 error message.
    Error = 0x06,
    /// host→guest: kill the process (group) of this connection.
    Kill = 0x07,
    /// host→guest: JSON [`crate::msg::ExecRequest`].
    ExecReq = 0x10,
    /// host→guest: the sandbox token.
    Auth = 0x11,
    /// host→guest: JSON [`crate::msg::FwdRequest`].
    FwdReq = 0x20,
    /// guest→host: JSON [`crate::msg::FwdResponse`].
    FwdResp = 0x21,
    /// host→guest: list sessions (empty).
    ExecListReq = 0x30,
    /// guest→host: JSON array of [`crate::msg::SessionInfo`].
    ExecListResp = 0x31,
    /// host→guest: JSON [`crate::msg::ExecKillRequest`].
    ExecKill = 0x32,
    /// guest→host: JSON [`crate::msg::SessionInfo`].
    SessionInfo = 0x33,
    /// host→guest: activity query (empty).
    ActivityReq = 0x40,
    /// guest→host: JSON [`crate::msg::Activity`].
    ActivityResp = 0x41,
    /// host→guest: JSON [`crate::msg::FileReadRequest`].
    FileReadReq = 0x50,
    /// guest→host: JSON [`crate::msg::FileReadResponse`], then STDOUT frames, then EXIT(0).
    FileReadResp = 0x51,
    /// host→guest: JSON [`crate::msg::FileWriteRequest`], then STDIN frames totalling `size`.
    FileWriteReq = 0x52,
    /// guest→host: JSON [`crate::msg::StatusResponse`].
    FileWriteResp = 0x53,
    /// host→guest: JSON [`crate::msg::PathRequest`].
    FileStatReq = 0x54,
    /// guest→host: JSON [`crate::msg::FileInfo`].
    FileStatResp = 0x55,
    /// host→guest: JSON [`crate::msg::PathRequest`].
    FileLsReq = 0x56,
    /// guest→host: JSON array of [`crate::msg::FileInfo`].
    FileLsResp = 0x57,
    /// in-guest only: systemctl shim request.
    SystemctlReq = 0x60,
    /// in-guest only: systemctl shim response.
    SystemctlResp = 0x61,
    // Protocol v2 additions (0x70–0x7f), used by the E2B facade. A v1 lohar answers them with
    // "unexpected frame type", and never sends them.
    /// guest→host: JSON [`crate::msg::ProcStarted`], the first frame of an exec whose request
    /// set `report_pid` (v2).
    ProcStarted = 0x70,
    /// host→guest: `i32 signal number BE` for the exec's process group (v2).
    Signal = 0x71,
    /// host→guest: JSON [`crate::msg::FsRequest`] (v2).
    FsReq = 0x72,
    /// guest→host: JSON [`crate::msg::FsResponse`] (v2).
    FsResp = 0x73,
    /// host→guest: JSON [`crate::msg::WatchRequest`]; lohar then streams WATCH_EVENT frames
    /// until the host closes the connection (v2).
    WatchReq = 0x74,
    /// guest→host: JSON [`crate::msg::WatchEvent`] (v2).
    WatchEvent = 0x75,
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameType::Other(c) => write!(f, "0x{c:02x}"),
            t => write!(f, "{}(0x{:02x})", t.name(), t.code()),
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's type.
    pub ty: FrameType,
    /// The payload (may be empty).
    pub payload: Bytes,
}

impl Frame {
    /// Builds a frame from a type and payload bytes.
    pub fn new(ty: FrameType, payload: impl Into<Bytes>) -> Frame {
        Frame {
            ty,
            payload: payload.into(),
        }
    }

    /// A frame with an empty payload.
    pub fn empty(ty: FrameType) -> Frame {
        Frame {
            ty,
            payload: Bytes::new(),
        }
    }

    /// The payload as (lossy) UTF-8, for ERROR frames and logs.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for t in FrameType::ALL {
            assert!(seen.insert(t.code()), "duplicate code {t}");
            assert_eq!(FrameType::from_code(t.code()), *t);
        }
        assert_eq!(FrameType::ALL.len(), 33);
    }

    #[test]
    fn reference_codes() {
        assert_eq!(FrameType::Stdin.code(), 0x01);
        assert_eq!(FrameType::Kill.code(), 0x07);
        assert_eq!(FrameType::ExecReq.code(), 0x10);
        assert_eq!(FrameType::Auth.code(), 0x11);
        assert_eq!(FrameType::FwdResp.code(), 0x21);
        assert_eq!(FrameType::SessionInfo.code(), 0x33);
        assert_eq!(FrameType::ActivityResp.code(), 0x41);
        assert_eq!(FrameType::FileLsResp.code(), 0x57);
        assert_eq!(FrameType::from_code(0x99), FrameType::Other(0x99));
        // v2 additions live in their own range; v1 codes are unchanged above.
        assert_eq!(FrameType::ProcStarted.code(), 0x70);
        assert_eq!(FrameType::Signal.code(), 0x71);
        assert_eq!(FrameType::WatchEvent.code(), 0x75);
    }
}
