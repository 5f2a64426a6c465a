//! The namespace engine against the real kernel (root only): identity, limits, the escape
//! checklist, networking, cleanup, concurrency. Each test runs in its own network namespace.

mod common;

use std::time::Duration;

use bhatti_engine::namespace::NamespaceEngine;
use bhatti_engine::Engine;
use bhatti_proto::msg::ExecRequest;
use common::*;

macro_rules! root_test {
    ($name:ident, $body:expr) => {
        #[test]
        fn $name() {
            if !is_root() {
                eprintln!("SKIP {}: needs root", stringify!($name));
                return;
            }
            in_netns($body);
        }
    };
}

root_test!(identity_env_hostname_and_init, || async {
    let t = engine().await;
    let mut sp = spec("ident-box", "tiny", 1);
    sp.env.insert("API_KEY".into(), "sk-123".into());
    sp.init = Some("echo init-was-here > /tmp/init.out; exec sleep 1000".into());
    let s = create(&t, &sp).await;
    let o = sh(&s, "id -u; id -g; hostname; echo $API_KEY; pwd; echo $HOME").await;
    assert_eq!(o.exit_code, 0, "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "1000",
            "1000",
            "ident-box",
            "sk-123",
            "/workspace",
            "/home/lohar"
        ]
    );
    let sessions = s.client.list_sessions().await.unwrap();
    assert!(
        sessions.iter().any(|x| x.session_id == "init" && x.running),
        "{sessions:?}"
    );
    let o = sh(&s, "cat /tmp/init.out; ps -o user,comm | grep sleep").await;
    assert!(stdout(&o).starts_with("init-was-here"), "{o:?}");
    t.engine.destroy(&s.engine_id).await.unwrap();
});

root_test!(sandbox_root_is_an_unprivileged_host_uid, || async {
    let t = engine().await;
    let s = create(&t, &spec("uid-box", "tiny", 1)).await;
    let meta = t.engine.meta(&s.engine_id).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", meta.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let host_uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        host_uids.iter().all(|u| *u == meta.uid_base),
        "lohar runs as {uid_line} on the host"
    );
    assert_ne!(meta.uid_base, 0);
    // A user process (uid 1000 inside) is uid_base + 1000 outside.
    sh(&s, "sleep 30 &").await;
    let pids = t.engine.cgroup(&s.engine_id).unwrap().pids().unwrap();
    let uids: Vec<u32> = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter(|st| st.contains("Name:\tsleep"))
        .map(|st| {
            st.lines()
                .find(|l| l.starts_with("Uid:"))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(!uids.is_empty());
    assert!(uids.iter().all(|u| *u == meta.uid_base + 1000), "{uids:?}");
    t.engine.destroy(&s.engine_id).await.unwrap();
});

root_test!(
    memory_limit_kills_the_hog_and_the_sandbox_survives,
    || async {
        let t = engine().await;
        let mut sp = spec("mem-box", "tiny", 1);
        sp.memory_mb = 128;
        let s = create(&t, &sp).await;
        let o = sh(
            &s,
            "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
        )
        .await;
        assert_ne!(
            o.exit_code, 0,
            "allocation past the limit must be killed: {o:?}"
        );
        assert!(!stdout(&o).contains("survived"));
        let o = sh(&s, "echo alive").await;
        assert_eq!(stdout(&o), "alive");
        t.engine.destroy(&s.engine_id).await.unwrap();
    }
);

root_test!(pids_limit_stops_a_fork_flood, || async {
    let t = engine().await;
    let s = create(&t, &spec("pids-box", "tiny", 1)).await;
    let o = sh(
        &s,
        "for i in $(seq 400); do sleep 20 & done 2>/dev/null; echo started; wait",
    )
    .await;
    let _ = o;
    let n = t.engine.cgroup(&s.engine_id).unwrap().pids().unwrap().len();
    assert!(n <= 256, "{n} processes despite pids_max 256");
    let kill = sh(&s, "kill -9 -1 2>/dev/null; echo done").await;
    let _ = kill;
    assert!(
        eventually_ok(&s).await,
        "sandbox unresponsive after the fork flood"
    );
    t.engine.destroy(&s.engine_id).await.unwrap();
});

/// Alive and not a zombie (host init reaps the sandbox's init eventually).
fn process_running(pid: i32) -> bool {
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

async fn eventually_ok(s: &Sandbox) -> bool {
    for _ in 0..50 {
        if let Ok(o) = s
            .client
            .exec(
                &ExecRequest::command(["echo", "ok"]),
                None,
                Some(Duration::from_secs(5)),
            )
            .await
        {
            if o.exit_code == 0 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

root_test!(cpu_quota_is_set, || async {
    let t = engine().await;
    let mut sp = spec("cpu-box", "tiny", 1);
    sp.cpus = 0.5;
    let s = create(&t, &sp).await;
    let cg = t.engine.cgroup(&s.engine_id).unwrap();
    let mut found = false;
    for d in cg.dirs() {
        if let Ok(q) = std::fs::read_to_string(d.join("cpu.cfs_quota_us")) {
            assert_eq!(q.trim(), "50000");
            found = true;
        }
        if let Ok(q) = std::fs::read_to_string(d.join("cpu.max")) {
            assert_eq!(q.trim(), "50000 100000");
            found = true;
        }
    }
    assert!(found, "no cpu quota file in {:?}", cg.dirs());
    t.engine.destroy(&s.engine_id).await.unwrap();
});

root_test!(escape_checklist_unprivileged, || async {
    let t = engine().await;
    let s = create(&t, &spec("esc-box", "tiny", 1)).await;
    // Only the sandbox's own processes are visible.
    let o = sh(&s, "ls /proc | grep -c '^[0-9][0-9]*$'; cat /proc/1/comm").await;
    let out = stdout(&o);
    let mut l = out.lines();
    let n: usize = l.next().unwrap().parse().unwrap();
    assert!(
        n < 10,
        "{n} pids visible: host processes leak into the sandbox"
    );
    assert_eq!(l.next(), Some("lohar"));
    // Mount points are the sandbox's own.
    let o = sh(&s, "cut -d' ' -f5 /proc/self/mountinfo").await;
    for mp in stdout(&o).lines() {
        assert!(
            mp == "/"
                || ["/run", "/dev", "/proc", "/sys", "/tmp"]
                    .iter()
                    .any(|p| mp == *p || mp.starts_with(&format!("{p}/"))),
            "unexpected mount point {mp} in the sandbox"
        );
    }
    // kcore and friends are masked, sysrq-trigger is not writable, /sys is read-only.
    let o = sh(&s, "if [ -e /proc/kcore ]; then wc -c < /proc/kcore; else echo 0; fi; echo h > /proc/sysrq-trigger && echo sysrq-writable; touch /sys/x 2>/dev/null && echo sys-writable; echo end").await;
    let out = stdout(&o);
    assert!(out.starts_with('0'), "{out}");
    assert!(
        !out.contains("sysrq-writable") && !out.contains("sys-writable"),
        "{out}"
    );
    // Nothing privileged works for uid 1000.
    let o = sh(&s, "mount -t tmpfs x /tmp 2>&1 || echo mount-refused; hostname evil 2>&1 || echo hostname-refused; unshare -U true 2>&1 || echo unshare-refused").await;
    let out = stdout(&o);
    assert!(
        out.contains("mount-refused")
            && out.contains("hostname-refused")
            && out.contains("unshare-refused"),
        "{out}"
    );
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "evil"
    );
    t.engine.destroy(&s.engine_id).await.unwrap();
});

root_test!(escape_checklist_as_sandbox_root, || async {
    ensure_image("minimal");
    let t = engine().await;
    let s = create(&t, &spec("root-box", "minimal", 1)).await;
    let o = sh(&s, "id -u; sudo -n id -u").await;
    assert_eq!(stdout(&o), "1000\n0", "{o:?}");
    let script = r#"
        sudo -n sh -c 'echo h > /proc/sysrq-trigger' 2>/dev/null && echo SYSRQ-WRITABLE
        sudo -n sh -c 'if [ -e /proc/kcore ]; then head -c 16 /proc/kcore | wc -c; else echo 0; fi'
        sudo -n mount -t tmpfs x /mnt 2>/dev/null && echo MOUNTED
        sudo -n hostname evil 2>/dev/null && echo HOSTNAME-CHANGED
        sudo -n unshare -U true 2>/dev/null && echo USERNS-CREATED
        sudo -n sh -c 'echo 1 > /sys/kernel/profiling' 2>/dev/null && echo SYS-WRITABLE
        sudo -n sh -c 'echo x >> /run/bhatti/lohar' 2>/dev/null && echo LOHAR-WRITABLE
        sudo -n sh -c 'mknod /tmp/kmem c 1 2 && head -c1 /tmp/kmem' 2>/dev/null && echo KMEM-READ
        sudo -n python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for name, nr in [("init_module", 175), ("kexec_load", 246), ("bpf", 321), ("finit_module", 313)]:
    r = libc.syscall(nr, 0, 0, 0, 0)
    print(name, r, ctypes.get_errno())
'
        echo end
    "#;
    let o = sh(&s, script).await;
    let out = stdout(&o);
    for bad in [
        "SYSRQ-WRITABLE",
        "MOUNTED",
        "HOSTNAME-CHANGED",
        "USERNS-CREATED",
        "SYS-WRITABLE",
    ] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    assert_eq!(out.lines().next(), Some("0"), "kcore readable: {out}");
    for sc in ["init_module", "kexec_load", "bpf", "finit_module"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(sc))
            .unwrap_or_else(|| panic!("{sc} missing: {out}"));
        assert!(
            line.ends_with(" -1 1"),
            "{sc} was not refused with EPERM: {line}"
        );
    }
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "evil"
    );
    t.engine.destroy(&s.engine_id).await.unwrap();
});

root_test!(network_isolation, || async {
    let t = engine().await;
    let a = create(&t, &spec("net-a", "tiny", 1)).await;
    let b = create(&t, &spec("net-b", "tiny", 1)).await;
    let c = create(&t, &spec("net-c", "tiny", 2)).await;
    assert_ne!(a.ip, b.ip);
    // Same user: a reaches b (lohar listens on 1024 in every sandbox).
    let o = sh(
        &a,
        &format!("nc -w 2 {} 1024 </dev/null && echo reached", b.ip),
    )
    .await;
    assert!(
        stdout(&o).contains("reached"),
        "same-user traffic blocked: {o:?}"
    );
    // Other user: a cannot reach c.
    let o = sh(
        &a,
        &format!(
            "nc -w 2 {} 1024 </dev/null && echo reached || echo blocked",
            c.ip
        ),
    )
    .await;
    assert!(
        stdout(&o).contains("blocked"),
        "cross-user traffic allowed: {o:?}"
    );
    // The host: a listener on all addresses of the test's namespace is unreachable from a.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let gw = t.engine.gateway(1);
    let o = sh(
        &a,
        &format!("nc -w 2 {gw} {port} </dev/null && echo reached || echo blocked"),
    )
    .await;
    assert!(
        stdout(&o).contains("blocked"),
        "sandbox reached the host: {o:?}"
    );
    for s in [a, b, c] {
        t.engine.destroy(&s.engine_id).await.unwrap();
    }
});

root_test!(destroy_leaves_nothing_behind, || async {
    let t = engine().await;
    let before = footprint(&t.cgroup_parent);
    let s = create(&t, &spec("gone-box", "tiny", 3)).await;
    let meta = t.engine.meta(&s.engine_id).unwrap();
    let during = footprint(&t.cgroup_parent);
    assert_ne!(before, during);
    sh(&s, "sleep 1000 & echo x > /workspace/f").await;
    t.engine.destroy(&s.engine_id).await.unwrap();
    // The veth goes in the background.
    assert!(t.engine.network().settle(Duration::from_secs(5)).await);
    let after = footprint(&t.cgroup_parent);
    assert_eq!(before.links, after.links);
    assert_eq!(before.cgroups, after.cgroups);
    assert_eq!(before.mounts, after.mounts);
    let mut gone = false;
    for _ in 0..100 {
        if !process_running(meta.pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "lohar survived destroy");
    assert!(!t.dir.path().join("sandboxes").join(&s.engine_id).exists());
    assert_eq!(
        t.engine.state(&s.engine_id).await.unwrap(),
        bhatti_engine::RunState::Missing
    );
    // The IP is free again: the next sandbox of that user gets it.
    let s2 = create(&t, &spec("gone-box-2", "tiny", 3)).await;
    assert_eq!(s2.ip, meta.ip);
    t.engine.destroy(&s2.engine_id).await.unwrap();
});

root_test!(pause_freezes_and_resume_thaws, || async {
    let t = engine().await;
    let s = create(&t, &spec("warm-box", "tiny", 1)).await;
    sh(&s, "(while :; do :; done) >/dev/null 2>&1 &").await;
    let cg = t.engine.cgroup(&s.engine_id).unwrap();
    t.engine.pause(&s.engine_id).await.unwrap();
    assert_eq!(
        t.engine.state(&s.engine_id).await.unwrap(),
        bhatti_engine::RunState::Paused
    );
    let u0 = cg.cpu_usage_usec().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let u1 = cg.cpu_usage_usec().unwrap();
    assert!(u1 - u0 < 20_000, "frozen sandbox used {}µs of CPU", u1 - u0);
    t.engine.resume(&s.engine_id).await.unwrap();
    assert_eq!(stdout(&sh(&s, "echo thawed").await), "thawed");
    t.engine.destroy(&s.engine_id).await.unwrap();
});

root_test!(twenty_sandboxes_concurrently, || async {
    let t = engine().await;
    let before = footprint(&t.cgroup_parent);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let e = t.engine.clone();
        tasks.push(async move {
            let sp = spec(&format!("many-{i}"), "tiny", 1 + (i % 2));
            let c = e.create(&sp).await.expect("create");
            let client =
                bhatti_engine::agent::AgentClient::new(e.agent(&c.engine_id).await.unwrap());
            let o = client
                .exec(
                    &ExecRequest::command(["hostname"]),
                    None,
                    Some(Duration::from_secs(30)),
                )
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                format!("many-{i}")
            );
            c.engine_id
        });
    }
    let ids = futures_util::future::join_all(tasks).await;
    let mut ips = std::collections::HashSet::new();
    for id in &ids {
        assert!(ips.insert(t.engine.meta(id).unwrap().ip));
    }
    for id in ids {
        t.engine.destroy(&id).await.unwrap();
    }
    assert!(t.engine.network().settle(Duration::from_secs(5)).await);
    assert_eq!(before, footprint(&t.cgroup_parent));
});

root_test!(unknown_image_is_a_clear_error, || async {
    let t = engine().await;
    let err = t
        .engine
        .create(&spec("x", "no-such-image", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, bhatti_engine::EngineError::ImageNotFound(_)),
        "{err}"
    );
});

root_test!(recovery_adopts_restarts_and_cleans, || async {
    let t = engine().await;
    let cfg = t.engine.config().clone();
    let running = spec("keep-running", "tiny", 1);
    let restart = {
        let mut s = spec("restart-me", "tiny", 1);
        s.init = Some("echo booted >> /workspace/boots; exec sleep 1000".into());
        s
    };
    let orphan = spec("orphan", "tiny", 2);
    let a = create(&t, &running).await;
    let b = create(&t, &restart).await;
    let c = create(&t, &orphan).await;
    sh(&a, "echo kept > /workspace/a.txt").await;
    sh(&b, "echo kept > /workspace/b.txt").await;
    let a_meta = t.engine.meta(&a.engine_id).unwrap();
    let b_meta = t.engine.meta(&b.engine_id).unwrap();
    // The daemon "crashes": the engine value is gone, sandboxes keep running. Then b's
    // processes die too (e.g. the host rebooted them away).
    let b_cgroup = t.engine.cgroup(&b.engine_id).unwrap();
    // (t.engine is simply no longer used; a new engine value takes over.)
    b_cgroup.kill_all().unwrap();

    let engine = NamespaceEngine::new(cfg).await.expect("engine restarts");
    let results = engine.recover(vec![running.clone(), restart.clone()]).await;
    assert_eq!(results.len(), 2);
    for (id, r) in &results {
        assert!(r.is_ok(), "{id}: {r:?}");
    }
    // a: the same process, adopted.
    assert_eq!(engine.meta(&a.engine_id).unwrap().pid, a_meta.pid);
    let a2 = Sandbox {
        engine_id: a.engine_id.clone(),
        client: bhatti_engine::agent::AgentClient::new(engine.agent(&a.engine_id).await.unwrap()),
        ip: a.ip,
    };
    assert_eq!(stdout(&sh(&a2, "cat /workspace/a.txt").await), "kept");
    // b: restarted over its kept filesystem, same IP, init ran again.
    let b_new = engine.meta(&b.engine_id).unwrap();
    assert_ne!(b_new.pid, b_meta.pid);
    assert_eq!(b_new.ip, b_meta.ip);
    let b2 = Sandbox {
        engine_id: b.engine_id.clone(),
        client: bhatti_engine::agent::AgentClient::new(engine.agent(&b.engine_id).await.unwrap()),
        ip: b.ip,
    };
    assert_eq!(
        stdout(&sh(&b2, "cat /workspace/b.txt; id -u").await),
        "kept\n1000"
    );
    let mut boots = String::new();
    for _ in 0..50 {
        boots = stdout(&sh(&b2, "cat /workspace/boots").await);
        if boots.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(boots, "booted\nbooted");
    // c: not in the store, so its leftovers are gone.
    assert!(!t.dir.path().join("sandboxes").join(&c.engine_id).exists());
    assert!(engine.cgroup(&c.engine_id).is_none());
    let c_alive = c
        .client
        .exec(
            &ExecRequest::command(["true"]),
            None,
            Some(Duration::from_secs(2)),
        )
        .await;
    assert!(c_alive.is_err(), "orphan sandbox still answers");
    for id in [&a.engine_id, &b.engine_id] {
        engine.destroy(id).await.unwrap();
    }
});

root_test!(namespaces_devices_caps_and_seccomp_are_in_place, || async {
    let t = engine().await;
    let s = create(&t, &spec("hard-box", "tiny", 1)).await;
    // Every namespace differs from the host's.
    let o = sh(
        &s,
        "for n in user mnt pid uts ipc net cgroup; do echo $n $(readlink /proc/self/ns/$n); done",
    )
    .await;
    for line in stdout(&o).lines() {
        let (name, inside) = line.split_once(' ').unwrap();
        let host = std::fs::read_link(format!("/proc/self/ns/{name}")).unwrap();
        assert_ne!(
            inside,
            host.to_string_lossy(),
            "{name} namespace is shared with the host"
        );
    }
    // A minimal /dev.
    let o = sh(&s, "ls /dev | sort | tr '\\n' ' '").await;
    assert_eq!(
        stdout(&o),
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    // Docker's default capability bounding set, seccomp filtering, no no_new_privs.
    let o = sh(
        &s,
        "grep -E '^(CapBnd|Seccomp|NoNewPrivs):' /proc/self/status",
    )
    .await;
    let out = stdout(&o);
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    // Masked /proc files read empty; lohar's config is gone once it booted.
    let o = sh(
        &s,
        "wc -c < /proc/timer_list; wc -c < /proc/keys; ls /run/bhatti",
    )
    .await;
    assert_eq!(stdout(&o), "0\n0\nlohar");
    // The cgroup namespace shows the sandbox's own cgroup as the root.
    let o = sh(&s, "cut -d: -f3 /proc/self/cgroup | sort -u").await;
    assert_eq!(stdout(&o), "/");
    t.engine.destroy(&s.engine_id).await.unwrap();
});

root_test!(stop_start_keeps_files_ip_and_reruns_init, || async {
    let t = engine().await;
    let mut sp = spec("stop-start", "tiny", 1);
    sp.init = Some("echo booted >> /workspace/boots; exec sleep 1000".into());
    let s = create(&t, &sp).await;
    sh(&s, "echo kept > /workspace/f.txt").await;
    // usage: CPU time grows with real work.
    let u0 = t.engine.usage(&s.engine_id).await.expect("usage");
    sh(&s, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done").await;
    let u1 = t.engine.usage(&s.engine_id).await.expect("usage");
    assert!(u1 > u0 + 10_000, "cpu usage {u0} -> {u1}");
    let meta = t.engine.meta(&s.engine_id).unwrap();

    t.engine.stop(&s.engine_id).await.expect("stop");
    assert!(!process_running(meta.pid), "lohar still runs after stop");
    assert_eq!(
        t.engine.state(&s.engine_id).await.unwrap(),
        bhatti_engine::RunState::Stopped
    );
    assert!(t.engine.usage(&s.engine_id).await.is_none());
    // Stopping twice is fine.
    t.engine.stop(&s.engine_id).await.expect("second stop");
    // A daemon restart (the store lists only running sandboxes) keeps a stopped one.
    let engine = NamespaceEngine::new(t.engine.config().clone())
        .await
        .expect("engine restarts");
    assert!(engine.recover(vec![]).await.is_empty());
    assert!(t.dir.path().join("sandboxes").join(&s.engine_id).is_dir());

    let c = engine.start(&sp).await.expect("start");
    assert_eq!(c.ip, Some(meta.ip));
    let s2 = Sandbox {
        engine_id: s.engine_id.clone(),
        client: bhatti_engine::agent::AgentClient::new(engine.agent(&s.engine_id).await.unwrap()),
        ip: meta.ip,
    };
    assert_eq!(
        stdout(&sh(&s2, "cat /workspace/f.txt; id -u").await),
        "kept\n1000"
    );
    let mut boots = String::new();
    for _ in 0..50 {
        boots = stdout(&sh(&s2, "cat /workspace/boots").await);
        if boots.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(boots, "booted\nbooted");
    assert!(
        engine.start(&sp).await.is_err(),
        "start of a running sandbox"
    );
    engine.destroy(&s.engine_id).await.unwrap();
    assert!(!t.dir.path().join("sandboxes").join(&s.engine_id).exists());
});
