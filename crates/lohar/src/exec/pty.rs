//! Pseudo-terminals: open a pair, resize it, and read/write the master asynchronously.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use nix::pty::{openpty, Winsize};
use tokio::io::unix::AsyncFd;

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

/// The master side of a PTY: registered with tokio's reactor, or (where epoll must be avoided,
/// [`crate::io_mode`]: a session's terminal is closed when the session ends, and a gVisor
/// restore must not bring its registration back) read and written by threads.
pub enum AsyncMaster {
    /// Registered with tokio.
    Reactor(AsyncFd<OwnedFd>),
    /// Served by threads; `fd` for resizing, the threads hold duplicates of their own.
    Threads {
        /// For resizing.
        fd: OwnedFd,
        /// Output, from the reading thread.
        output: tokio::sync::Mutex<crate::pipe_threads::PipeReader>,
        /// Keystrokes, to the writing thread.
        input: tokio::sync::Mutex<crate::pipe_threads::PipeWriter>,
    },
}

impl AsyncMaster {
    /// Makes the master non-blocking and serves it.
    pub fn new(master: OwnedFd) -> std::io::Result<AsyncMaster> {
        if crate::io_mode::epoll_free() {
            let output = crate::pipe_threads::reader(master.try_clone()?)?;
            let input = crate::pipe_threads::writer(master.try_clone()?)?;
            return Ok(AsyncMaster::Threads {
                fd: master,
                output: tokio::sync::Mutex::new(output),
                input: tokio::sync::Mutex::new(input),
            });
        }
        let flags = fcntl(master.as_raw_fd(), FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
        // SAFETY: the fd is owned by the AsyncFd from here on and stays open while registered.
        Ok(AsyncMaster::Reactor(unsafe { AsyncFd::register(master)? }))
    }

    /// Reads output; `Ok(0)` when every slave is closed (Linux reports EIO then).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let fd = match self {
            AsyncMaster::Reactor(fd) => fd,
            AsyncMaster::Threads { output, .. } => {
                use tokio::io::AsyncReadExt;
                // The reading thread ends at EIO, which reads as EOF here.
                return output.lock().await.read(buf).await;
            }
        };
        loop {
            let mut guard = fd.readable().await?;
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` (keystrokes) to the terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        let fd = match self {
            AsyncMaster::Reactor(fd) => fd,
            AsyncMaster::Threads { input, .. } => {
                use tokio::io::AsyncWriteExt;
                return input.lock().await.write_all(data).await;
            }
        };
        while !data.is_empty() {
            let mut guard = fd.writable().await?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref().as_fd(), data).map_err(Into::into))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Resizes the terminal.
    pub fn resize(&self, size: WindowSize) -> std::io::Result<()> {
        match self {
            AsyncMaster::Reactor(fd) => resize(fd.get_ref(), size),
            AsyncMaster::Threads { fd, .. } => resize(fd, size),
        }
    }
}
