//! Test harness: an isolated environment and a daemon per test.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bhatti_server::store::{sandboxes, Store};
use tempfile::TempDir;

/// Environment variables of the developer's shell that must not leak into the tests.
const SCRUB: &[&str] = &[
    "BHATTI_URL",
    "BHATTI_TOKEN",
    "BHATTI_CONFIG",
    "BHATTI_HOME",
    "SUDO_USER",
    "RUST_LOG",
];

/// A temp directory holding a home, a CLI config dir, a server config and a data dir.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Self { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `BHATTI_HOME` (the `~/.bhatti` stand-in).
    pub fn bhatti_home(&self) -> PathBuf {
        self.home().join(".bhatti")
    }

    pub fn cli_config(&self) -> PathBuf {
        self.bhatti_home().join("config.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn server_config(&self) -> PathBuf {
        self.dir.path().join("server.yaml")
    }

    /// `bhatti …` in this environment.
    pub fn bhatti(&self) -> Command {
        let mut cmd = Command::cargo_bin("bhatti").expect("bhatti binary");
        for var in SCRUB {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.home())
            .env("BHATTI_HOME", self.bhatti_home())
            .env("BHATTI_CONFIG", self.server_config())
            .timeout(Duration::from_secs(30));
        cmd
    }

    /// Starts `bhatti serve` on a free loopback port.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with("")
    }

    /// Starts `bhatti serve` with extra server config YAML.
    pub fn start_daemon_with(&self, extra_yaml: &str) -> Daemon {
        std::fs::write(
            self.server_config(),
            format!(
                "listen: 127.0.0.1:0\ndata_dir: {}\nengine: none\nlog_level: warn\nshutdown_grace_secs: 2\n{extra_yaml}",
                self.data_dir().display()
            ),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("bhatti"));
        for var in SCRUB {
            cmd.env_remove(var);
        }
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let child = cmd
            .arg("serve")
            .env("HOME", self.home())
            .env("BHATTI_HOME", self.bhatti_home())
            .env("BHATTI_CONFIG", self.server_config())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn bhatti serve");
        let mut daemon = Daemon {
            child,
            url: String::new(),
            admin_key: String::new(),
            log: self.dir.path().join("serve.log"),
        };
        // First start writes the admin key and the real URL (port 0 resolved) to BHATTI_HOME.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.cli_config()) {
                let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_default();
                if let (Some(u), Some(t)) = (v["api_url"].as_str(), v["auth_token"].as_str()) {
                    daemon.url = u.to_string();
                    daemon.admin_key = t.to_string();
                    break;
                }
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("bhatti serve exited ({status}):\n{}", daemon.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not start:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.wait_ready();
        daemon
    }

    /// Inserts a sandbox row straight into the store (the engine cannot run sandboxes yet),
    /// owned by the user `owner_id`.
    pub fn insert_sandbox(&self, owner_id: &str, name: &str, id: &str) {
        let store = Store::open(&self.data_dir().join("state.db")).unwrap();
        let row = sandboxes::SandboxRow {
            id: id.into(),
            name: name.into(),
            template_id: String::new(),
            engine: "namespace".into(),
            engine_id: format!("e{}", &id[1..]),
            status: "running".into(),
            ip: "10.0.1.2".into(),
            engine_meta: serde_json::json!({}),
            created_by: owner_id.into(),
            created_at: "2026-11-29T01:00:00Z".into(),
            stopped_at: None,
            agent_token: "t".into(),
            keep_hot: false,
            cpus: 2.0,
            memory_mb: 512,
            disk_size_mb: 0,
            image: "minimal".into(),
            labels: [("team".to_string(), "a".to_string())].into(),
            subnet_index: 1,
            launch: Default::default(),
        };
        store.with(|c| sandboxes::insert(c, &row)).unwrap();
    }
}

/// A running `bhatti serve`; stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Child,
    pub url: String,
    pub admin_key: String,
    log: PathBuf,
}

impl Daemon {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let addr = self
            .url
            .trim_start_matches("http://")
            .parse::<std::net::SocketAddr>()
            .expect("loopback url");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "daemon not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stdout of a finished command as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a finished command as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses stdout as JSON.
pub fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(out)))
}

/// File mode bits.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}
