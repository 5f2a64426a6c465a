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
use bhatti_proto::msg::ExecRequest;
use common::*;

/// The guest kernel: `BHATTI_VM_KERNEL`, else one scripts/vm-kernel unpacked before the tests
/// (scripts/test runs it; tests themselves never download anything).
fn kernel() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BHATTI_VM_KERNEL") {
        return Some(PathBuf::from(p));
    }
    bhatti_engine::vm::find_kernel(&[PathBuf::from("/var/tmp/bhatti-vm-kernel")])
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
        // Each test's own cache (base disk and initramfs take well under a second to build for
        // `tiny`): a shared one would let one test's engine prune files another test is
        // using when lohar is rebuilt between them.
        cache_dir: dir.join("cache"),
        images_dir: images_dir(),
        lohar: lohar_bin(),
        kernel: kernel().expect("guest kernel"),
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
        uid_base: Some(1_600_000_000 + (std::process::id() % 1000) * 1000),
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
            if !is_root() || qemu().is_none() || kernel().is_none() {
                eprintln!(
                    "SKIP {}: needs root, qemu-system-x86 and a guest kernel (scripts/vm-kernel)",
                    stringify!($name)
                );
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
        sp.cpus = 1.5;
        sp.memory_mb = 384;
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
        // An idle guest does not look busy to the thermal manager: usage() counts only CPU
        // beyond an idle guest's own emulation cost.
        let u0 = t.engine.usage(&s.engine_id).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let u1 = t.engine.usage(&s.engine_id).await.unwrap();
        assert!(
            u1 - u0 < 20_000,
            "idle guest counted {} µs busy in 2 s",
            u1 - u0
        );
        // Limits: vCPUs and RAM as asked; QEMU unprivileged, seccomp-filtered, in a cgroup
        // capped at guest RAM + overhead (+ the TCG translation cache).
        let o = sh(&s, "nproc; grep MemTotal /proc/meminfo").await;
        let out = stdout(&o);
        let mut l = out.lines();
        assert_eq!(l.next(), Some("2"), "{out}");
        let kb: u64 = l
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (300_000..=384 * 1024).contains(&kb),
            "MemTotal {kb} kB for 384 MiB"
        );
        let pid = t.engine.qemu_pid(&s.engine_id).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        // Its own uid: uid_base + n, nobody else's.
        let uid = t.engine.meta(&s.engine_id).unwrap().uid.unwrap();
        assert!(
            status.contains(&format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}")),
            "{status}"
        );
        assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
        assert!(status.contains("Seccomp:\t2"), "{status}");
        let cg = t.engine.cgroup(&s.engine_id).unwrap();
        assert!(cg.pids().unwrap().contains(&pid));
        let mem_dir = cg
            .dirs()
            .into_iter()
            .find(|d| d.join("memory.max").exists() || d.join("memory.limit_in_bytes").exists())
            .unwrap();
        let limit: u64 = std::fs::read_to_string(mem_dir.join("memory.max"))
            .or_else(|_| std::fs::read_to_string(mem_dir.join("memory.limit_in_bytes")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(limit, (384 + 256 + 64) << 20);

        // stop/start: as in the original, stop snapshots the memory (QEMU gone) and start
        // restores it: files, address and processes intact.
        sh(
            &s,
            "echo persisted > /workspace/p.txt; sleep 1000 > /dev/null 2>&1 &",
        )
        .await;
        let sleeper = stdout(&sh(&s, "pidof sleep").await);
        assert!(!sleeper.is_empty());
        t.engine.stop(&s.engine_id).await.unwrap();
        assert!(t.engine.qemu_pid(&s.engine_id).is_none());
        assert!(t.engine.cgroup(&s.engine_id).is_none());
        assert_eq!(
            t.engine.state(&s.engine_id).await.unwrap(),
            RunState::Stopped
        );
        let c = t.engine.start(&sp).await.expect("start");
        assert_eq!(c.ip, Some(s.ip), "keeps its address");
        let s = Sandbox {
            client: AgentClient::new(t.engine.agent(&s.engine_id).await.unwrap()),
            ..s
        };
        assert_eq!(stdout(&sh(&s, "cat /workspace/p.txt").await), "persisted");
        assert_eq!(
            stdout(&sh(&s, "pidof sleep").await),
            sleeper,
            "processes survive stop/start"
        );
        t.engine.destroy(&s.engine_id).await.unwrap();
    }
);

async fn read_until(ch: &mut bhatti_engine::agent::AgentChannel, needle: &str) -> String {
    use bhatti_engine::agent::AgentEvent;
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
                Some(AgentEvent::Exit(c)) => panic!("exited ({c}) before {needle:?}"),
                Some(_) => {}
                None => panic!("closed before {needle:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timeout waiting for {needle:?}"));
    String::from_utf8_lossy(&out).into_owned()
}

async fn session_id(ch: &mut bhatti_engine::agent::AgentChannel) -> String {
    match ch.next_event().await.unwrap() {
        Some(bhatti_engine::agent::AgentEvent::SessionInfo(i)) => i.session_id,
        other => panic!("expected SessionInfo, got {other:?}"),
    }
}

async fn count(s: &Sandbox) -> u64 {
    stdout(&sh(s, "cat /tmp/count").await).parse().unwrap_or(0)
}

/// The counter in the background session still counts: it moves on within a few seconds.
async fn assert_counting(s: &Sandbox, what: &str) {
    let a = count(s).await;
    let t0 = Instant::now();
    loop {
        let b = count(s).await;
        if b > a {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what}: counter stuck at {a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

vm_test!(
    warm_and_cold_wake_keep_processes_sessions_and_files,
    || async {
        let t = vm_engine().await;
        let s = boot(&t, &spec("vm-thermal", "tiny", 1)).await;
        let dir = t.dir.path().join("sandboxes").join(&s.engine_id);
        // A detached TTY session with a marker in its scrollback, counting in the background.
        let mut ch = s
        .client
        .exec_stream(&ExecRequest {
            tty: true,
            ..ExecRequest::command([
                "/bin/sh",
                "-c",
                "echo scroll-$((6*7)); i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done",
            ])
        })
        .await
        .unwrap();
        let sid = session_id(&mut ch).await;
        read_until(&mut ch, "scroll-42").await;
        drop(ch);
        assert_counting(&s, "before").await;
        sh(&s, "echo kept > /workspace/keep.txt").await;

        // Warm: vCPUs stopped, QEMU and its memory stay.
        t.engine.pause(&s.engine_id).await.unwrap();
        assert_eq!(
            t.engine.state(&s.engine_id).await.unwrap(),
            RunState::Paused
        );
        let t0 = Instant::now();
        t.engine.resume(&s.engine_id).await.unwrap();
        let warm_wake = t0.elapsed();
        assert_counting(&s, "after warm").await;

        // Cold: memory to disk, QEMU gone; wake restores it. Five cycles, each checked.
        let mut cold_wakes = Vec::new();
        let mut cold_saves = Vec::new();
        for i in 0..5 {
            sh(&s, &format!("echo {i} > /workspace/cycle-{i}")).await;
            let t0 = Instant::now();
            t.engine.hibernate(&s.engine_id).await.unwrap();
            cold_saves.push(t0.elapsed());
            assert!(
                t.engine.qemu_pid(&s.engine_id).is_none(),
                "QEMU exits when cold"
            );
            assert!(dir.join("memory.snap").is_file());
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("memory.snap"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "guest memory is root-only");
            assert_eq!(
                t.engine.state(&s.engine_id).await.unwrap(),
                RunState::Paused
            );
            let t0 = Instant::now();
            t.engine.resume(&s.engine_id).await.unwrap();
            let o = sh(&s, "cat /workspace/keep.txt").await;
            cold_wakes.push(t0.elapsed());
            assert_eq!(stdout(&o), "kept");
            assert!(
                !dir.join("memory.snap").exists(),
                "snapshot removed after wake"
            );
            let o = sh(&s, "cat /workspace/cycle-*").await;
            let want: Vec<String> = (0..=i).map(|k| k.to_string()).collect();
            assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), want, "cycle {i}");
            assert_counting(&s, &format!("after cold wake {i}")).await;
        }
        eprintln!(
            "warm wake {warm_wake:?}; cold (snapshot + exit) {cold_saves:?}; \
             cold wake → first exec {cold_wakes:?}"
        );
        // The guest's clock does not stay behind by the time it spent cold (its clock stops
        // with QEMU; lohar steps it to the RTC, which QEMU keeps at host time).
        t.engine.hibernate(&s.engine_id).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        t.engine.resume(&s.engine_id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let guest: i64 = stdout(&sh(&s, "date +%s").await).parse().unwrap();
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (host - guest).abs() <= 2,
            "guest clock {guest}, host {host}"
        );
        // The detached session survived every cycle, scrollback and all.
        let sessions = s.client.list_sessions().await.unwrap();
        assert!(
            sessions
                .iter()
                .any(|x| x.session_id == sid && x.running && !x.attached),
            "{sessions:?}"
        );
        let mut ch = s
            .client
            .exec_stream(&ExecRequest {
                session_id: Some(sid.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(session_id(&mut ch).await, sid);
        let out = read_until(&mut ch, "scroll-42").await;
        assert!(out.starts_with("scroll-42"), "{out:?}");
        drop(ch);

        // Destroy removes QEMU, TAP, overlay, config disk and cgroup.
        let pid = t.engine.qemu_pid(&s.engine_id).unwrap();
        let tap = format!("bh-{}", &s.engine_id[..8]);
        let cg = t.engine.cgroup(&s.engine_id).unwrap();
        t.engine.destroy(&s.engine_id).await.unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!dir.exists(), "sandbox dir (overlay, config disk) removed");
        assert!(t.engine.network().settle(Duration::from_secs(5)).await);
        let links = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&links.stdout).contains(&tap));
        assert!(cg.dirs().iter().all(|d| !d.exists()), "cgroup removed");
        assert_eq!(
            t.engine.state(&s.engine_id).await.unwrap(),
            RunState::Missing
        );
    }
);

vm_test!(
    daemon_restart_reattaches_running_and_cold_vms_and_sweeps_orphans,
    || async {
        let mut t = vm_engine().await;
        let spec_a = spec("vm-live", "tiny", 1);
        let spec_b = spec("vm-cold", "tiny", 1);
        let spec_c = spec("vm-orphan", "tiny", 2);
        let a = boot(&t, &spec_a).await;
        sh(&a, "sleep 1000 > /dev/null 2>&1 &").await;
        let sleeper = stdout(&sh(&a, "pidof sleep").await);
        let b = boot(&t, &spec_b).await;
        sh(&b, "echo cold-file > /workspace/f").await;
        t.engine.hibernate(&b.engine_id).await.unwrap();
        let c = boot(&t, &spec_c).await;
        // A stopped VM (memory on disk), which the server does not list at recovery.
        let spec_d = spec("vm-stopped", "tiny", 1);
        let dd = boot(&t, &spec_d).await;
        sh(&dd, "sleep 2000 > /dev/null 2>&1 &").await;
        let sleeper_d = stdout(&sh(&dd, "pidof sleep").await);
        t.engine.stop(&dd.engine_id).await.unwrap();
        let qemu_a = t.engine.qemu_pid(&a.engine_id).unwrap();
        let qemu_c = t.engine.qemu_pid(&c.engine_id).unwrap();

        // The daemon dies without cleaning up (the engine value is simply gone); its VMs run on.
        let cfg = t.engine.config().clone();
        // A stopped VM's directory (its files) is not running, so it is not listed either:
        // the sweep must keep it.
        let stopped_dir = cfg.sandboxes_dir.join(rand_hex(8));
        std::fs::create_dir_all(&stopped_dir).unwrap();
        std::fs::write(stopped_dir.join("stopped"), b"").unwrap();
        // One whose QEMU dies while the daemon is down: booted again over its overlay.
        let spec_e = spec("vm-died", "tiny", 1);
        let e = boot(&t, &spec_e).await;
        sh(&e, "echo survived > /workspace/e.txt; sync").await;
        let qemu_e = t.engine.qemu_pid(&e.engine_id).unwrap();
        let old = std::mem::replace(&mut t.engine, Arc::new(VmEngine::new(cfg).await.unwrap()));
        drop(old);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(qemu_e),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(std::path::Path::new(&format!("/proc/{qemu_a}")).exists());
        let mut results = t
            .engine
            .recover(vec![spec_a.clone(), spec_b.clone(), spec_e.clone()])
            .await;
        results.sort_by(|x, y| x.0.cmp(&y.0));
        for (id, r) in &results {
            assert!(r.is_ok(), "{id}: {r:?}");
        }
        // Each VM's QEMU has a uid of its own.
        let uid_a = t.engine.meta(&a.engine_id).unwrap().uid;
        let uid_b = t.engine.meta(&b.engine_id).unwrap().uid;
        assert!(uid_a.is_some() && uid_a != uid_b, "{uid_a:?} {uid_b:?}");
        // The running VM was adopted, not rebooted: same QEMU, same processes.
        assert_eq!(t.engine.qemu_pid(&a.engine_id), Some(qemu_a));
        let a = Sandbox {
            client: AgentClient::new(t.engine.agent(&a.engine_id).await.unwrap()),
            ..a
        };
        assert_eq!(stdout(&sh(&a, "pidof sleep").await), sleeper);
        // The cold one wakes on demand with its files.
        t.engine.resume(&b.engine_id).await.unwrap();
        let b = Sandbox {
            client: AgentClient::new(t.engine.agent(&b.engine_id).await.unwrap()),
            ..b
        };
        assert_eq!(stdout(&sh(&b, "cat /workspace/f").await), "cold-file");
        assert!(
            stopped_dir.join("stopped").exists(),
            "a stopped VM survives the sweep"
        );
        // The dead one runs again (a new QEMU) with its files.
        let new_e = t.engine.qemu_pid(&e.engine_id).expect("rebooted");
        assert_ne!(new_e, qemu_e);
        let e = Sandbox {
            client: AgentClient::new(t.engine.agent(&e.engine_id).await.unwrap()),
            ..e
        };
        assert_eq!(stdout(&sh(&e, "cat /workspace/e.txt").await), "survived");
        t.engine.destroy(&e.engine_id).await.unwrap();
        // The one nobody asked for is gone, QEMU and TAP included.
        assert!(!std::path::Path::new(&format!("/proc/{qemu_c}")).exists());
        assert!(!t.dir.path().join("sandboxes").join(&c.engine_id).exists());
        assert!(t.engine.network().settle(Duration::from_secs(5)).await);
        let links = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&links.stdout).contains(&format!("bh-{}", &c.engine_id[..8]))
        );
        // The stopped one starts after the restart with its processes (its TAP and address
        // were kept for it).
        let c_d = t.engine.start(&spec_d).await.expect("start the stopped VM");
        assert_eq!(c_d.ip, Some(dd.ip));
        let dd = Sandbox {
            client: AgentClient::new(t.engine.agent(&dd.engine_id).await.unwrap()),
            ..dd
        };
        assert_eq!(stdout(&sh(&dd, "pidof sleep").await), sleeper_d);
        t.engine.destroy(&a.engine_id).await.unwrap();
        t.engine.destroy(&b.engine_id).await.unwrap();
        t.engine.destroy(&dd.engine_id).await.unwrap();
    }
);

vm_test!(failed_create_leaves_nothing_behind, || async {
    // A QEMU that fails at once (no VM boots: cheap): every resource of the create is undone.
    ensure_image("tiny");
    let dir = tempfile::tempdir().unwrap();
    let parent = format!("bhatti-vmtest-{}", rand_hex(4));
    let cfg = VmConfig {
        qemu: PathBuf::from("/bin/false"),
        ..vm_config(dir.path(), &parent)
    };
    let engine = VmEngine::new(cfg).await.expect("vm engine starts");
    let t = VmTest {
        engine: Arc::new(engine),
        dir,
        cgroup_parent: parent,
    };
    let sp = spec("vm-fails", "tiny", 1);
    let err = t.engine.create(&sp).await.unwrap_err();
    assert!(err.to_string().contains("start qemu"), "{err}");
    assert!(!t.dir.path().join("sandboxes").join(&sp.id).exists());
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("bh-") && !links.contains("brbhatti"),
        "{links}"
    );
    let cg = bhatti_engine::cgroups::Cgroups::detect(&t.cgroup_parent).unwrap();
    assert!(cg.list().unwrap_or_default().is_empty());
    assert_eq!(t.engine.state(&sp.id).await.unwrap(), RunState::Missing);
    // An unknown image is a clear error before anything is made.
    let err = t
        .engine
        .create(&spec("vm-noimg", "no-such-image", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, bhatti_engine::EngineError::ImageNotFound(_)),
        "{err}"
    );
});
