//! Feeds arbitrary bytes, in arbitrary chunkings, to the frame decoder and the payload parsers.
//! Invariants: no panic; every decoded frame's payload is within the maximum; re-encoding a
//! decoded frame yields exactly the bytes it was decoded from.
#![no_main]

use bhatti_proto::msg::{decode_exit, decode_resize, ExecRequest, FileReadRequest, SessionInfo};
use bhatti_proto::{encode_frame, FrameDecoder, MAX_PAYLOAD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks a chunk size so that incremental decoding is exercised.
    let chunk = (data[0] as usize % 17) + 1;
    let body = &data[1..];
    let mut d = FrameDecoder::new();
    let mut offset = 0usize;
    'outer: for c in body.chunks(chunk) {
        d.feed(c);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= MAX_PAYLOAD_LEN);
                    let enc = encode_frame(f.ty, &f.payload).expect("decoded frame re-encodes");
                    assert_eq!(&enc[..], &body[offset..offset + enc.len()]);
                    offset += enc.len();
                    let _ = decode_exit(&f.payload);
                    let _ = decode_resize(&f.payload);
                    let _ = serde_json::from_slice::<ExecRequest>(&f.payload);
                    let _ = serde_json::from_slice::<FileReadRequest>(&f.payload);
                    let _ = serde_json::from_slice::<SessionInfo>(&f.payload);
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
});
