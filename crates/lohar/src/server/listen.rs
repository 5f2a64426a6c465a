//! Listeners: TCP ports inside the sandbox, or Unix sockets in test mode.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::conn;
use crate::wire::BoxStream;
use crate::Agent;

/// At most this many control connections are served at once.
pub const MAX_CONTROL_CONNECTIONS: usize = 50;

/// Where the agent listens.
#[derive(Debug, Clone)]
pub enum ListenAddrs {
    /// `0.0.0.0:<control>` and `0.0.0.0:<forward>`.
    Tcp {
        /// Control port.
        control: u16,
        /// Forward port.
        forward: u16,
    },
    /// Unix socket paths (test mode).
    Unix {
        /// Control socket.
        control: PathBuf,
        /// Forward socket.
        forward: PathBuf,
    },
}

enum Listener {
    /// Connections accepted by a thread blocked in accept(2) (see [`tcp_listener`]).
    Tcp(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<std::io::Result<std::net::TcpStream>>>),
    Unix(tokio::net::UnixListener),
}

/// A TCP listener whose socket is never registered with epoll: a thread blocks in accept(2)
/// and hands each connection over. gVisor (the gvisor engine) refuses to checkpoint a TCP
/// socket that epoll is watching, while a blocked accept is simply restarted after a restore.
fn tcp_listener(port: u16) -> std::io::Result<Listener> {
    let l = std::net::TcpListener::bind(("0.0.0.0", port))?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    std::thread::Builder::new()
        .name(format!("accept-{port}"))
        .spawn(move || loop {
            let r = l.accept().map(|(s, _)| s);
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() {
                return;
            }
            if failed {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })?;
    Ok(Listener::Tcp(tokio::sync::Mutex::new(rx)))
}

impl Listener {
    async fn accept(&self) -> std::io::Result<BoxStream> {
        match self {
            Listener::Tcp(rx) => {
                let s = rx
                    .lock()
                    .await
                    .recv()
                    .await
                    .ok_or_else(|| std::io::Error::other("accept thread ended"))??;
                if crate::io_mode::epoll_free() {
                    return Ok(Box::new(crate::tcp_threads::serve(s)?));
                }
                s.set_nonblocking(true)?;
                let s = tokio::net::TcpStream::from_std(s)?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok(Box::new(s))
            }
        }
    }
}

/// Binds both listeners and serves them until the process ends.
pub async fn serve(agent: Arc<Agent>, addrs: ListenAddrs) -> std::io::Result<()> {
    let (control, forward) = match addrs {
        ListenAddrs::Tcp { control, forward } => (tcp_listener(control)?, tcp_listener(forward)?),
        ListenAddrs::Unix { control, forward } => {
            let _ = std::fs::remove_file(&control);
            let _ = std::fs::remove_file(&forward);
            (
                Listener::Unix(tokio::net::UnixListener::bind(&control)?),
                Listener::Unix(tokio::net::UnixListener::bind(&forward)?),
            )
        }
    };
    tracing::info!("lohar listening");
    let limit = Arc::new(Semaphore::new(MAX_CONTROL_CONNECTIONS));
    let fwd_agent = agent.clone();
    let fwd = tokio::spawn(async move {
        loop {
            match forward.accept().await {
                Ok(s) => {
                    tokio::spawn(conn::serve_forward(fwd_agent.clone(), s));
                }
                Err(e) => accept_error(e).await,
            }
        }
    });
    loop {
        match control.accept().await {
            Ok(s) => match limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    let agent = agent.clone();
                    tokio::spawn(async move {
                        conn::serve_control(agent, s).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let (_rd, wr) = crate::wire::split(s);
                        let _ = wr.error("connection limit exceeded").await;
                        wr.shutdown().await;
                    });
                }
            },
            Err(e) => accept_error(e).await,
        }
        if fwd.is_finished() {
            return Ok(());
        }
    }
}

/// Accept errors (e.g. EMFILE) must not spin or kill the agent.
async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}
