//! A daemon per test in its own network namespace and temp dir, and the CLI pointed at it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The real binary under test.
pub const BHATTI: &str = env!("CARGO_BIN_EXE_bhatti");

/// Whether the e2e tests can run here (root; images and a static lohar available).
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    if lohar_bin().is_none() {
        return Some("LOHAR_BIN not set and no static lohar built (run ./scripts/test)".into());
    }
    let images = images_dir();
    if !images.join("tiny/image.json").exists() {
        return Some(format!(
            "test image `tiny` missing in {} (run ./scripts/test)",
            images.display()
        ));
    }
    None
}

/// Skips the calling test (printing why) when e2e cannot run here.
#[macro_export]
macro_rules! require_e2e {
    () => {
        if let Some(why) = $crate::harness::skip_reason() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}

pub fn images_dir() -> PathBuf {
    std::env::var_os("BHATTI_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/bhatti-test-images"))
}

pub fn lohar_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LOHAR_BIN") {
        return Some(PathBuf::from(p));
    }
    let triple = if cfg!(target_arch = "x86_64") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/{triple}/debug/lohar"));
    p.is_file().then_some(p)
}

/// A `bhatti serve` in its own network namespace.
pub struct Daemon {
    child: Option<Child>,
    /// Holds the network namespace open across daemon restarts.
    netns_holder: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub cgroup_parent: String,
    /// The admin key written at first start.
    pub token: String,
    /// Open fds of the daemon process once it first answered (leak check baseline).
    fds_at_start: Option<usize>,
}

fn rand_hex(n: usize) -> String {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A host uid window of its own for each daemon (256 sandboxes × 65 536 ids): daemons of
/// concurrent test binaries differ by pid, daemons within one binary by a counter, so no two
/// live daemons hand out the same host uids.
fn uid_window() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 16;
    let window = u64::from(std::process::id() % 8) * 16 + n;
    100_000_000 + window * 256 * 65_536
}

impl Daemon {
    /// Starts a daemon with the namespace engine on a fresh data dir.
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// Same, with `extra` YAML appended to the daemon's config (e.g. `public_proxy_listen`).
    pub fn start_with(extra: &str) -> Daemon {
        // A user's bridge goes with their last sandbox, so tests can check that a destroy
        // leaves no link; the lingering default has its own test (lifecycle).
        Self::start_config("  bridge_linger_secs: 0\n", extra)
    }

    /// [`Daemon::start_with`], with `namespace_extra` (indented lines) added to the
    /// `namespace:` section instead of the test default.
    pub fn start_config(namespace_extra: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        // A sleeping process owns the namespace; daemons come and go inside it.
        let netns_holder = Command::new("unshare")
            .args(["--net", "sh", "-c", "ip link set lo up; exec sleep 100000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net");
        std::thread::sleep(Duration::from_millis(100));
        let cgroup_parent = format!("bhatti-e2e-{}", rand_hex(4));
        let port = 18080;
        let config = format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\nengine: namespace\nlog_level: warn\nfirst_start_cli_config: {home}/config.yaml\nnamespace:\n  lohar_path: {lohar}\n  images_dir: {images}\n  cgroup_parent: {cgroup_parent}\n  build_default_image: false\n  uid_base: {uid_base}\n  pids_max: 512\n{namespace_extra}",
            data = dir.path().join("data").display(),
            home = dir.path().join("home").display(),
            lohar = lohar_bin().unwrap().display(),
            images = images_dir().display(),
            uid_base = uid_window(),
        );
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let config = format!("{config}{extra}");
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let mut d = Daemon {
            child: None,
            netns_holder,
            dir,
            port,
            cgroup_parent,
            token: String::new(),
            fds_at_start: None,
        };
        d.spawn_daemon();
        let cfg = std::fs::read_to_string(d.dir.path().join("home/config.yaml"))
            .expect("first start wrote the CLI config");
        d.token = cfg
            .lines()
            .find_map(|l| l.strip_prefix("auth_token: "))
            .expect("token in CLI config")
            .trim()
            .to_string();
        d
    }

    /// Pid of the process holding the daemon's network namespace.
    pub fn netns_pid(&self) -> u32 {
        self.netns_holder.id()
    }

    fn netns(&self) -> String {
        format!("--net=/proc/{}/ns/net", self.netns_holder.id())
    }

    /// (Re)starts the daemon process and waits for /health.
    pub fn spawn_daemon(&mut self) {
        let child = Command::new("nsenter")
            .arg(self.netns())
            .arg(BHATTI)
            .arg("serve")
            .env("BHATTI_CONFIG", self.dir.path().join("config.yaml"))
            .env("HOME", self.dir.path().join("home"))
            .stdin(Stdio::null())
            .stdout(self.log_file())
            .stderr(self.log_file())
            .spawn()
            .expect("start bhatti serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = self.cli_raw(&["version"]);
            if String::from_utf8_lossy(&out.stdout).contains("server:") {
                self.fds_at_start = self.daemon_fds();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("bhatti serve exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("bhatti serve did not come up");
    }

    /// Kills the daemon with SIGKILL (sandboxes keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // nsenter execs bhatti, so this is the daemon itself.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to the daemon and waits for it to exit (at most `limit`); returns how
    /// long it took, or `None` if it was still running (then it is SIGKILLed).
    pub fn sigterm(&mut self, limit: Duration) -> Option<Duration> {
        let mut c = self.child.take()?;
        let t0 = Instant::now();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        while t0.elapsed() < limit {
            if c.try_wait().ok().flatten().is_some() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    fn cli_raw(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run bhatti")
    }

    /// The CLI command line for this daemon (stdin null), to run as the caller likes.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(self.netns())
            .arg(BHATTI)
            .args(args)
            .env("BHATTI_URL", format!("http://127.0.0.1:{}", self.port))
            .env("BHATTI_TOKEN", &self.token)
            .env("HOME", self.dir.path().join("nohome"))
            .env_remove("BHATTI_CONFIG")
            .env_remove("BHATTI_FORCE_STREAM")
            .stdin(Stdio::null());
        c
    }

    /// Runs the CLI with `input` on stdin (a pipe); returns (exit code, stdout bytes, stderr).
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bhatti");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let o = child.wait_with_output().unwrap();
        let _ = writer.join();
        (
            o.status.code().unwrap_or(-1),
            o.stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Runs a command (e.g. curl) inside the daemon's network namespace.
    pub fn in_netns(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(self.netns())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// The daemon's base URL (valid inside its network namespace).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs the CLI against this daemon; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.cli_raw(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap()
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs the CLI and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli(args);
        assert_eq!(
            code,
            0,
            "bhatti {args:?} failed: {err}{out}\n--- daemon log ---\n{}",
            self.log()
        );
        out
    }

    /// `bhatti --json list` parsed.
    pub fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["--json", "list"])).unwrap()
    }

    /// Links named like sandbox links inside the daemon's namespace.
    pub fn links(&self) -> Vec<String> {
        let out = Command::new("nsenter")
            .arg(self.netns())
            .args(["ip", "-o", "link", "show"])
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|s| s.split('@').next().unwrap_or(s).to_string())
            })
            .filter(|n| n.starts_with("bh-") || n.starts_with("brbhatti"))
            .collect();
        v.sort();
        v
    }

    /// [`Daemon::links`] once they are `want` (destroy deletes interfaces in the background),
    /// or as they are after 10 s.
    pub fn links_settled(&self, want: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let l = self.links();
            if l == want || Instant::now() > deadline {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sandbox cgroups that exist under this daemon's parent group.
    pub fn cgroups(&self) -> Vec<String> {
        let mut v = Vec::new();
        for base in ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"] {
            if let Ok(rd) = std::fs::read_dir(Path::new(base).join(&self.cgroup_parent)) {
                v.extend(
                    rd.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                );
            }
        }
        v.sort();
        v
    }

    /// Creates another user with `bhatti user create` on the daemon's database; its API key.
    pub fn create_user(&self, name: &str) -> String {
        let data = self.data_dir();
        let out = self.ok(&[
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
            "user",
            "create",
            "--name",
            name,
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["api_key"].as_str().unwrap().to_string()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// What a daemon left on the host: processes in its cgroups or inside its directory, cgroups,
/// sandbox links in its namespace, and mounts under its directory.
#[derive(Debug, Default, PartialEq)]
pub struct Leftovers {
    pub processes: Vec<String>,
    pub cgroups: Vec<String>,
    pub links: Vec<String>,
    pub mounts: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

impl Daemon {
    /// Everything of this daemon's sandboxes still on the host (see [`Leftovers`]). With no
    /// sandbox left in the daemon's list, all of it must be empty.
    pub fn leftovers(&self, with_links: bool) -> Leftovers {
        let dir = self.dir.path().display().to_string();
        let mut processes = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let in_cgroup = std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|c| c.contains(&format!("/{}/", self.cgroup_parent)));
            let in_dir = ["root", "cwd"].iter().any(|l| {
                std::fs::read_link(e.path().join(l)).is_ok_and(|t| t.starts_with(self.dir.path()))
            });
            if in_cgroup || in_dir {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                processes.push(format!("{name} {}", comm.trim()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_string)
            .collect();
        Leftovers {
            processes,
            cgroups: self.cgroups(),
            links: if with_links { self.links() } else { Vec::new() },
            mounts,
        }
    }

    /// Pid of the running daemon process.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Open fds of the running daemon process.
    pub fn daemon_fds(&self) -> Option<usize> {
        let pid = self.child.as_ref()?.id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count())
    }

    /// Lazily unmounts whatever is still mounted under the daemon's directory (deepest first),
    /// so that a failed test does not leave mounts on the host.
    fn unmount_leftovers(&self) {
        let mut points: Vec<String> = self
            .leftovers(false)
            .mounts
            .iter()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// Whether the cgroup parent directory still exists in any hierarchy.
    fn cgroup_parent_exists(&self) -> bool {
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .chain(std::iter::once(PathBuf::from("/sys/fs/cgroup")))
            .any(|base| base.join(&self.cgroup_parent).is_dir())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Leak check, after every e2e test. Sandboxes the test kept are destroyed through the
        // daemon first (the real destroy path); then, with no sandbox listed, nothing may be
        // left (processes, cgroups, links, mounts, daemon fds). Skipped when the test already
        // failed (a panic in a panic aborts).
        let check = !std::thread::panicking() && self.child.is_some();
        let mut leaks = None;
        if check {
            let list = || -> Option<Vec<serde_json::Value>> {
                let o = self.command(&["--json", "list"]).output().ok()?;
                serde_json::from_slice(&o.stdout).ok()
            };
            let kept = list().unwrap_or_default();
            for sb in &kept {
                if let Some(id) = sb["id"].as_str() {
                    let _ = self.command(&["destroy", id, "-y"]).output();
                }
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut empty = list().map(|v| v.is_empty());
            while !kept.is_empty() && empty != Some(true) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                empty = list().map(|v| v.is_empty());
            }
            if empty == Some(true) {
                // Destroy's cleanup may finish just after its answer.
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut l = self.leftovers(true);
                while !l.is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                    l = self.leftovers(true);
                }
                if !l.is_empty() {
                    leaks = Some(format!("{l:?}"));
                }
                // With no sandbox left, the daemon holds about the fds it started with (a few
                // of slack: the store's WAL files, the thermal manager's timers).
                if let (Some(start), Some(now)) = (self.fds_at_start, self.daemon_fds()) {
                    if now > start + 8 {
                        leaks = Some(format!(
                            "{} daemon fds {now}, {start} at start",
                            leaks.unwrap_or_default()
                        ));
                    }
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever a failed test left running dies with its cgroup.
        if let Ok(cg) = bhatti_engine::cgroups::Cgroups::detect(&self.cgroup_parent) {
            for k in cg.list().unwrap_or_default() {
                if let Some(g) = cg.open(&k) {
                    let _ = g.destroy();
                }
            }
            let _ = cg.remove_parent();
        }
        let _ = self.netns_holder.kill();
        let _ = self.netns_holder.wait();
        if std::thread::panicking() {
            self.unmount_leftovers();
            return;
        }
        assert!(
            leaks.is_none(),
            "e2e leak check: all sandboxes destroyed, but left behind: {}",
            leaks.unwrap_or_default()
        );
        // Whatever the test did, the harness's own teardown leaves nothing either.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut l = self.leftovers(false);
        while (!l.is_empty() || self.cgroup_parent_exists()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            l = self.leftovers(false);
        }
        self.unmount_leftovers();
        assert!(
            l.is_empty() && !self.cgroup_parent_exists(),
            "e2e leak check: left behind after teardown: {l:?} (cgroup parent {} exists: {})",
            self.cgroup_parent,
            self.cgroup_parent_exists()
        );
    }
}

/// A private tmux server (a real terminal for `bhatti shell`), killed when dropped.
pub struct Tmux {
    socket: String,
    /// How long [`Tmux::wait_for`] waits.
    wait: Duration,
}

impl Tmux {
    /// A tmux server on its own socket `socket`; `wait_for` gives up after `wait`.
    pub fn new(socket: String, wait: Duration) -> Tmux {
        Tmux { socket, wait }
    }

    /// `tmux <args>` on this server; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The pane's screen and scrollback (200 lines).
    pub fn capture(&self, target: &str) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-200", "-t", target])
    }

    /// Waits until the pane shows `want`; the screen then.
    pub fn wait_for(&self, target: &str, want: &str) -> String {
        let deadline = Instant::now() + self.wait;
        loop {
            let s = self.capture(target);
            if s.contains(want) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{want:?} never appeared in:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}
