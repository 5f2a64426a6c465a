//! `bhatti shell NAME` → WebSocket `/sandboxes/:id/ws`.
//!
//! Raw terminal mode; the initial size and every SIGWINCH are sent as resizes. Ctrl+\ (0x1C)
//! detaches: the bytes before it are sent, the terminal restored, `detached` printed, the
//! socket closed — the shell keeps running and `bhatti shell NAME` reattaches it with its
//! scrollback. A shell that exits (close 1000) ends silently; any other disconnect prints
//! `connection lost (session sN still running)` and `reconnect: bhatti shell NAME`. The
//! terminal is restored in every case, panics included. Always exits 0 once connected.

use std::io::{IsTerminal, Read, Write};
use std::sync::Mutex;

use anyhow::Result;
use bhatti_client::ShellEvent;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{signal, SignalKind};

use super::Ctx;
use crate::args::ShellArgs;

/// The detach key, Ctrl+\.
pub const DETACH: u8 = 0x1c;

/// Saved terminal settings, restored on drop and by the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn restore_terminal() {
    if let Ok(mut g) = SAVED.lock() {
        if let Some(t) = g.take() {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &t);
        }
    }
}

struct RawMode;

impl RawMode {
    fn enable() -> Result<RawMode> {
        let saved = termios::tcgetattr(std::io::stdin())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Rows and columns of the terminal on stdout (or stdin).
fn term_size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        let mut ws = nix::libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, exclusively borrowed `ws`.
        let r = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Input bytes up to the detach key, and whether it was seen.
pub fn split_detach(data: &[u8]) -> (&[u8], bool) {
    match data.iter().position(|b| *b == DETACH) {
        Some(p) => (&data[..p], true),
        None => (data, false),
    }
}

enum End {
    Detached,
    Exited,
    Lost,
}

pub async fn run(ctx: &Ctx, args: ShellArgs) -> Result<()> {
    let client = ctx.client()?;
    let (sid, mut wr, mut rd) = client
        .shell(&args.sandbox, args.session.as_deref(), args.new)
        .await?;
    let raw = if std::io::stdin().is_terminal() {
        Some(RawMode::enable()?)
    } else {
        None
    };
    if let Some((rows, cols)) = term_size() {
        let _ = wr.resize(rows, cols).await;
    }
    // Stdin is read on a plain thread (blocking reads); it dies with the process.
    let (in_tx, in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut in_rx = Some(in_rx);
    let mut winch = signal(SignalKind::window_change())?;
    let mut stdout = std::io::stdout();
    let end = loop {
        tokio::select! {
            data = async { in_rx.as_mut()?.recv().await }, if in_rx.is_some() => match data {
                Some(d) => {
                    let (before, detach) = split_detach(&d);
                    if !before.is_empty() && wr.input(before).await.is_err() {
                        break End::Lost;
                    }
                    if detach {
                        wr.close().await;
                        break End::Detached;
                    }
                }
                // Stdin ended (not a terminal): keep showing output until the shell ends.
                None => in_rx = None,
            },
            _ = winch.recv() => {
                if let Some((rows, cols)) = term_size() {
                    if wr.resize(rows, cols).await.is_err() {
                        break End::Lost;
                    }
                }
            }
            ev = rd.next() => match ev {
                Ok(Some(ShellEvent::Output(b))) => {
                    let _ = stdout.write_all(&b);
                    let _ = stdout.flush();
                }
                Ok(Some(ShellEvent::Text(t))) => {
                    let _ = write!(std::io::stderr(), "\r\n{t}\r\n");
                }
                Ok(Some(ShellEvent::Closed { code: Some(1000), .. })) => break End::Exited,
                Ok(Some(ShellEvent::Closed { .. })) | Ok(None) | Err(_) => break End::Lost,
            }
        }
    };
    drop(raw);
    match end {
        End::Detached => eprint!("\r\ndetached\r\n"),
        End::Exited => {}
        End::Lost => {
            eprintln!("\r\nconnection lost (session {sid} still running)");
            eprintln!("reconnect: bhatti shell {}", args.sandbox);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_key_splits_input() {
        assert_eq!(split_detach(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(split_detach(b"ab\x1ccd"), (&b"ab"[..], true));
        assert_eq!(split_detach(b"\x1c"), (&b""[..], true));
    }
}
