//! Running processes: one-shot piped execs, detached execs, and sessions (PTY or piped) that
//! outlive their client.

pub mod detached;
pub mod piped;
pub mod pty;
pub mod reaper;
pub mod ring;
pub mod session;
pub mod spawn;

use std::os::fd::OwnedFd;

use tokio::io::AsyncReadExt;

/// Size of one output read (and so the largest STDOUT/STDERR frame lohar sends for a process).
pub const READ_CHUNK: usize = 32 * 1024;

/// A process's output pipe as lohar reads it.
pub type PipeIn = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// A process's input pipe as lohar writes it.
pub type PipeOut = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Wraps the read end of a pipe for async reads: tokio's reactor, or a thread where epoll must
/// be avoided ([`crate::io_mode`]).
pub fn async_pipe_reader(fd: OwnedFd) -> std::io::Result<PipeIn> {
    if crate::io_mode::epoll_free() {
        return Ok(Box::new(crate::pipe_threads::reader(fd)?));
    }
    Ok(Box::new(tokio::net::unix::pipe::Receiver::from_owned_fd(
        fd,
    )?))
}

/// Wraps the write end of a pipe for async writes (like [`async_pipe_reader`]).
pub fn async_pipe_writer(fd: OwnedFd) -> std::io::Result<PipeOut> {
    if crate::io_mode::epoll_free() {
        return Ok(Box::new(crate::pipe_threads::writer(fd)?));
    }
    Ok(Box::new(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?))
}

/// Stdin bytes a process may have waiting (sent by the host, not yet read by the process)
/// before lohar closes its stdin.
pub const MAX_PENDING_STDIN: usize = 4 * 1024 * 1024;

/// A process's stdin written by a task of its own, so that the connection's frames keep being
/// read while the process does not read its input: a SIGNAL or KILL is never stuck behind
/// stdin. What waits is capped at [`MAX_PENDING_STDIN`]; beyond it the input is cut (stdin
/// closes once what is queued is written), as unbounded buffering would let a client fill
/// lohar's memory.
pub struct StdinQueue {
    tx: Option<tokio::sync::mpsc::UnboundedSender<bytes::Bytes>>,
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StdinQueue {
    /// Starts writing to `w` (`None`: a process without stdin, input is dropped).
    pub fn new(w: Option<PipeOut>) -> StdinQueue {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncWriteExt;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = pending.clone();
        let task = tokio::spawn(async move {
            let Some(mut w) = w else { return };
            while let Some(b) = rx.recv().await {
                let r = w.write_all(&b).await;
                p.fetch_sub(b.len(), Ordering::SeqCst);
                if r.is_err() {
                    return;
                }
            }
            // Dropping `w` closes the pipe: the process reads EOF.
        });
        StdinQueue {
            tx: Some(tx),
            pending,
            task,
        }
    }

    /// Queues `data`; an empty payload closes stdin (after what is queued).
    pub fn push(&mut self, data: bytes::Bytes) {
        use std::sync::atomic::Ordering;
        if data.is_empty() {
            self.tx = None;
            return;
        }
        let Some(tx) = &self.tx else { return };
        if self.pending.load(Ordering::SeqCst) + data.len() > MAX_PENDING_STDIN {
            tracing::warn!(
                max = MAX_PENDING_STDIN,
                "process does not read its stdin: input cut, stdin closed"
            );
            self.tx = None;
            return;
        }
        self.pending.fetch_add(data.len(), Ordering::SeqCst);
        if tx.send(data).is_err() {
            self.tx = None;
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StdinQueue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one chunk from a pipe; `Ok(None)` at EOF.
pub async fn read_chunk(r: &mut PipeIn, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    match r.read(buf).await? {
        0 => Ok(None),
        n => Ok(Some(n)),
    }
}

/// Sends `sig` to a process group, ignoring a group that is already gone.
pub fn signal_group(pgid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
}

/// The signal of a v2 SIGNAL payload, if it is a valid one.
pub fn parse_signal(payload: &[u8]) -> Option<nix::sys::signal::Signal> {
    let n = bhatti_proto::msg::decode_signal(payload).ok()?;
    nix::sys::signal::Signal::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_payloads() {
        use bhatti_proto::msg::encode_signal;
        assert_eq!(
            parse_signal(&encode_signal(15)),
            Some(nix::sys::signal::Signal::SIGTERM)
        );
        assert_eq!(
            parse_signal(&encode_signal(9)),
            Some(nix::sys::signal::Signal::SIGKILL)
        );
        assert_eq!(parse_signal(&encode_signal(0)), None);
        assert_eq!(parse_signal(&[1, 2]), None);
    }
}
