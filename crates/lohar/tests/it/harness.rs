//! Starting lohar in test mode and talking to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bhatti_engine::agent::{AgentChannel, AgentClient, AgentEvent};
use bhatti_engine::AgentEndpoint;
use bhatti_proto::msg::ExecRequest;

/// A lohar test-mode process that is killed on drop.
pub struct Lohar {
    child: Child,
    pub dir: tempfile::TempDir,
    pub client: AgentClient,
}

impl Drop for Lohar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lohar {
    /// Starts lohar with no config (no token).
    pub async fn start() -> Lohar {
        Self::start_with(None).await
    }

    /// Starts lohar with a config JSON (written to a file lohar must read and delete).
    pub async fn start_with(config: Option<serde_json::Value>) -> Lohar {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control.sock");
        let forward = dir.path().join("forward.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lohar"));
        cmd.env("LOHAR_TEST", "1")
            .env("LOHAR_SOCK", &control)
            .env("LOHAR_FWD_SOCK", &forward)
            .env("LOHAR_LOG", "warn")
            .stdin(Stdio::null());
        let token = config
            .as_ref()
            .and_then(|c| c.get("token"))
            .and_then(|t| t.as_str())
            .map(String::from);
        if let Some(c) = &config {
            let p = dir.path().join("config.json");
            std::fs::write(&p, serde_json::to_vec(c).unwrap()).unwrap();
            cmd.arg(&p);
        }
        let child = cmd.spawn().expect("spawn lohar");
        let client = AgentClient::new(AgentEndpoint::Unix {
            control,
            forward,
            token,
        });
        let l = Lohar { child, dir, client };
        l.client
            .wait_ready(Duration::from_secs(10))
            .await
            .expect("lohar ready");
        l
    }

    /// The test's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Whether the lohar process is still alive.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A client for the same sockets with another token.
    pub fn client_with_token(&self, token: Option<&str>) -> AgentClient {
        match self.client.endpoint() {
            AgentEndpoint::Unix {
                control, forward, ..
            } => AgentClient::new(AgentEndpoint::Unix {
                control: control.clone(),
                forward: forward.clone(),
                token: token.map(String::from),
            }),
            _ => unreachable!(),
        }
    }

    pub fn control_path(&self) -> PathBuf {
        match self.client.endpoint() {
            AgentEndpoint::Unix { control, .. } => control.clone(),
            _ => unreachable!(),
        }
    }
}

/// `sh -c <script>` as a request.
pub fn sh(script: &str) -> ExecRequest {
    ExecRequest::command(["/bin/sh", "-c", script])
}

/// Reads events until the collected stdout contains `needle`; returns everything read.
pub async fn read_until(ch: &mut AgentChannel, needle: &str) -> String {
    let mut out = Vec::new();
    let fut = async {
        loop {
            match ch.next_event().await.unwrap() {
                Some(AgentEvent::Stdout(b)) => {
                    out.extend_from_slice(&b);
                    if String::from_utf8_lossy(&out).contains(needle) {
                        return;
                    }
                }
                Some(AgentEvent::Exit(c)) => panic!(
                    "exited ({c}) before {needle:?}; got {:?}",
                    String::from_utf8_lossy(&out)
                ),
                Some(_) => {}
                None => panic!(
                    "closed before {needle:?}; got {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timeout waiting for {needle:?}"));
    String::from_utf8_lossy(&out).into_owned()
}

/// The first event of a session must be its SessionInfo.
pub async fn session_id(ch: &mut AgentChannel) -> String {
    match ch.next_event().await.unwrap() {
        Some(AgentEvent::SessionInfo(i)) => i.session_id,
        other => panic!("expected SessionInfo, got {other:?}"),
    }
}

/// Polls `f` until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

pub fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
