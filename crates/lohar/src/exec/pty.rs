//! Pseudo-terminals: open a pair, resize it, and read/write the master asynchronously.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::pty::{openpty, Winsize};

use bhatti_proto::msg::WindowSize;

/// A PTY pair: the master stays in lohar, the slave becomes the child's stdio.
pub struct PtyPair {
    /// The master side.
    pub master: OwnedFd,
    /// The slave side.
    pub slave: OwnedFd,
}

/// Opens a PTY with the given size.
pub fn open(size: WindowSize) -> std::io::Result<PtyPair> {
    let ws = winsize(size);
    let r = openpty(Some(&ws), None).map_err(std::io::Error::from)?;
    Ok(PtyPair {
        master: r.master,
        slave: r.slave,
    })
}

fn winsize(size: WindowSize) -> Winsize {
    Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Sets the window size of the terminal behind `fd` (the kernel signals SIGWINCH to its group).
pub fn resize(fd: &impl AsRawFd, size: WindowSize) -> std::io::Result<()> {
    let ws = winsize(size);
    // SAFETY: TIOCSWINSZ reads a `winsize` from the pointer, which lives for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws as *const Winsize) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The master side of a PTY, read and written by threads (never registered with epoll, for
/// the reason given in [`crate::pipe_threads`]: a session's terminal is closed when the session
/// ends, and a gVisor restore must not bring its registration back).
pub struct AsyncMaster {
    /// For resizing; the threads hold duplicates of their own.
    fd: OwnedFd,
    output: tokio::sync::Mutex<crate::pipe_threads::PipeReader>,
    input: tokio::sync::Mutex<crate::pipe_threads::PipeWriter>,
}

impl AsyncMaster {
    /// Starts the threads that serve the master.
    pub fn new(master: OwnedFd) -> std::io::Result<AsyncMaster> {
        let output = crate::pipe_threads::reader(master.try_clone()?)?;
        let input = crate::pipe_threads::writer(master.try_clone()?)?;
        Ok(AsyncMaster {
            fd: master,
            output: tokio::sync::Mutex::new(output),
            input: tokio::sync::Mutex::new(input),
        })
    }

    /// Reads output; `Ok(0)` when every slave is closed (Linux reports EIO then, which ends
    /// the reading thread).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        self.output.lock().await.read(buf).await
    }

    /// Writes all of `data` (keystrokes) to the terminal.
    pub async fn write_all(&self, data: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.input.lock().await.write_all(data).await
    }

    /// Resizes the terminal.
    pub fn resize(&self, size: WindowSize) -> std::io::Result<()> {
        resize(&self.fd, size)
    }
}
