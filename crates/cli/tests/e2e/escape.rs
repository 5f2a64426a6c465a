//! Escape and isolation checks through the whole stack (daemon + namespace engine + lohar), as
//! root with real sandboxes. The engine's own checklist (masked /proc, caps, seccomp, network
//! rules…) is in crates/engine/tests; these add what a user of the API could try. Each check
//! runs on the gvisor engine too (`gvisor_*`); where gVisor legitimately differs the
//! expectation is adapted for it alone, with the reason next to it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::gvisor::{Eng, Env};
use crate::harness::Daemon;
use crate::require_e2e;

fn rand_hex(n: usize) -> String {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `sh -c script` in sandbox `name`; returns (exit code, stdout, stderr).
fn sh(d: &Daemon, name: &str, script: &str) -> (i32, String, String) {
    d.cli(&["exec", name, "--", "sh", "-c", script])
}

/// `create --name NAME --image IMAGE` on the suite's engine, plus `extra`.
fn create(env: &Env, name: &str, image: &str, extra: &[&str]) {
    let mut args = vec!["create", "--name", name, "--image", image];
    args.extend_from_slice(&env.flags);
    args.extend_from_slice(extra);
    env.d.ok(&args);
}

/// Runs `f` until it returns true or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The file API runs inside the sandbox's mount namespace: symlinks to `/`, `/proc/1/root` or
/// `/proc/self/root`, and `..` segments, all resolve inside the sandbox, for reads, writes and
/// listings. A marker file on the host is never reachable.
#[test]
fn file_api_stays_inside_the_sandbox() {
    file_api_suite(Eng::Namespace);
}

#[test]
fn gvisor_file_api_stays_inside_the_sandbox() {
    file_api_suite(Eng::Gvisor);
}

fn file_api_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start("") else {
        return;
    };
    let d = &env.d;
    create(&env, "box", "tiny", &[]);
    let tag = rand_hex(6);
    let host_marker = format!("/tmp/bhatti-escape-{tag}");
    std::fs::write(&host_marker, "HOST-SECRET").unwrap();
    let (c, _, err) = sh(
        d,
        "box",
        "ln -s / /workspace/rootlink && ln -s /proc/1/root /workspace/p1 && \
         ln -s /proc/self/root /workspace/self && ln -s /proc/1/cwd /workspace/cwd1",
    );
    assert_eq!(c, 0, "{err}");

    // Reads through links and `..` give the sandbox's files.
    for p in [
        "/workspace/rootlink/etc/hostname",
        "/workspace/p1/etc/hostname",
        "/workspace/self/etc/hostname",
        "/workspace/../../../../../etc/hostname",
        "/workspace/p1/../../../etc/hostname",
    ] {
        let (c, out, err) = d.cli(&["file", "read", "box", p]);
        if gvisor_root_link(eng, p) && c != 0 {
            assert!(err.contains("is a directory"), "read {p}: {err}");
            continue;
        }
        assert_eq!(c, 0, "read {p}: {err}");
        assert_eq!(out.trim(), "box", "read {p} gave another hostname");
    }
    // The host's marker is not there, however it is named.
    for p in [
        host_marker.clone(),
        format!("/workspace/rootlink{host_marker}"),
        format!("/workspace/p1{host_marker}"),
        format!("/workspace/../../..{host_marker}"),
        format!("/proc/1/root{host_marker}"),
        format!("/workspace/cwd1/../../..{host_marker}"),
    ] {
        let (c, out, _) = d.cli(&["file", "read", "box", &p]);
        assert!(
            c != 0 && !out.contains("HOST-SECRET"),
            "read {p} reached the host: {out}"
        );
    }
    // Writes through links and `..` land in the sandbox, never on the host.
    for (i, p) in [
        format!("/workspace/rootlink/tmp/escape-{tag}-0"),
        format!("/workspace/p1/tmp/escape-{tag}-1"),
        format!("/workspace/../../../tmp/escape-{tag}-2"),
    ]
    .iter()
    .enumerate()
    {
        let (c, _, err) = d.cli_stdin(&["file", "write", "box", p], b"PAYLOAD");
        let host = format!("/tmp/escape-{tag}-{i}");
        assert!(
            !std::path::Path::new(&host).exists(),
            "write {p} landed on the host"
        );
        if gvisor_root_link(eng, p) && c != 0 {
            eprintln!("gvisor: write {p} failed (symlink to / bug): {err}");
            continue;
        }
        assert_eq!(c, 0, "write {p}: {err}");
        let (_, out, _) = sh(d, "box", &format!("cat /tmp/escape-{tag}-{i}"));
        assert_eq!(
            out, "PAYLOAD",
            "write {p} did not land in the sandbox's /tmp"
        );
    }
    // Listing the root through a link lists the sandbox's root (no host data dir in it).
    let ls = d.ok(&["file", "ls", "box", "/workspace/rootlink/"]);
    assert!(ls.contains("workspace"), "{ls}");
    let ls_tmp = d.ok(&["file", "ls", "box", "/workspace/p1/tmp/"]);
    assert!(
        !ls_tmp.contains(&format!("bhatti-escape-{tag}")),
        "{ls_tmp}"
    );
    std::fs::remove_file(&host_marker).unwrap();
    // The harness's leak check sees a live sandbox (so an empty result after destroy means
    // something).
    match eng {
        Eng::Namespace => {
            let live = d.leftovers(true);
            assert!(
                !live.processes.is_empty() && !live.cgroups.is_empty() && !live.links.is_empty(),
                "{live:?}"
            );
        }
        // gvisor's sandboxes live under the engine's own cgroup parent (the harness looks at
        // the namespace engine's), which `Eng::start`'s guard cleans.
        Eng::Gvisor => {
            assert!(!env.cgroups().is_empty() && !d.links().is_empty());
        }
    }
    d.ok(&["destroy", "box", "-y"]);
}

/// gVisor 0.0~20221219 resolves a path that goes on past a symlink to `/` (`rootlink/etc/hostname`,
/// `rootlink` → `/`) to `/` itself, so the file API's reads and writes there fail with "is a
/// directory" (so does `cat` inside the sandbox). That is a gVisor bug, not an escape: the
/// path still resolves inside the sandbox, and the host checks below hold unchanged.
fn gvisor_root_link(eng: Eng, path: &str) -> bool {
    eng == Eng::Gvisor && path.starts_with("/workspace/rootlink/")
}

/// As the sandbox user (uid 1000): no writes to /sys, no device nodes, no ptrace of lohar (pid
/// one) and none of its /proc secrets; as sandbox root: another sandbox's files are not
/// reachable through /proc/<pid>/root (its processes are not even visible).
#[test]
fn privileged_operations_and_other_sandboxes_are_out_of_reach() {
    privileged_suite(Eng::Namespace);
}

#[test]
fn gvisor_privileged_operations_and_other_sandboxes_are_out_of_reach() {
    privileged_suite(Eng::Gvisor);
}

fn privileged_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start("") else {
        return;
    };
    let d = &env.d;
    create(&env, "a", "minimal", &[]);
    create(&env, "b", "tiny", &[]);
    let tag = rand_hex(6);
    let (c, _, err) = sh(
        d,
        "b",
        &format!("echo B-SECRET-{tag} > /workspace/b-secret; sleep 600 >/dev/null 2>&1 &"),
    );
    assert_eq!(c, 0, "{err}");

    let script = r#"
        id -u
        echo 1 > /sys/kernel/profiling 2>/dev/null && echo SYS-WRITABLE
        touch /sys/fs/cgroup/x 2>/dev/null && echo CGROUP-WRITABLE
        mknod /tmp/null2 c 1 3 2>/dev/null && echo MKNOD-CHAR
        mknod /tmp/blk b 8 0 2>/dev/null && echo MKNOD-BLOCK
        mkfifo /tmp/fifo && echo fifo-ok
        cat /proc/1/environ 2>/dev/null | grep -q . && echo ENVIRON-READABLE
        ls /proc/1/root/ >/dev/null 2>&1 && echo ROOT-LISTABLE
        head -c1 /proc/1/mem >/dev/null 2>&1 && echo MEM-READABLE
        ls /proc/1/fd >/dev/null 2>&1 && echo FD-LISTABLE
        python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
for name, req in [("attach", PTRACE_ATTACH), ("seize", PTRACE_SEIZE)]:
    r = libc.ptrace(req, 1, 0, 0)
    print("ptrace", name, r, ctypes.get_errno())
'
        echo end
    "#;
    let (c, out, err) = sh(d, "a", script);
    assert_eq!(c, 0, "{err}{out}");
    assert!(out.starts_with("1000\n"), "{out}");
    assert!(out.contains("fifo-ok"), "{out}");
    let mut bads = vec![
        "SYS-WRITABLE",
        "CGROUP-WRITABLE",
        "ROOT-LISTABLE",
        "MEM-READABLE",
    ];
    match eng {
        Eng::Namespace => bads.extend([
            "MKNOD-CHAR",
            "MKNOD-BLOCK",
            "ENVIRON-READABLE",
            "FD-LISTABLE",
        ]),
        Eng::Gvisor => gvisor_privileged_checks(d),
    }
    for bad in bads {
        assert!(!out.contains(bad), "{bad}:\n{out}");
    }
    for l in out.lines().filter(|l| l.starts_with("ptrace")) {
        // -1 with EPERM (1).
        assert!(l.ends_with(" -1 1"), "ptrace of lohar not refused: {l}");
    }
    assert_eq!(out.lines().filter(|l| l.starts_with("ptrace")).count(), 2);

    // Sandbox root (sudo in `minimal`) sees only its own processes, and no /proc/<pid>/root
    // leads to b's files.
    let probe = format!(
        "cat /proc/[0-9]*/root/workspace/b-secret 2>/dev/null; \
         grep -l B-SECRET-{tag} /proc/[0-9]*/root/workspace/* 2>/dev/null; \
         ps -eo comm | grep -c sleep; echo end"
    );
    let script = match eng {
        Eng::Namespace => format!("sudo -n sh -c '{probe}'"),
        // sudo does not work under gVisor 0.0~20221219 ("the no new privileges flag is set",
        // although the OCI spec does not set it), so this runs as the sandbox user there. Each
        // gVisor sandbox has a kernel of its own: b's processes are not in a's /proc for any
        // user.
        Eng::Gvisor => probe,
    };
    let (c, out, err) = sh(d, "a", &script);
    assert_eq!(c, 0, "{err}");
    assert!(!out.contains(&format!("B-SECRET-{tag}")), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["0", "end"], "b's processes visible in a: {out}");
    d.ok(&["destroy", "a", "-y"]);
    d.ok(&["destroy", "b", "-y"]);
}

/// What differs under gVisor (0.0~20221219) in the uid-1000 checks above, and what holds
/// instead, in sandbox `a` (`minimal`):
/// - `mknod` of device nodes succeeds without CAP_MKNOD (the sentry does not check it), but a
///   node reaches only devices the sentry itself emulates: `/dev/mem` (1:1) and a disk (8:0)
///   do not open, so no host device is reachable through them.
/// - `/proc/1/environ` is readable by other users (no ptrace access check there), but lohar's
///   environment is only the OCI spec's PATH and HOME: secrets and its token reach it in
///   `/run/bhatti/config.json`, which the sandbox user cannot read.
/// - `/proc/1/fd` can be listed (and `/proc/1/maps` read) by other users, again for want of the
///   ptrace access check; but none of lohar's sockets, pipes or event fds opens through it, and
///   its stdio (host fds runsc passed: /dev/null and the console log) gives nothing to read and
///   takes no write.
/// - GNU `ls` fails on every path (statx gives EINVAL), so the script's `ls` checks prove
///   nothing there: python's `os.listdir` checks `/proc/1/root` instead, with the user's own
///   `/proc/self/fd` as the positive control.
fn gvisor_privileged_checks(d: &Daemon) {
    let script = r#"
        mknod /tmp/mem c 1 1 && echo mknod-ok
        head -c1 /tmp/mem >/dev/null 2>&1 && echo MEM-NODE-OPENS
        mknod /tmp/sda b 8 0 && head -c1 /tmp/sda >/dev/null 2>&1 && echo BLOCK-NODE-OPENS
        tr '\0' '\n' < /proc/1/environ | grep -v -e '^PATH=' -e '^HOME=' -e '^$' | grep -q . && echo ENVIRON-HAS-MORE
        cat /run/bhatti/config.json >/dev/null 2>&1 && echo CONFIG-READABLE
        python3 -c 'import os; os.listdir("/proc/self/fd")' && echo own-fds-listable
        python3 -c 'import os; os.listdir("/proc/1/root/")' 2>/dev/null && echo ROOT-LISTABLE
        echo end
    "#;
    let (c, out, err) = sh(d, "a", script);
    assert_eq!(c, 0, "{err}{out}");
    assert!(
        out.contains("mknod-ok") && out.contains("own-fds-listable"),
        "{out}{err}"
    );
    for bad in [
        "MEM-NODE-OPENS",
        "BLOCK-NODE-OPENS",
        "ENVIRON-HAS-MORE",
        "CONFIG-READABLE",
        "ROOT-LISTABLE",
    ] {
        assert!(!out.contains(bad), "{bad}:\n{out}");
    }
    const LOHAR_FDS: &str = r#"
import os
n = 0
for f in os.listdir("/proc/1/fd"):
    p = "/proc/1/fd/" + f
    try:
        link = os.readlink(p)
    except OSError:
        continue
    n += 1
    for mode in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        try:
            fd = os.open(p, mode)
        except OSError:
            continue
        try:
            if not link.startswith("host:"):
                print("FD-OPENS", f, link, mode)
            elif mode == os.O_RDONLY:
                if os.read(fd, 64):
                    print("FD-READS", f, link)
            elif os.write(fd, b"x"):
                print("FD-WRITES", f, link)
        except OSError:
            pass
        finally:
            os.close(fd)
print("fds", n)
"#;
    let (c, out, err) = d.cli(&["exec", "a", "--", "python3", "-c", LOHAR_FDS]);
    assert_eq!(c, 0, "{err}{out}");
    assert!(
        out.lines().any(|l| l.starts_with("fds ") && l != "fds 0"),
        "{out}"
    );
    assert!(!out.contains("FD-"), "lohar's fds reachable:\n{out}");
}

/// How many times the OOM killer acted in a sandbox's memory cgroup (v1 memory.oom_control,
/// v2 memory.events).
fn oom_kills(env: &Env, engine_id: &str) -> u64 {
    let parent = env.cgroup_parent();
    [
        format!("/sys/fs/cgroup/memory/{parent}/{engine_id}/memory.oom_control"),
        format!("/sys/fs/cgroup/{parent}/{engine_id}/memory.events"),
    ]
    .iter()
    .filter_map(|f| std::fs::read_to_string(f).ok())
    .find_map(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    })
    .unwrap_or(0)
}

/// The most processes in any of the engine's sandbox cgroups now.
fn max_pids(env: &Env) -> u64 {
    env.cgroups()
        .into_iter()
        .filter_map(|g| {
            // cgroup v2, or v1's pids hierarchy.
            ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
                .iter()
                .filter_map(|base| {
                    let f = format!("{base}/{}/{g}/pids.current", env.cgroup_parent());
                    std::fs::read_to_string(f).ok()
                })
                .find_map(|s| s.trim().parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
}

/// A fork bomb is held by the pids limit and a memory hog is OOM-killed inside its own cgroup,
/// while the daemon and another sandbox keep answering; the bombed sandbox is destroyed cleanly.
#[test]
fn fork_bomb_and_memory_hog_stay_in_their_sandbox() {
    fork_bomb_suite(Eng::Namespace);
}

/// Under gVisor the pids limit counts the sentry's host threads and (ptrace platform) stub
/// processes, not the sandbox's tasks one for one; the bomb still stays at or under it (seen:
/// 303–512 host pids) and the neighbour and daemon keep answering. Seen after the hog step:
/// the bomb's cgroup had no process left (the sentry ends once it cannot get host threads; not
/// confirmed from its logs), so the exec of the bomb may not end with its destroy (below).
#[test]
fn gvisor_fork_bomb_and_memory_hog_stay_in_their_sandbox() {
    fork_bomb_suite(Eng::Gvisor);
}

fn fork_bomb_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start("") else {
        return;
    };
    let d = &env.d;
    for (n, mem) in [("bomb", "256"), ("hog", "128"), ("bystander", "256")] {
        create(&env, n, "tiny", &["--memory", mem]);
    }
    // The bomb runs until its sandbox is destroyed (bounded by the test's destroy below).
    let mut bomb = d
        .command(&[
            "exec",
            "bomb",
            "--",
            "sh",
            "-c",
            // Every process forks forever, so the bomb stays at the limit instead of collapsing.
            "f() { while :; do f & done; }; f",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.dir.path().join("bomb.err")).unwrap())
        .spawn()
        .unwrap();
    // The bomb has to be at its limit before the bystander is measured against it (a slow host
    // takes a while to start it); say why when it never gets there.
    let at_limit = eventually(Duration::from_secs(30), || {
        max_pids(&env) >= 100 || bomb.try_wait().ok().flatten().is_some()
    });
    let pids = max_pids(&env);
    assert!(
        at_limit && pids >= 100,
        "the bomb never grew ({pids} pids; exec {:?}; stderr: {}; daemon log: {})",
        bomb.try_wait(),
        std::fs::read_to_string(d.dir.path().join("bomb.err")).unwrap_or_default(),
        d.log()
    );
    if eng == Eng::Gvisor {
        // Diagnostics for the differences described here: runsc's view of the bomb's sandbox.
        let id = d
            .list()
            .into_iter()
            .find(|s| s["name"] == "bomb")
            .and_then(|s| s["id"].as_str().map(str::to_string))
            .unwrap();
        eprintln!(
            "gvisor bomb at its limit: runsc says {:?}",
            env.runsc_status(&id)
        );
    }
    let mut worst = Duration::ZERO;
    let mut pids = pids;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        pids = pids.max(max_pids(&env));
        let t = Instant::now();
        let (c, out, err) = d.cli(&["exec", "bystander", "--", "echo", "ok"]);
        assert_eq!(
            (c, out.trim()),
            (0, "ok"),
            "bystander during the bomb: {err}"
        );
        let (c, _, err) = d.cli(&["list"]);
        assert_eq!(c, 0, "daemon during the bomb: {err}");
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("fork bomb: {pids} pids at most; slowest bystander exec + list {worst:?}");
    assert!(
        worst < Duration::from_secs(5),
        "daemon/bystander slowed to {worst:?} by the bomb"
    );
    assert!(
        (100..=512).contains(&pids),
        "{pids} pids in the fullest sandbox (the bomb should be at pids_max 512)"
    );

    // The memory hog is killed inside its sandbox; the sandbox and its neighbours live on.
    let hog_script = "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived ${#x}";
    let mut gvisor_hog = None;
    match eng {
        Eng::Namespace => {
            let (c, out, _) = sh(d, "hog", hog_script);
            assert!(
                c != 0 && !out.contains("survived"),
                "hog not killed: {c} {out}"
            );
            let (c, out, err) = d.cli(&["exec", "hog", "--", "echo", "alive"]);
            assert_eq!(
                (c, out.trim()),
                (0, "alive"),
                "hog's sandbox after OOM: {err}"
            );
        }
        // Only part of this holds under gVisor. The memory limit is the host cgroup's, around
        // the whole sandbox, and the sentry holds all of the sandbox's memory (gVisor
        // 0.0~20221219 has no OOM killer of its own), so the host OOM killer picks the sentry
        // (dmesg: `Killed process … (exe)`, uid 65534, in the sandbox's memcg) and the hog
        // takes its own sandbox down instead of just itself. It stays contained: the OOM kill
        // is in the hog's cgroup, the neighbour and the daemon answer (next), and destroy
        // cleans the dead sandbox up (below). The exec is not waited for here: with the
        // sandbox's netstack gone the daemon's connection to lohar gets no reset; TCP
        // keepalive on agent connections ends it (below).
        Eng::Gvisor => {
            let id = d
                .list()
                .into_iter()
                .find(|s| s["name"] == "hog")
                .and_then(|s| s["id"].as_str().map(str::to_string))
                .unwrap();
            let mut hog = d
                .command(&["exec", "hog", "--", "sh", "-c", hog_script])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let killed = eventually(Duration::from_secs(120), || {
                oom_kills(&env, &id) > 0 || hog.try_wait().ok().flatten().is_some()
            });
            assert!(
                killed && oom_kills(&env, &id) > 0,
                "no OOM kill in the hog's cgroup (exec {:?})",
                hog.try_wait()
            );
            gvisor_hog = Some(hog);
        }
    }
    let (c, out, _) = d.cli(&["exec", "bystander", "--", "echo", "ok"]);
    assert_eq!((c, out.trim()), (0, "ok"));

    // Destroying the bombed sandbox ends the bomb and leaves nothing behind.
    d.ok(&["destroy", "bomb", "-y"]);
    // gVisor: a sandbox whose sentry is gone (killed by destroy, or dead already at its pids
    // limit) sends no reset, so the exec ends when the agent connection's TCP keepalive gives
    // up (about 25 s; without it the CLI hung for minutes).
    let wait = match eng {
        Eng::Namespace => Duration::from_secs(20),
        Eng::Gvisor => Duration::from_secs(60),
    };
    assert!(
        eventually(wait, || bomb.try_wait().ok().flatten().is_some()),
        "exec of the bomb still running after destroy"
    );
    let _ = bomb.kill();
    let _ = bomb.wait();
    d.ok(&["destroy", "hog", "-y"]);
    if let Some(mut hog) = gvisor_hog {
        // As for the bomb: ended by the agent connection's keepalive.
        assert!(
            eventually(Duration::from_secs(60), || hog
                .try_wait()
                .ok()
                .flatten()
                .is_some()),
            "exec of the hog still running after destroy"
        );
        let out = hog.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(!out.contains("survived"), "hog not killed: {out}");
    }
    d.ok(&["destroy", "bystander", "-y"]);
    assert!(
        eventually(Duration::from_secs(10), || env.cgroups().is_empty()
            && d.links().is_empty()),
        "left behind: {:?} {:?}",
        env.cgroups(),
        d.links()
    );
}

/// From a sandbox: the daemon's API and a listener on every address of the host (the daemon's
/// network namespace) are unreachable; the host side reaches the listener (so it is real).
/// Other users' sandboxes: crates/engine/tests (`network_isolation`, net.rs).
#[test]
fn sandbox_cannot_reach_the_daemon_or_the_host() {
    network_suite(Eng::Namespace);
}

#[test]
fn gvisor_sandbox_cannot_reach_the_daemon_or_the_host() {
    network_suite(Eng::Gvisor);
}

fn network_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start("") else {
        return;
    };
    let d = &env.d;
    create(&env, "net", "tiny", &[]);
    let port = 18555;
    let mut listener = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", d.netns_pid()))
        .args([
            "python3",
            "-c",
            &format!(
                "import socket,time\n\
                 s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('0.0.0.0',{port})); s.listen(16)\n\
                 end=time.time()+60\n\
                 s.settimeout(1)\n\
                 while time.time()<end:\n\
                 \x20   try: c,_=s.accept(); c.sendall(b'HOST-LISTENER'); c.close()\n\
                 \x20   except OSError: pass\n"
            ),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (c, gw, err) = sh(d, "net", "ip route | awk '/default/ {print $3}'");
    assert_eq!(c, 0, "{err}");
    let gw = gw.trim().to_string();
    assert!(!gw.is_empty());
    // Positive control: the host side reaches its listener.
    assert!(
        eventually(Duration::from_secs(10), || {
            let o = d.in_netns("python3", &["-c", &format!(
                "import socket; s=socket.create_connection(('127.0.0.1',{port}),2); print(s.recv(64).decode())"
            )]);
            String::from_utf8_lossy(&o.stdout).contains("HOST-LISTENER")
        }),
        "listener never came up"
    );
    for (what, target) in [
        ("host listener", format!("{gw} {port}")),
        ("daemon API via gateway", format!("{gw} {}", d.port)),
        ("daemon API via loopback", format!("127.0.0.1 {}", d.port)),
    ] {
        let (_, out, _) = sh(
            d,
            "net",
            &format!("nc -w 2 {target} </dev/null; echo; echo end"),
        );
        assert!(
            !out.contains("HOST-LISTENER") && !out.contains("HTTP/"),
            "{what} reachable from the sandbox: {out}"
        );
    }
    let (_, out, _) = sh(
        d,
        "net",
        &format!(
            "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {gw} {} ; echo end",
            d.port
        ),
    );
    assert!(!out.contains("HTTP/"), "daemon answered the sandbox: {out}");
    let _ = listener.kill();
    let _ = listener.wait();
    d.ok(&["destroy", "net", "-y"]);
}

/// Secret values never appear in the daemon's log, even at debug level, nor in plain text
/// anywhere under its data dir (the store keeps them age-encrypted).
#[test]
fn secrets_never_in_logs_or_on_disk_in_plain_text() {
    secrets_suite(Eng::Namespace);
}

#[test]
fn gvisor_secrets_never_in_logs_or_on_disk_in_plain_text() {
    secrets_suite(Eng::Gvisor);
}

fn secrets_suite(eng: Eng) {
    require_e2e!();
    let Some(mut env) = eng.start("") else {
        return;
    };
    let d = &mut env.d;
    // Restart the daemon with everything logged.
    let cfg = d.dir.path().join("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("log_level: warn", "log_level: debug")).unwrap();
    d.kill9();
    d.spawn_daemon();
    let value = format!("sk-live-{}", rand_hex(12));
    d.ok(&["secret", "set", "TOKEN_X", &value]);
    let d = &env.d;
    create(&env, "sec", "tiny", &["--secret", "TOKEN_X"]);
    let out = d.ok(&["exec", "sec", "--", "sh", "-c", "echo ${#TOKEN_X}"]);
    assert_eq!(
        out.trim(),
        value.len().to_string(),
        "secret reached the sandbox"
    );
    d.ok(&[
        "exec",
        "sec",
        "--env",
        &format!("ALSO={value}"),
        "--",
        "true",
    ]);
    d.ok(&["destroy", "sec", "-y"]);
    let log = d.log();
    assert!(
        log.contains("DEBUG") || log.contains("\"level\":\"DEBUG\""),
        "debug logging on"
    );
    assert!(!log.contains(&value), "secret value in the daemon log");
    let hits = Command::new("grep")
        .args(["-rlF", &value])
        .arg(d.data_dir())
        .output()
        .unwrap();
    let hits = String::from_utf8_lossy(&hits.stdout);
    assert!(hits.trim().is_empty(), "secret in plain text in: {hits}");
}
