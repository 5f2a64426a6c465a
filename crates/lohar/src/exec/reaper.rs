//! Child reaping that never steals an exit status from lohar's own children.
//!
//! As PID 1, lohar inherits every orphan in the sandbox and must reap them. A blind
//! `waitpid(-1)` loop would also reap lohar's own children before their owners could learn their
//! exit status. So every child lohar starts is spawned *through* the reaper, which registers its
//! pid under the same lock the reap loop holds: a registered child's status is delivered to its
//! waiter; anything else is an orphan and is simply reaped.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// Receives a child's exit code (status, or 128 + signal).
pub type ExitReceiver = oneshot::Receiver<i32>;

/// The registry of lohar's own children.
#[derive(Debug, Default)]
pub struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<i32>>>,
}

impl Reaper {
    /// Creates the reaper and starts its SIGCHLD loop on the current tokio runtime.
    pub fn start() -> std::io::Result<Arc<Reaper>> {
        let reaper = Arc::new(Reaper::default());
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            // The periodic tick covers any SIGCHLD that arrived before the handler existed.
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = tick.tick() => {}
                }
                r.reap_all();
            }
        });
        Ok(reaper)
    }

    /// Spawns `cmd` and registers the child before any reap can see it.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<(Child, ExitReceiver)> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        waiters.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// Reaps every exited child: delivers statuses of registered ones, discards orphans.
    pub fn reap_all(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => deliver(&mut waiters, pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    deliver(&mut waiters, pid, 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn deliver(waiters: &mut HashMap<i32, oneshot::Sender<i32>>, pid: Pid, code: i32) {
    if let Some(tx) = waiters.remove(&pid.as_raw()) {
        let _ = tx.send(code);
    }
}
