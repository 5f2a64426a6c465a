//! The sandbox seccomp filter and capability bounding set, applied to real child processes.
//! The children run as root on the host; the filter applies all the same (installed without
//! no_new_privs, which root's CAP_SYS_ADMIN permits, exactly as in the sandbox's user namespace).

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use bhatti_engine::namespace::{caps, seccomp};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd` with the sandbox filter installed right before exec.
fn filtered(cmd: &mut Command) -> Output {
    let prog = seccomp::filter().expect("build filter");
    // SAFETY: install only makes the seccomp syscall on a program built before fork.
    unsafe {
        cmd.pre_exec(move || seccomp::install(&prog).map_err(std::io::Error::other));
    }
    cmd.output().expect("run filtered command")
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn unshare_of_user_and_mount_namespaces_is_refused() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    // Without the filter root may do this: the test would fail if the filter were removed.
    assert!(Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .unwrap()
        .success());
    for flag in ["-U", "-m", "-n", "-p"] {
        let out = filtered(Command::new("unshare").args([flag, "true"]));
        assert!(!out.status.success(), "unshare {flag} succeeded");
        assert!(
            text(&out.stderr).contains("Operation not permitted"),
            "unshare {flag}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn dangerous_syscalls_fail_with_eperm_and_clone3_with_enosys() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let calls: Vec<(&str, String, i32)> = vec![
        (
            "kexec_load",
            format!("{}, 0, 0, 0, 0", libc::SYS_kexec_load),
            libc::EPERM,
        ),
        ("bpf", format!("{}, 0, 0, 0", libc::SYS_bpf), libc::EPERM),
        (
            "init_module",
            format!("{}, 0, 0, 0", libc::SYS_init_module),
            libc::EPERM,
        ),
        (
            "finit_module",
            format!("{}, -1, 0, 0", libc::SYS_finit_module),
            libc::EPERM,
        ),
        ("setns", format!("{}, -1, 0", libc::SYS_setns), libc::EPERM),
        (
            "keyctl",
            format!("{}, 0, 0, 0, 0", libc::SYS_keyctl),
            libc::EPERM,
        ),
        (
            "open_tree",
            format!("{}, -100, 0, 0", libc::SYS_open_tree),
            libc::EPERM,
        ),
        (
            "io_uring_setup",
            format!("{}, 1, 0", libc::SYS_io_uring_setup),
            libc::EPERM,
        ),
        (
            "clone(CLONE_NEWUSER)",
            format!(
                "{}, {}, 0, 0, 0, 0",
                libc::SYS_clone,
                libc::CLONE_NEWUSER | libc::SIGCHLD
            ),
            libc::EPERM,
        ),
        (
            "personality(ADDR_NO_RANDOMIZE)",
            format!("{}, 0x0040000", libc::SYS_personality),
            libc::EPERM,
        ),
        (
            "clone3",
            format!("{}, 0, 0", libc::SYS_clone3),
            libc::ENOSYS,
        ),
    ];
    let mut script = String::from(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n",
    );
    for (name, args, _) in &calls {
        script.push_str(&format!(
            "ctypes.set_errno(0)\nr = libc.syscall({args})\nprint('{name}', r, ctypes.get_errno(), flush=True)\n"
        ));
    }
    let out = filtered(Command::new("python3").arg("-c").arg(&script));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), calls.len(), "{stdout}");
    for ((name, _, errno), line) in calls.iter().zip(&lines) {
        assert_eq!(*line, format!("{name} -1 {errno}"), "{stdout}");
    }
}

#[test]
fn mounting_is_refused() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap().to_string();
    let out = filtered(Command::new("mount").args(["-t", "tmpfs", "x", &target]));
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&target);
    if mounted {
        let _ = Command::new("umount").arg(&target).status();
    }
    assert!(!out.status.success() && !mounted, "mount succeeded");
    let err = text(&out.stderr).to_lowercase();
    assert!(
        err.contains("permission denied") || err.contains("not permitted"),
        "{err}"
    );
}

#[test]
fn ordinary_work_still_works_without_no_new_privs() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let out = filtered(&mut sh(
        "echo ok; ls / >/dev/null; sleep 0.1 & wait; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let fields: Vec<String> = stdout.split_whitespace().map(str::to_string).collect();
    assert_eq!(
        fields,
        ["ok", "NoNewPrivs:", "0", "Seccomp:", "2"],
        "filter mode 2 and NNP off (sudo keeps working)"
    );

    // Threads: glibc tries clone3, gets ENOSYS and falls back to clone.
    let out = filtered(Command::new("python3").arg("-c").arg(
        "import threading\nts=[threading.Thread(target=sum, args=([1,2],)) for _ in range(8)]\n\
         [t.start() for t in ts]\n[t.join() for t in ts]\nprint('threads ok')",
    ));
    assert_eq!(
        text(&out.stdout).trim(),
        "threads ok",
        "{}",
        text(&out.stderr)
    );
    // Forks and the allowed personality query pass too.
    let out = filtered(&mut sh("(true) && (exit 0) && echo forked"));
    assert_eq!(text(&out.stdout).trim(), "forked");
}

/// Parses `CapXxx:\t<hex>` from /proc/<pid>/status text.
fn cap_field(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} missing in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn bounding_set_is_exactly_dockers_default() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/self/status");
    // SAFETY: restrict_bounding_set only makes prctl/capget/capset/open/read syscalls.
    unsafe {
        cmd.pre_exec(caps::restrict_bounding_set);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    let want = caps::default_caps_mask();
    assert_eq!(cap_field(&status, "CapBnd:"), want, "CapBnd");
    // Root exec: permitted = bounding set; nothing outside it survives via inheritable/ambient.
    assert_eq!(cap_field(&status, "CapPrm:"), want, "CapPrm");
    assert_eq!(cap_field(&status, "CapEff:"), want, "CapEff");
    assert_eq!(cap_field(&status, "CapInh:") & !want, 0, "CapInh");
    assert_eq!(cap_field(&status, "CapAmb:"), 0, "CapAmb");
    let names: Vec<&str> = caps::DEFAULT_CAPS.iter().map(|c| c.name).collect();
    for n in [
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    assert_eq!(names.len(), 14);
}

#[test]
fn caps_and_filter_together_keep_the_sandbox_root_contained() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    // The launcher's order: drop the bounding set, then install the filter (which still needs
    // CAP_SYS_ADMIN in the effective set — the bounding set only bites at exec).
    let prog = seccomp::filter().unwrap();
    let mut cmd = sh("grep CapEff /proc/self/status; unshare -m true 2>&1; echo rc=$?");
    // SAFETY: both calls only make syscalls on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            caps::restrict_bounding_set()?;
            seccomp::install(&prog).map_err(std::io::Error::other)
        });
    }
    let out = cmd.output().unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Operation not permitted"), "{stdout}");
    assert!(!stdout.contains("rc=0"), "{stdout}");
    assert!(
        stdout.contains(&format!("{:016x}", caps::default_caps_mask())),
        "{stdout}"
    );
}
