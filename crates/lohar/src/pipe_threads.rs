//! Process pipes served by a thread each instead of tokio's epoll reactor.
//!
//! Why: like TCP sockets (see [`crate::tcp_threads`]), a pipe registered with epoll and then
//! deleted and closed shortly before a gVisor checkpoint (runsc 0.0~20221219) can come back
//! after the restore as a ready event carrying its old token (seen in runsc's strace: EPOLLHUP
//! for the stdout pipes of the two execs that ran 2 s before the checkpoint, both deleted from
//! epoll and closed), which made tokio touch a freed `ScheduledIo` and lohar crash. Pipes are
//! the registrations lohar opens and closes most (three per exec), so they stay out of epoll:
//! a thread moves the bytes between the pipe and an in-memory duplex, waiting in poll(2) with a
//! timeout so that it notices when nobody wants the output any more (a background child can
//! hold a pipe open forever).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bridged::Bridged;

/// Bytes buffered between a pipe thread and the async side.
const BUF: usize = 64 * 1024;
/// The threads need little stack: a read or write and a small future at a time.
const STACK: usize = 256 * 1024;
/// How often a waiting thread looks whether its async side is gone.
const CHECK: Duration = Duration::from_millis(200);

/// The read end of a pipe as an async reader. Dropping it lets the thread go and close the
/// pipe (within [`CHECK`]), even while a writer still holds the other end.
pub type PipeReader = Bridged<GoneOnDrop>;

/// The write end of a pipe as an async writer. Bytes written are sent in order; the pipe
/// closes once they are all written (or the reader is gone) after the writer is dropped or
/// shut down.
pub type PipeWriter = Bridged<()>;

/// Sets its flag when dropped: the reader thread's signal to stop waiting.
pub struct GoneOnDrop(Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Waits until `fd` is ready for `what` or [`CHECK`] passes (poll(2) leaves nothing behind in
/// the kernel, unlike an epoll registration).
fn wait(fd: &OwnedFd, what: PollFlags) {
    let mut fds = [PollFd::new(fd.as_fd(), what)];
    let _ = nix::poll::poll(&mut fds, PollTimeout::from(CHECK.as_millis() as u16));
}

/// Serves the read end of a pipe. Must be called inside a tokio runtime.
pub fn reader(fd: OwnedFd) -> std::io::Result<PipeReader> {
    set_nonblocking(&fd)?;
    let handle = tokio::runtime::Handle::current();
    let (ours, mut theirs) = tokio::io::duplex(BUF);
    let gone = Arc::new(AtomicBool::new(false));
    let seen_gone = gone.clone();
    std::thread::Builder::new()
        .name("pipe-read".into())
        .stack_size(STACK)
        .spawn(move || {
            let mut buf = vec![0u8; BUF];
            loop {
                match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if handle.block_on(theirs.write_all(&buf[..n])).is_err() {
                            break;
                        }
                    }
                    Err(Errno::EAGAIN) => {
                        if seen_gone.load(Ordering::Acquire) {
                            break;
                        }
                        wait(&fd, PollFlags::POLLIN);
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
            let _ = handle.block_on(theirs.shutdown());
            drop(fd);
        })?;
    Ok(Bridged::new(ours, GoneOnDrop(gone)))
}

/// Serves the write end of a pipe. Must be called inside a tokio runtime.
pub fn writer(fd: OwnedFd) -> std::io::Result<PipeWriter> {
    set_nonblocking(&fd)?;
    let handle = tokio::runtime::Handle::current();
    let (ours, mut theirs) = tokio::io::duplex(BUF);
    std::thread::Builder::new()
        .name("pipe-write".into())
        .stack_size(STACK)
        .spawn(move || {
            let mut buf = vec![0u8; BUF];
            'outer: loop {
                let n = match handle.block_on(theirs.read(&mut buf)) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut off = 0;
                while off < n {
                    match nix::unistd::write(&fd, &buf[off..n]) {
                        Ok(k) => off += k,
                        // Waits for the reader as long as it lives (EPIPE once it is gone).
                        Err(Errno::EAGAIN) => wait(&fd, PollFlags::POLLOUT),
                        Err(Errno::EINTR) => {}
                        Err(_) => break 'outer,
                    }
                }
            }
            drop(fd);
        })?;
    Ok(Bridged::new(ours, ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Bytes through a pipe pair served by threads: in order, then EOF once the writer is done.
    #[tokio::test(flavor = "current_thread")]
    async fn bytes_in_order_then_eof() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut r = reader(r).unwrap();
        let mut w = writer(w).unwrap();
        let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
        let send = data.clone();
        let t = tokio::spawn(async move {
            w.write_all(&send).await.unwrap();
            drop(w);
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        t.await.unwrap();
        assert_eq!(got, data);
    }

    /// A reader dropped while the other end stays open closes its end: the writer then gets
    /// EPIPE instead of blocking on a pipe nobody reads.
    #[tokio::test(flavor = "current_thread")]
    async fn dropped_reader_closes_its_end() {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(reader(r).unwrap());
        let t0 = Instant::now();
        let closed = loop {
            match nix::unistd::write(&w, b"x") {
                Err(Errno::EPIPE) => break true,
                _ if t0.elapsed() > Duration::from_secs(10) => break false,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert!(closed, "the read end was never closed");
    }
}
