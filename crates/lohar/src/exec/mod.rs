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

/// Wraps the read end of a pipe for async reads.
pub fn async_pipe_reader(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

/// Wraps the write end of a pipe for async writes.
pub fn async_pipe_writer(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Sender> {
    tokio::net::unix::pipe::Sender::from_owned_fd(fd)
}

/// Reads one chunk from a pipe; `Ok(None)` at EOF.
pub async fn read_chunk(
    r: &mut tokio::net::unix::pipe::Receiver,
    buf: &mut [u8],
) -> std::io::Result<Option<usize>> {
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
