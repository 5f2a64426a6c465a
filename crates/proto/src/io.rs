//! Reading and writing frames on async byte streams (feature `tokio`).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::encode_frame;
use crate::error::ProtoError;
use crate::frame::{Frame, FrameType, HEADER_LEN, MAX_FRAME_LEN};

/// Reads one frame. `Ok(None)` means the stream ended cleanly on a frame boundary; a stream that
/// ends inside a frame is [`ProtoError::UnexpectedEof`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, ProtoError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ProtoError::UnexpectedEof)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(ProtoError::EmptyFrame);
    }
    if len > MAX_FRAME_LEN {
        return Err(ProtoError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProtoError::UnexpectedEof
        } else {
            ProtoError::Io(e)
        }
    })?;
    let ty = FrameType::from_code(body[0]);
    let mut payload = bytes::Bytes::from(body);
    let _ = payload.split_to(1);
    Ok(Some(Frame { ty, payload }))
}

/// Writes one frame with a single `write_all` of a fully assembled buffer, so writers sharing a
/// stream behind a lock never interleave partial frames.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    ty: FrameType,
    payload: &[u8],
) -> Result<(), ProtoError> {
    let buf = encode_frame(ty, payload)?;
    w.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clean_eof_vs_partial() {
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty).await.unwrap().is_none());
        let mut partial: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut partial).await,
            Err(ProtoError::UnexpectedEof)
        ));
        let mut partial_body: &[u8] = &[0, 0, 0, 5, 2, 1];
        assert!(matches!(
            read_frame(&mut partial_body).await,
            Err(ProtoError::UnexpectedEof)
        ));
    }

    #[tokio::test]
    async fn write_then_read() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, FrameType::Stderr, b"oops")
            .await
            .unwrap();
        write_frame(&mut a, FrameType::Kill, b"").await.unwrap();
        drop(a);
        let f = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!((f.ty, &f.payload[..]), (FrameType::Stderr, &b"oops"[..]));
        let f = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!(f.ty, FrameType::Kill);
        assert!(read_frame(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn concurrent_writers_do_not_interleave() {
        use std::sync::Arc;
        use tokio::sync::Mutex;
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let a = Arc::new(Mutex::new(a));
        let mut tasks = Vec::new();
        for w in 0..2u8 {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..1000u32 {
                    let payload = vec![w; (i % 97) as usize + 1];
                    let mut g = a.lock().await;
                    write_frame(&mut *g, FrameType::Stdout, &payload)
                        .await
                        .unwrap();
                }
            }));
        }
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Some(f) = read_frame(&mut b).await.unwrap() {
                let first = f.payload[0];
                assert!(f.payload.iter().all(|&x| x == first));
                n += 1;
                if n == 2000 {
                    break;
                }
            }
            n
        });
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(reader.await.unwrap(), 2000);
    }
}
