//! The vm engine through the real stack: `bhatti create --engine vm` on a daemon running the
//! namespace and vm engines, a real QEMU guest (TCG where the host has no usable KVM), the
//! thermal manager taking it warm then cold and an exec waking it with its processes alive,
//! and a SIGKILLed daemon re-attaching to the running VM. One VM boot in all (seconds of CPU
//! under TCG).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Daemon, Tmux, BHATTI};
use crate::require_e2e;

/// A new pane of `tmux` running `bhatti shell dev` against `d`.
fn shell_pane(tmux: &Tmux, d: &Daemon, pane: &str) {
    let cmd = format!(
        "env BHATTI_URL={url} BHATTI_TOKEN={tok} HOME=/nonexistent nsenter --net=/proc/{pid}/ns/net {bin} shell dev; echo BHATTI-EXIT-$?; sleep 600",
        url = d.url(),
        tok = d.token,
        pid = d.netns_pid(),
        bin = BHATTI,
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        pane,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
}

/// `BHATTI_VM_KERNEL`, else one scripts/vm-kernel unpacked before the tests (no downloads here).
fn kernel() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("BHATTI_VM_KERNEL") {
        return Some(PathBuf::from(k));
    }
    bhatti_engine::vm::find_kernel(&[PathBuf::from("/var/tmp/bhatti-vm-kernel")])
}

/// Kills whatever QEMU a failed test left (its cgroup), after the daemon is gone.
struct VmCgroups(String);

impl Drop for VmCgroups {
    fn drop(&mut self) {
        if let Ok(cg) = bhatti_engine::cgroups::Cgroups::detect(&self.0) {
            for k in cg.list().unwrap_or_default() {
                if let Some(g) = cg.open(&k) {
                    let _ = g.destroy();
                }
            }
            let _ = cg.remove_parent();
        }
    }
}

fn sandbox(d: &Daemon, name: &str) -> serde_json::Value {
    d.list()
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sandbox {name}"))
}

fn wait_thermal(d: &Daemon, name: &str, want: &str, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if sandbox(d, name)["thermal"] == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn count(d: &Daemon) -> u64 {
    // 0 until the counter has written its file.
    let (_, out, _) = d.cli(&["exec", "dev", "--", "cat", "/tmp/count"]);
    out.trim().parse().unwrap_or(0)
}

fn assert_counting(d: &Daemon, what: &str) {
    let a = count(d);
    let t0 = Instant::now();
    while count(d) <= a {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{what}: counter stuck at {a}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Alive and not a zombie (a QEMU that outlived its daemon is reaped by init, eventually).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn qemu_pid(vm_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(vm_dir.join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

#[test]
fn vm_sandbox_create_exec_files_cold_wake_and_daemon_restart() {
    require_e2e!();
    let Some(kernel) = kernel().filter(|k| k.is_file()) else {
        eprintln!("SKIP: no guest kernel (scripts/vm-kernel)");
        return;
    };
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        eprintln!("SKIP: qemu-system-x86 not installed");
        return;
    }
    let vm_parent = format!("bhatti-e2e-vm-{}", std::process::id());
    let _guard = VmCgroups(vm_parent.clone());
    let mut d = Daemon::start_with(&format!(
        "engines: [vm]\nvm:\n  kernel: {}\n  cgroup_parent: {vm_parent}\n  disk_size_mb: 1024\n\
         thermal:\n  tick_ms: 250\n  warm_after_ms: 2000\n  cold_after_ms: 1000\n  wake_timeout_ms: 30000\n",
        kernel.display()
    ));
    let t0 = Instant::now();
    d.ok(&[
        "create", "--engine", "vm", "--name", "dev", "--image", "tiny", "--memory", "256",
    ]);
    eprintln!("vm create took {:?}", t0.elapsed());
    // An engine that is not enabled is a clear error.
    let (code, _, err) = d.cli(&[
        "create", "--engine", "gvisor", "--name", "x", "--image", "tiny",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not enabled"), "{err}");

    // inspect shows the engine and the accelerator.
    let info: serde_json::Value =
        serde_json::from_str(&d.ok(&["--json", "inspect", "dev"])).unwrap();
    assert_eq!(info["engine_meta"]["engine"], "vm", "{info}");
    let accel = info["engine_meta"]["accel"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let want = if bhatti_engine::vm::probe_kvm() {
        "kvm"
    } else {
        "tcg"
    };
    assert_eq!(accel, want, "{info}");
    let human = d.ok(&["inspect", "dev"]);
    assert!(human.contains(&format!("Engine:   vm ({want})")), "{human}");
    let eid = info["engine_id"].as_str().unwrap().to_string();
    let vm_dir = d.data_dir().join("vm/sandboxes").join(&eid);

    // A real guest: its own kernel; processes as uid 1000.
    let host = nix::sys::utsname::uname().unwrap();
    let out = d.ok(&["exec", "dev", "--", "sh", "-c", "uname -r; id -u"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], host.release().to_string_lossy(), "{out}");
    assert_eq!(lines[1], "1000", "{out}");

    // Files round trip.
    let (code, _, err) = d.cli_stdin(
        &["file", "write", "dev", "/workspace/data.txt"],
        b"vm file contents\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        d.ok(&["file", "read", "dev", "/workspace/data.txt"]),
        "vm file contents\n"
    );

    // A shell session: type, detach with Ctrl+\\ (it keeps running, unattached).
    let tmux = Tmux::new(
        format!("bhatti-e2e-vm-{}", std::process::id()),
        Duration::from_secs(30),
    );
    shell_pane(&tmux, &d, "a");
    tmux.run(&["send-keys", "-t", "a", "echo hello-$((40+2))", "Enter"]);
    tmux.wait_for("a", "hello-42");
    tmux.run(&["send-keys", "-t", "a", "C-\\"]);
    tmux.wait_for("a", "BHATTI-EXIT-0");

    // A background counter; the VM idles warm, then cold (QEMU gone, memory on disk).
    d.ok(&[
        "exec",
        "dev",
        "--",
        "sh",
        "-c",
        "while :; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done >/dev/null 2>&1 </dev/null &",
    ]);
    assert_counting(&d, "before cooling");
    assert!(
        wait_thermal(&d, "dev", "cold", Duration::from_secs(60)),
        "never went cold: {}\n{}",
        sandbox(&d, "dev"),
        d.log()
    );
    assert!(qemu_pid(&vm_dir).is_none(), "QEMU still runs while cold");
    assert!(vm_dir.join("memory.snap").is_file());
    // An exec wakes it; the counter is still counting, the file is there.
    let t0 = Instant::now();
    assert_eq!(
        d.ok(&["file", "read", "dev", "/workspace/data.txt"]),
        "vm file contents\n"
    );
    eprintln!("cold wake + file read took {:?}", t0.elapsed());
    assert_counting(&d, "after cold wake");
    // The detached shell survived the cold snapshot: reattaching replays its scrollback and
    // the same shell answers.
    shell_pane(&tmux, &d, "b");
    tmux.wait_for("b", "hello-42");
    tmux.run(&["send-keys", "-t", "b", "echo again-$((1+1))", "Enter"]);
    tmux.wait_for("b", "again-2");
    tmux.run(&["send-keys", "-t", "b", "exit", "Enter"]);
    tmux.wait_for("b", "BHATTI-EXIT-0");
    assert_eq!(sandbox(&d, "dev")["thermal"], "hot");
    let data = d.data_dir().to_string_lossy().into_owned();
    let events = d.ok(&["admin", "events", "--type", "thermal", "--data-dir", &data]);
    assert!(events.contains("thermal.cool"), "{events}");

    // The daemon dies with SIGKILL while the VM runs; after a restart it re-attaches (same
    // QEMU) and the processes are still there.
    let pid = qemu_pid(&vm_dir).expect("QEMU runs when hot");
    d.ok(&["edit", "dev", "--keep-hot"]);
    d.kill9();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU outlives the daemon"
    );
    d.spawn_daemon();
    assert_counting(&d, "after daemon restart");
    assert_eq!(qemu_pid(&vm_dir), Some(pid), "re-attached, not rebooted");

    // stop/start: the memory goes to disk and comes back — the counter keeps counting.
    d.ok(&["stop", "dev"]);
    assert_eq!(sandbox(&d, "dev")["status"], "stopped");
    assert!(qemu_pid(&vm_dir).is_none(), "QEMU ends at stop");
    d.ok(&["start", "dev"]);
    assert_counting(&d, "after stop/start");
    let pid = qemu_pid(&vm_dir).expect("QEMU runs after start");

    // Destroy removes QEMU, TAP, overlay and config disk.
    d.ok(&["destroy", "dev", "-y"]);
    assert!(!alive(pid));
    assert!(!vm_dir.exists());
    assert!(
        d.links().iter().all(|l| !l.starts_with("bh-")),
        "{:?}",
        d.links()
    );
}
