//! Frame encoding and incremental decoding over byte buffers (no I/O).

use bytes::{Buf, BufMut, BytesMut};

use crate::error::ProtoError;
use crate::frame::{Frame, FrameType, HEADER_LEN, MAX_FRAME_LEN};

/// Appends one encoded frame to `dst`. Fails (and leaves `dst` untouched) if the payload is too large.
pub fn encode_into(ty: FrameType, payload: &[u8], dst: &mut BytesMut) -> Result<(), ProtoError> {
    let len = payload.len() + 1;
    if len > MAX_FRAME_LEN {
        return Err(ProtoError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    dst.reserve(HEADER_LEN + len);
    // len <= MAX_FRAME_LEN (1 MiB) always fits in u32.
    dst.put_u32(len as u32);
    dst.put_u8(ty.code());
    dst.put_slice(payload);
    Ok(())
}

/// Encodes one frame into a fresh buffer, so that it can be written with a single `write`.
pub fn encode_frame(ty: FrameType, payload: &[u8]) -> Result<BytesMut, ProtoError> {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 1 + payload.len());
    encode_into(ty, payload, &mut buf)?;
    Ok(buf)
}

/// Reads the length prefix of a buffer that holds at least [`HEADER_LEN`] bytes and validates it.
fn frame_len(header: &[u8]) -> Result<usize, ProtoError> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 {
        return Err(ProtoError::EmptyFrame);
    }
    if len > MAX_FRAME_LEN {
        return Err(ProtoError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Takes one complete frame off the front of `src`, if there is one.
///
/// Returns `Ok(None)` when more bytes are needed. A bad length prefix is reported as soon as the
/// four header bytes are present, before any payload is buffered, so a hostile peer cannot make
/// the reader allocate more than [`MAX_FRAME_LEN`].
pub fn decode(src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
    if src.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = frame_len(&src[..HEADER_LEN])?;
    if src.len() < HEADER_LEN + len {
        src.reserve(HEADER_LEN + len - src.len());
        return Ok(None);
    }
    src.advance(HEADER_LEN);
    let mut body = src.split_to(len);
    let ty = FrameType::from_code(body[0]);
    body.advance(1);
    Ok(Some(Frame {
        ty,
        payload: body.freeze(),
    }))
}

/// An incremental decoder: feed it any chunking of a byte stream and take frames out.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        decode(&mut self.buf)
    }

    /// Call at end of stream: `Ok(())` if it ended on a frame boundary, otherwise
    /// [`ProtoError::UnexpectedEof`].
    pub fn finish(&self) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::UnexpectedEof)
        }
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(feature = "tokio")]
mod tokio_codec {
    use super::*;

    /// A `tokio_util::codec` codec for [`Frame`]s.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct FrameCodec;

    impl tokio_util::codec::Decoder for FrameCodec {
        type Item = Frame;
        type Error = ProtoError;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
            super::decode(src)
        }

        fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
            match super::decode(src)? {
                Some(f) => Ok(Some(f)),
                None if src.is_empty() => Ok(None),
                None => Err(ProtoError::UnexpectedEof),
            }
        }
    }

    impl tokio_util::codec::Encoder<Frame> for FrameCodec {
        type Error = ProtoError;

        fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
            encode_into(item.ty, &item.payload, dst)
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_codec::FrameCodec;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(ty: FrameType, p: &[u8]) -> Vec<u8> {
        encode_frame(ty, p).unwrap().to_vec()
    }

    #[test]
    fn golden_bytes() {
        assert_eq!(enc(FrameType::Kill, b""), vec![0, 0, 0, 1, 0x07]);
        assert_eq!(
            enc(FrameType::Stdout, b"hi"),
            vec![0, 0, 0, 3, 0x02, b'h', b'i']
        );
        assert_eq!(
            enc(FrameType::Resize, &[0, 24, 0, 80]),
            vec![0, 0, 0, 5, 0x04, 0, 24, 0, 80]
        );
    }

    #[test]
    fn zero_length_rejected() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 0, 1, 2][..]);
        assert!(matches!(decode(&mut b), Err(ProtoError::EmptyFrame)));
    }

    #[test]
    fn oversize_rejected_on_read_before_buffering() {
        let len = (MAX_FRAME_LEN + 1) as u32;
        let mut b = BytesMut::from(&len.to_be_bytes()[..]);
        assert!(matches!(
            decode(&mut b),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        // Exactly the maximum is fine once complete.
        let max = MAX_FRAME_LEN as u32;
        let mut b = BytesMut::from(&max.to_be_bytes()[..]);
        assert!(decode(&mut b).unwrap().is_none());
    }

    #[test]
    fn oversize_rejected_on_write() {
        let big = vec![0u8; MAX_FRAME_LEN];
        assert!(matches!(
            encode_frame(FrameType::Stdout, &big),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        let ok = vec![7u8; MAX_FRAME_LEN - 1];
        let bytes = encode_frame(FrameType::Stdout, &ok).unwrap();
        let mut d = FrameDecoder::new();
        d.feed(&bytes);
        assert_eq!(d.next_frame().unwrap().unwrap().payload.len(), ok.len());
    }

    #[test]
    fn unknown_type_is_kept() {
        let mut d = FrameDecoder::new();
        d.feed(&[0, 0, 0, 2, 0xEE, 9]);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.ty, FrameType::Other(0xEE));
        assert_eq!(&f.payload[..], &[9]);
    }

    #[test]
    fn finish_reports_partial_frame() {
        let mut d = FrameDecoder::new();
        d.feed(&[0, 0, 0, 3, 0x02, b'h']);
        assert!(d.next_frame().unwrap().is_none());
        assert!(matches!(d.finish(), Err(ProtoError::UnexpectedEof)));
        let d = FrameDecoder::new();
        assert!(d.finish().is_ok());
    }

    fn arb_type() -> impl Strategy<Value = FrameType> {
        any::<u8>().prop_map(FrameType::from_code)
    }

    proptest! {
        #[test]
        fn round_trip_any_chunking(
            frames in proptest::collection::vec((arb_type(), proptest::collection::vec(any::<u8>(), 0..300)), 0..12),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for (t, p) in &frames {
                encode_into(*t, p, &mut wire).unwrap();
            }
            let mut d = FrameDecoder::new();
            let mut out = Vec::new();
            for c in wire.chunks(chunk) {
                d.feed(c);
                while let Some(f) = d.next_frame().unwrap() {
                    out.push((f.ty, f.payload.to_vec()));
                }
            }
            prop_assert!(d.finish().is_ok());
            prop_assert_eq!(out, frames);
        }

        #[test]
        fn every_truncation_point_waits(t in arb_type(), p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let wire = enc(t, &p);
            for cut in 0..wire.len() {
                let mut b = BytesMut::from(&wire[..cut]);
                prop_assert!(decode(&mut b).unwrap().is_none(), "cut {} produced a frame", cut);
                prop_assert_eq!(b.len(), cut, "decoder consumed bytes of a partial frame");
                let mut d = FrameDecoder::new();
                d.feed(&wire[..cut]);
                prop_assert!(d.next_frame().unwrap().is_none());
                prop_assert_eq!(d.finish().is_err(), cut > 0);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut d = FrameDecoder::new();
            d.feed(&bytes);
            let mut consumed = 0usize;
            while let Ok(Some(f)) = d.next_frame() {
                consumed += HEADER_LEN + 1 + f.payload.len();
                prop_assert!(f.payload.len() < MAX_FRAME_LEN);
            }
            prop_assert!(consumed <= bytes.len());
        }
    }
}
