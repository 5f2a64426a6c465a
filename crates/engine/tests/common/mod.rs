//! Shared harness of the engine's root tests: a private network namespace per test, a fresh
//! engine in a temp dir, shared test images, the static lohar.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bhatti_engine::agent::{AgentClient, ExecOutput};
use bhatti_engine::namespace::{NamespaceConfig, NamespaceEngine};
use bhatti_engine::net::NetConfig;
use bhatti_engine::{Engine, SandboxSpec};
use bhatti_proto::msg::ExecRequest;

/// Whether this test process can run the root tests.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `f` on a fresh thread inside a new network namespace with its own single-threaded
/// runtime, so bridges, veths and firewall rules never touch the host's namespace.
pub fn in_netns<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let h = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
        // lo is down in a fresh namespace.
        let _ = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f());
    });
    if let Err(e) = h.join() {
        std::panic::resume_unwind(e);
    }
}

/// The static lohar (built by scripts/build-lohar; `LOHAR_BIN` overrides).
pub fn lohar_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LOHAR_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(root.join("scripts/build-lohar"))
        .output()
        .expect("run scripts/build-lohar");
    assert!(
        out.status.success(),
        "build-lohar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Test images live here across runs (`BHATTI_TEST_IMAGES` overrides).
pub fn images_dir() -> PathBuf {
    std::env::var_os("BHATTI_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/bhatti-test-images"))
}

/// Makes sure the named test image exists (built once, under a lock).
pub fn ensure_image(name: &str) {
    let dir = images_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let store = bhatti_engine::image::ImageStore::new(&dir).unwrap();
    if store.exists(name) {
        return;
    }
    match name {
        "tiny" => {
            bhatti_engine::image::build_busybox(&store, "tiny").expect("build tiny image");
        }
        "minimal" => {
            bhatti_engine::image::build_minimal(&store, "minimal", |l| eprintln!("[minimal] {l}"))
                .expect("build minimal image");
        }
        other => panic!("unknown test image {other}"),
    }
}

/// A running engine in a temp dir.
pub struct TestEngine {
    pub engine: Arc<NamespaceEngine>,
    pub dir: tempfile::TempDir,
    pub cgroup_parent: String,
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        // Sandboxes a failed test left running die with their cgroups; then the parent goes.
        if let Ok(cg) = bhatti_engine::cgroups::Cgroups::detect(&self.cgroup_parent) {
            if let Ok(keys) = cg.list() {
                for k in keys {
                    if let Some(g) = cg.open(&k) {
                        let _ = g.destroy();
                    }
                }
            }
            let _ = cg.remove_parent();
        }
    }
}

pub async fn engine() -> TestEngine {
    ensure_image("tiny");
    let dir = tempfile::tempdir().unwrap();
    let parent = format!("bhatti-test-{}", rand_hex(4));
    let cfg = NamespaceConfig {
        sandboxes_dir: dir.path().join("sandboxes"),
        images_dir: images_dir(),
        lohar: lohar_bin(),
        helper: vec![env!("CARGO_BIN_EXE_bhatti-nsinit").to_string()],
        uid_base: 2_000_000 + (std::process::id() % 200) * 65_536 * 8,
        max_sandboxes: 64,
        cgroup_parent: parent.clone(),
        pids_max: 256,
        net: NetConfig::default(),
        dns: vec![],
        ready_timeout: Duration::from_secs(20),
    };
    let engine = NamespaceEngine::new(cfg).await.expect("engine starts");
    TestEngine {
        engine: Arc::new(engine),
        dir,
        cgroup_parent: parent,
    }
}

pub fn rand_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A spec with sensible test defaults.
pub fn spec(name: &str, image: &str, subnet_index: u32) -> SandboxSpec {
    SandboxSpec {
        id: rand_hex(8),
        name: name.into(),
        user_id: format!("usr_{subnet_index:08}"),
        subnet_index,
        image: image.into(),
        cpus: 1.0,
        memory_mb: 256,
        env: BTreeMap::new(),
        files: vec![],
        init: None,
        agent_token: rand_hex(16),
        engine: String::new(),
    }
}

/// A created sandbox and a client for its lohar.
pub struct Sandbox {
    pub engine_id: String,
    pub client: AgentClient,
    pub ip: std::net::Ipv4Addr,
}

pub async fn create(t: &TestEngine, spec: &SandboxSpec) -> Sandbox {
    let c = t.engine.create(spec).await.expect("create");
    let ep = t.engine.agent(&c.engine_id).await.unwrap();
    Sandbox {
        engine_id: c.engine_id,
        client: AgentClient::new(ep),
        ip: c.ip.unwrap(),
    }
}

/// Runs `sh -c script` in the sandbox.
pub async fn sh(s: &Sandbox, script: &str) -> ExecOutput {
    s.client
        .exec(
            &ExecRequest::command(["/bin/sh", "-c", script]),
            None,
            Some(Duration::from_secs(60)),
        )
        .await
        .expect("exec")
}

pub fn stdout(o: &ExecOutput) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Host resources a sandbox could leak.
#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    pub links: Vec<String>,
    pub mounts: usize,
    pub cgroups: Vec<String>,
}

pub fn footprint(parent: &str) -> Footprint {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let mut links: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|s| s.split('@').next().unwrap_or(s).to_string())
        })
        .filter(|n| n.starts_with("bh-") || n.starts_with("brbhatti"))
        .collect();
    links.sort();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let mut cgroups = Vec::new();
    for base in ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"] {
        let p = Path::new(base).join(parent);
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    cgroups.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    cgroups.sort();
    Footprint {
        links,
        mounts,
        cgroups,
    }
}
