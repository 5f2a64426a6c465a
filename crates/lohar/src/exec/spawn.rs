//! How user processes are started: identity, environment, working directory, process group.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Default `PATH` of every user process.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// uid/gid of the unprivileged user `lohar`.
pub const LOHAR_UID: u32 = 1000;

/// Everything that is the same for every process lohar starts.
#[derive(Debug, Clone)]
pub struct ProcessContext {
    /// Base environment: defaults ← config env (incl. secrets) ← `/run/bhatti/env`.
    pub env: BTreeMap<String, String>,
    /// `Some((uid, gid))` to drop to; `None` to run as lohar's own identity (test mode).
    pub run_as: Option<(u32, u32)>,
}

/// How the new process relates to sessions and process groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Its own process group (piped exec), so KILL reaches its children too.
    ProcessGroup,
    /// A new session (detached exec), fully detached from lohar.
    Session,
    /// A new session with the PTY slave on fd 0 as controlling terminal.
    SessionWithTty,
}

impl ProcessContext {
    /// The default environment before config and request overrides.
    pub fn default_env(home: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), DEFAULT_PATH.into());
        env.insert("TERM".into(), "xterm-256color".into());
        env.insert("HOME".into(), home.into());
        env.insert("LANG".into(), "en_US.UTF-8".into());
        env.insert("USER".into(), "lohar".into());
        env
    }

    /// The context of one request: with v2 `root`, lohar's own identity (no uid drop).
    pub fn for_request(&self, root: bool) -> std::borrow::Cow<'_, ProcessContext> {
        if root && self.run_as.is_some() {
            std::borrow::Cow::Owned(ProcessContext {
                env: self.env.clone(),
                run_as: None,
            })
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }

    /// Builds the command for `argv` with request env and cwd applied.
    pub fn command(
        &self,
        argv: &[String],
        req_env: Option<&BTreeMap<String, String>>,
        cwd: Option<&str>,
        grouping: Grouping,
    ) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.env_clear();
        cmd.envs(&self.env);
        if let Some(e) = req_env {
            cmd.envs(e);
        }
        cmd.current_dir(resolve_cwd(cwd));
        if let Some((uid, gid)) = self.run_as {
            // std drops supplementary groups (setgroups(0)) when it changes uid as root.
            cmd.uid(uid).gid(gid);
        }
        match grouping {
            Grouping::ProcessGroup => {
                cmd.process_group(0);
            }
            Grouping::Session => {
                // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
                unsafe {
                    cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(Into::into));
                }
            }
            Grouping::SessionWithTty => {
                // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the PTY slave, which
                // becomes the controlling terminal of the new session.
                unsafe {
                    cmd.pre_exec(|| {
                        nix::unistd::setsid()?;
                        if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
        }
        cmd
    }
}

/// The working directory: the requested one, else `/workspace` when it exists, else `/`.
pub fn resolve_cwd(cwd: Option<&str>) -> String {
    match cwd {
        Some(c) if !c.is_empty() => c.to_string(),
        _ if Path::new("/workspace").is_dir() => "/workspace".into(),
        _ => "/".into(),
    }
}

/// Exit code and message for a process that could not be started (shell conventions).
pub fn spawn_failure(argv0: &str, err: &std::io::Error) -> (i32, String) {
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        std::io::ErrorKind::PermissionDenied => 126,
        _ => 126,
    };
    (code, format!("lohar: exec {argv0}: {err}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_requests_keep_lohars_identity() {
        let ctx = ProcessContext {
            env: BTreeMap::new(),
            run_as: Some((1000, 1000)),
        };
        assert_eq!(ctx.for_request(false).run_as, Some((1000, 1000)));
        assert_eq!(ctx.for_request(true).run_as, None);
    }
}
