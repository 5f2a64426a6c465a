//! A small blocking QMP client: one connection per operation (QMP allows several clients, and a
//! daemon restart then needs nothing but the socket path to re-attach).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// Errors of a QMP exchange.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Socket I/O failed (QEMU gone, or timed out).
    #[error("qmp i/o: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU answered with an error.
    #[error("qmp {command}: {class}: {desc}")]
    Command {
        /// The command sent.
        command: String,
        /// QMP error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// Something that is not QMP.
    #[error("qmp protocol: {0}")]
    Protocol(String),
}

/// A negotiated QMP connection.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(sock: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let s = UnixStream::connect(sock)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let writer = s.try_clone()?;
        let mut q = Qmp {
            reader: BufReader::new(s),
            writer,
        };
        let greeting = q.read_value()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "unexpected greeting {greeting}"
            )));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read_value(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "qemu closed the qmp socket",
            )));
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {line}")))
    }

    /// Sends a command and returns its `return` value, skipping asynchronous events.
    pub fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| QmpError::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes)?;
        self.read_reply(command)
    }

    fn read_reply(&mut self, command: &str) -> Result<Value, QmpError> {
        loop {
            let v = self.read_value()?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: e["class"].as_str().unwrap_or("").to_string(),
                    desc: e["desc"].as_str().unwrap_or("").to_string(),
                });
            }
            return Err(QmpError::Protocol(format!("unexpected reply {v}")));
        }
    }

    /// `getfd`: hands QEMU an open file descriptor under `name` (SCM_RIGHTS on the socket).
    pub fn send_fd(&mut self, name: &str, fd: RawFd) -> Result<(), QmpError> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let mut bytes = serde_json::to_vec(&json!({
            "execute": "getfd",
            "arguments": { "fdname": name }
        }))
        .map_err(|e| QmpError::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        let fds = [fd];
        let iov = [std::io::IoSlice::new(&bytes)];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let n = sendmsg::<()>(
            self.writer.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .map_err(std::io::Error::from)?;
        if n != bytes.len() {
            // The command line is tiny; a short write on a fresh socket does not happen in
            // practice, but the rest must still go out after the fd.
            self.writer.write_all(&bytes[n..])?;
        }
        self.read_reply("getfd").map(|_| ())
    }

    /// The VM's run status (`running`, `paused`, `inmigrate`, `postmigrate`, …).
    pub fn status(&mut self) -> Result<String, QmpError> {
        let r = self.execute("query-status", None)?;
        Ok(r["status"].as_str().unwrap_or("").to_string())
    }
}
