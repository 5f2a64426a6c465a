//! The vm engine against real QEMU (root only; TCG on hosts without usable KVM, so each boot
//! costs a few seconds of CPU: the set is kept small, and each test checks several things on
//! one VM). Each test runs in its own network namespace.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bhatti_engine::agent::AgentClient;
use bhatti_engine::net::NetConfig;
use bhatti_engine::vm::{VmConfig, VmEngine};
use bhatti_engine::{Engine, RunState, SandboxSpec};
use common::*;

/// The guest kernel (`BHATTI_VM_KERNEL`, else scripts/vm-kernel unpacks Debian's cloud kernel).
fn kernel() -> PathBuf {
    if let Some(p) = std::env::var_os("BHATTI_VM_KERNEL") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(root.join("scripts/vm-kernel"))
        .output()
        .expect("run scripts/vm-kernel");
    assert!(
        out.status.success(),
        "vm-kernel failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn qemu() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/qemu-system-x86_64");
    p.is_file().then_some(p)
}

struct VmTest {
    engine: Arc<VmEngine>,
    dir: tempfile::TempDir,
    cgroup_parent: String,
}

impl Drop for VmTest {
    fn drop(&mut self) {
        // A failed test's VMs: kill their QEMUs (pid files), then the cgroups.
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("sandboxes")) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = self.engine.qemu_pid(&id) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
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

fn vm_config(dir: &Path, cgroup_parent: &str) -> VmConfig {
    VmConfig {
        sandboxes_dir: dir.join("sandboxes"),
        // The base disks and initramfs are cached across test runs, as in a real data dir.
        cache_dir: PathBuf::from("/var/tmp/bhatti-vm-test-cache"),
        images_dir: images_dir(),
        lohar: lohar_bin(),
        kernel: kernel(),
        modules_dir: None,
        modules: bhatti_engine::vm::initramfs::DEFAULT_MODULES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        qemu: qemu().unwrap(),
        accel: None,
        disk_size_mb: 1024,
        memory_overhead_mb: 256,
        tcg_tb_mb: 64,
        runas: None,
        console_log: std::env::var_os("BHATTI_VM_CONSOLE").is_some(),
        cgroup_parent: cgroup_parent.to_string(),
        net: NetConfig::default(),
        dns: vec![],
        ready_timeout: Duration::from_secs(90),
    }
}

async fn vm_engine() -> VmTest {
    ensure_image("tiny");
    let dir = tempfile::tempdir().unwrap();
    let parent = format!("bhatti-vmtest-{}", rand_hex(4));
    let engine = VmEngine::new(vm_config(dir.path(), &parent))
        .await
        .expect("vm engine starts");
    VmTest {
        engine: Arc::new(engine),
        dir,
        cgroup_parent: parent,
    }
}

async fn boot(t: &VmTest, sp: &SandboxSpec) -> Sandbox {
    let t0 = Instant::now();
    let c = t.engine.create(sp).await.expect("create VM");
    eprintln!("VM {} booted in {:?}", c.engine_id, t0.elapsed());
    let ep = t.engine.agent(&c.engine_id).await.unwrap();
    Sandbox {
        engine_id: c.engine_id,
        client: AgentClient::new(ep),
        ip: c.ip.unwrap(),
    }
}

macro_rules! vm_test {
    ($name:ident, $body:expr) => {
        #[test]
        fn $name() {
            if !is_root() || qemu().is_none() {
                eprintln!("SKIP {}: needs root and qemu-system-x86", stringify!($name));
                return;
            }
            in_netns($body);
        }
    };
}

fn host_uname() -> String {
    nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned()
}

vm_test!(
    boots_guest_kernel_runs_as_uid_1000_files_round_trip,
    || async {
        let t = vm_engine().await;
        let mut sp = spec("vm-box", "tiny", 1);
        sp.env.insert("API_KEY".into(), "sk-vm".into());
        sp.files.push(bhatti_engine::SpecFile {
            path: "/workspace/hello.txt".into(),
            content: b"from the config disk".to_vec(),
            mode: 0o640,
        });
        let s = boot(&t, &sp).await;
        let o = sh(
            &s,
            "uname -r; id -u; hostname; echo $API_KEY; cat /workspace/hello.txt",
        )
        .await;
        assert_eq!(o.exit_code, 0, "{o:?}");
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_ne!(lines[0], host_uname(), "the guest runs its own kernel");
        assert!(lines[0].contains("cloud"), "{out}");
        assert_eq!(
            &lines[1..],
            ["1000", "vm-box", "sk-vm", "from the config disk"]
        );
        // Secrets never on the kernel command line; the config disk is scrubbed on the host.
        let o = sh(&s, "cat /proc/cmdline").await;
        assert!(!stdout(&o).contains("sk-vm"), "{o:?}");
        let cfg = std::fs::read(
            t.dir
                .path()
                .join("sandboxes")
                .join(&s.engine_id)
                .join("config.img"),
        )
        .unwrap();
        assert!(cfg.iter().all(|b| *b == 0), "config disk scrubbed");
        // Files round trip through lohar.
        s.client
            .write_file_bytes("/workspace/up.bin", 0o600, b"\x00\x01binary\xff")
            .await
            .expect("write file");
        let back = s
            .client
            .read_file_all("/workspace/up.bin")
            .await
            .expect("read file");
        assert_eq!(back, b"\x00\x01binary\xff");
        // The network: the host reaches lohar on the guest's IP over the TAP (this very
        // exec); the guest has its address and a default route via its user's gateway.
        let gw = t.engine.gateway(1);
        let o = sh(&s, "ip -4 addr show eth0; ip route").await;
        assert_eq!(o.exit_code, 0, "{o:?}");
        let out = stdout(&o);
        assert!(out.contains(&format!("{}/24", s.ip)), "{out}");
        assert!(out.contains(&format!("default via {gw}")), "{out}");
        assert_eq!(
            t.engine.state(&s.engine_id).await.unwrap(),
            RunState::Running
        );
        t.engine.destroy(&s.engine_id).await.unwrap();
    }
);
