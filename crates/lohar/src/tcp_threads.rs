//! TCP connections served by two blocking threads each instead of tokio's epoll reactor.
//!
//! Why: gVisor (runsc 0.0~20221219, the gvisor engine's floor) keeps the epoll registration of a
//! closed TCP socket reachable through the socket's endpoint, and on restore from a checkpoint
//! marks every saved registration ready. lohar then received an event whose token pointed at
//! tokio's already-freed `ScheduledIo` and crashed on its first poll after the restore (seen
//! in runsc's strace: an `EPOLLERR|EPOLLHUP` event carrying the token of a TCP connection
//! deleted from epoll and closed before the checkpoint; the restore of that image crashed
//! every time). A TCP socket that is never registered with epoll cannot leave such a ghost, so
//! lohar's TCP connections are moved between the socket and an in-memory duplex by threads
//! blocked in read(2)/write(2) — which gVisor also restarts cleanly after a restore. The
//! handlers see an ordinary `AsyncRead + AsyncWrite` stream, half-close included.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bridged::Bridged;

/// Bytes buffered in each direction between a socket thread and the async side.
const BUF: usize = 64 * 1024;
/// The socket threads need little stack: a read or write and a small future at a time.
const STACK: usize = 256 * 1024;

/// A TCP connection as an async stream; its socket is only touched by its two threads. Its
/// guard, dropped with it, tells the writer thread it may close the socket for good.
pub type ThreadedTcp = Bridged<mpsc::Sender<()>>;

/// Hands `sock` to two threads and returns the async end. Must be called inside a tokio
/// runtime (the threads drive the duplex through its handle).
pub fn serve(sock: TcpStream) -> std::io::Result<ThreadedTcp> {
    sock.set_nonblocking(false)?;
    let _ = sock.set_nodelay(true);
    let handle = tokio::runtime::Handle::current();
    let (ours, theirs) = tokio::io::duplex(BUF);
    let (mut from_async, mut to_async) = tokio::io::split(theirs);
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();

    // socket → async side. Ends at the peer's EOF or reset (the async side then reads EOF), or
    // when the async side is gone, or when the writer thread shuts the socket down.
    let mut rsock = sock.try_clone()?;
    let h = handle.clone();
    std::thread::Builder::new()
        .name("tcp-read".into())
        .stack_size(STACK)
        .spawn(move || {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = match rsock.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if h.block_on(to_async.write_all(&buf[..n])).is_err() {
                    break;
                }
            }
            let _ = h.block_on(to_async.shutdown());
        })?;

    // async side → socket. At the async side's EOF (its shutdown or its drop, after every byte
    // it wrote has been sent) the socket's write side is shut; once the stream is dropped the
    // read side is shut too, which wakes the reader thread, and the socket closes.
    std::thread::Builder::new()
        .name("tcp-write".into())
        .stack_size(STACK)
        .spawn(move || {
            let mut wsock = sock;
            let mut buf = vec![0u8; BUF];
            loop {
                match handle.block_on(from_async.read(&mut buf)) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if wsock.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = wsock.shutdown(Shutdown::Write);
            // Returns once the stream is dropped (the sender goes away).
            let _ = dropped_rx.recv();
            let _ = wsock.shutdown(Shutdown::Both);
        })?;

    Ok(Bridged::new(ours, dropped_tx))
}

/// Connects to `addr` on a blocking thread and serves the connection like an accepted one.
pub async fn connect(addr: std::net::SocketAddr) -> std::io::Result<ThreadedTcp> {
    let sock = tokio::task::spawn_blocking(move || TcpStream::connect(addr))
        .await
        .map_err(std::io::Error::other)??;
    serve(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Bytes both ways, half-close from each side, and the socket closed once dropped.
    #[tokio::test(flavor = "current_thread")]
    async fn relays_both_ways_with_half_close_and_closes_on_drop() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"hello").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let mut c = connect(addr).await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        // The peer half-closed; we can still write to it.
        c.write_all(&vec![7u8; 300_000]).await.unwrap();
        c.shutdown().await.unwrap();
        drop(c);
        let echoed = tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
        assert_eq!(echoed.len(), 300_000);
        assert!(echoed.iter().all(|b| *b == 7));
    }

    /// Dropping the stream without a shutdown still closes the socket (the peer sees EOF)
    /// while the peer says nothing, and every byte written before the drop arrives.
    #[tokio::test(flavor = "current_thread")]
    async fn drop_flushes_then_closes_a_silent_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let mut c = connect(addr).await.unwrap();
        c.write_all(b"last words").await.unwrap();
        drop(c);
        let got = tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
        assert_eq!(got, b"last words");
    }
}
