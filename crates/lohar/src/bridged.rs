//! An async stream whose bytes are moved by threads (see [`crate::tcp_threads`] and
//! [`crate::pipe_threads`] for why): one end of an in-memory duplex, plus a guard whose drop
//! tells those threads that the async side is gone.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// The async end of a thread-served file or socket.
pub struct Bridged<G> {
    io: DuplexStream,
    _guard: G,
}

impl<G> Bridged<G> {
    /// Wraps the async end `io`; `guard` is dropped with it.
    pub fn new(io: DuplexStream, guard: G) -> Bridged<G> {
        Bridged { io, _guard: guard }
    }
}

impl<G: Unpin> AsyncRead for Bridged<G> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<G: Unpin> AsyncWrite for Bridged<G> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
