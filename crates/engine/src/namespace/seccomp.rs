//! The seccomp filter every sandbox process runs under (equivalent to Docker's default profile).
//!
//! # Shape
//! Docker's default profile is an allow-list whose effect, for a container without
//! CAP_SYS_ADMIN and friends, is to refuse a known set of kernel-wide or namespace-escaping
//! syscalls. We express that effect as a deny-list — default ALLOW, EPERM for the refused set —
//! which is shorter, cheaper to evaluate and does not break new harmless syscalls:
//! - EPERM always: kernel modules and kexec, bpf, perf_event_open, acct, the keyring, swap,
//!   reboot (lohar as PID 1 falls back to exiting), clock setting, syslog, raw I/O ports,
//!   file handles, quotactl, userfaultfd, obsolete calls, every mount API (old and new),
//!   setns, io_uring (Docker ≥ 25), fanotify_init, and the ptrace-like kcmp/process_vm_*
//!   (ptrace itself stays allowed, as Docker allows it on kernels ≥ 4.8).
//! - EPERM when asking for a new namespace: `clone` and `unshare` with any `CLONE_NEW*` flag
//!   (an argument filter on the flags); `unshare(CLONE_FS)` and ordinary forks/threads pass.
//! - ENOSYS for `clone3`: its flags live in memory a filter cannot read, so libc is told the
//!   call does not exist and falls back to `clone`, whose flags we filter (Docker's trick).
//! - `personality` only with the values Docker allows (0, 8, 0x20000, 0x20008, 0xffffffff).
//! - `sethostname` stays allowed: lohar sets the sandbox's hostname at boot inside its own UTS
//!   namespace, which cannot touch the host's.
//!
//! Other ABIs are refused: a syscall of another audit arch (i386 via `int 0x80`) kills the
//! process (seccompiler's arch check), and x32 syscall numbers (bit 30) get ENOSYS, so the
//! deny-list cannot be bypassed through another syscall table.
//!
//! # Installing without no_new_privs
//! We do not set `PR_SET_NO_NEW_PRIVS`: `sudo` inside the sandbox must keep working. The kernel
//! then requires CAP_SYS_ADMIN in the caller's user namespace to install a filter; the launcher's
//! child is root of the sandbox's user namespace, so [`install`] works there (and for tests run as
//! root on the host). The filter is inherited across fork and exec and cannot be removed.
//!
//! Syscall numbers come from `libc` for the build's target; only x86_64 has a table today —
//! another arch adds an `arch` module with its own list.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};

/// Errors building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler rejected a rule or the program.
    #[error("building the seccomp filter ({step}): {source}")]
    Build {
        /// Which part was being built.
        step: &'static str,
        /// seccompiler's error.
        source: seccompiler::BackendError,
    },
    /// No syscall table for this architecture yet.
    #[error("no seccomp syscall table for architecture {arch}")]
    UnsupportedArch {
        /// The build's target architecture.
        arch: &'static str,
    },
    /// The program is empty or longer than the kernel accepts.
    #[error("seccomp program has {len} instructions (must be 1..=4096)")]
    BadLength {
        /// Its length.
        len: usize,
    },
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed (EACCES: no CAP_SYS_ADMIN in this user namespace).
    #[error("installing the seccomp filter: {source}")]
    Install {
        /// The OS error.
        source: io::Error,
    },
}

/// `CLONE_NEW*` flags accepted by `clone` (CLONE_NEWTIME shares its bit with CSIGNAL there).
const CLONE_NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];
/// `CLONE_NEWTIME`, valid for `unshare`.
const CLONE_NEWTIME: u64 = 0x80;
/// `personality` values Docker's profile allows: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32 and the 0xffffffff query.
pub const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

#[cfg(target_arch = "x86_64")]
mod arch {
    use seccompiler::TargetArch;

    pub const TARGET: TargetArch = TargetArch::x86_64;
    /// x32 syscalls share AUDIT_ARCH_X86_64 and are told apart by this bit in the number.
    pub const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
    pub const CLONE: i64 = libc::SYS_clone;
    pub const CLONE3: i64 = libc::SYS_clone3;
    pub const UNSHARE: i64 = libc::SYS_unshare;
    pub const PERSONALITY: i64 = libc::SYS_personality;
    /// Refused with EPERM whatever their arguments. Not on x86_64 (nothing to filter): stime,
    /// vm86, vm86old, umount (only umount2 exists).
    pub const BLOCKED: &[(&str, i64)] = &[
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        // Removed from the kernel long ago but still numbered (libc has no constant).
        ("create_module", 174),
        ("get_kernel_syms", 177),
        ("query_module", 178),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("acct", libc::SYS_acct),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("keyctl", libc::SYS_keyctl),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("reboot", libc::SYS_reboot),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("syslog", libc::SYS_syslog),
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("nfsservctl", libc::SYS_nfsservctl),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("quotactl", libc::SYS_quotactl),
        ("quotactl_fd", libc::SYS_quotactl_fd),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("uselib", libc::SYS_uselib),
        ("ustat", libc::SYS_ustat),
        ("sysfs", libc::SYS_sysfs),
        ("_sysctl", libc::SYS__sysctl),
        ("vhangup", libc::SYS_vhangup),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("move_mount", libc::SYS_move_mount),
        ("open_tree", libc::SYS_open_tree),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("setns", libc::SYS_setns),
        ("fanotify_init", libc::SYS_fanotify_init),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("kcmp", libc::SYS_kcmp),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
    ];
}

/// Names and numbers of the syscalls refused with EPERM whatever their arguments.
pub fn blocked_syscalls() -> &'static [(&'static str, i64)] {
    #[cfg(target_arch = "x86_64")]
    return arch::BLOCKED;
    #[cfg(not(target_arch = "x86_64"))]
    return &[];
}

/// Builds the sandbox filter for the build's architecture (pure Rust, no kernel involved).
pub fn filter() -> Result<BpfProgram, SeccompError> {
    #[cfg(target_arch = "x86_64")]
    return build_x86_64();
    #[cfg(not(target_arch = "x86_64"))]
    return Err(SeccompError::UnsupportedArch {
        arch: std::env::consts::ARCH,
    });
}

#[cfg(target_arch = "x86_64")]
fn build_x86_64() -> Result<BpfProgram, SeccompError> {
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = arch::BLOCKED
        .iter()
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    eperm.insert(arch::CLONE, any_flag_rules(&CLONE_NS_FLAGS)?);
    let mut unshare_flags = CLONE_NS_FLAGS.to_vec();
    unshare_flags.push(CLONE_NEWTIME);
    eperm.insert(arch::UNSHARE, any_flag_rules(&unshare_flags)?);
    eperm.insert(arch::PERSONALITY, vec![personality_rule()?]);
    let eperm = compile("EPERM rules", eperm, libc::EPERM, arch::TARGET)?;

    let enosys = compile(
        "clone3 rule",
        BTreeMap::from([(arch::CLONE3, Vec::new())]),
        libc::ENOSYS,
        arch::TARGET,
    )?;

    let mut parts = Vec::new();
    if let Some(bit) = arch::X32_SYSCALL_BIT {
        parts.push(x32_guard(bit));
    }
    parts.push(enosys);
    parts.push(eperm);
    chain(parts)
}

/// One rule per flag bit: the syscall matches when arg0 has any of `flags` set.
fn any_flag_rules(flags: &[u64]) -> Result<Vec<SeccompRule>, SeccompError> {
    flags
        .iter()
        .map(|&bit| {
            // The namespace flags all sit in the low 32 bits of the flags argument.
            let cond =
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(bit), bit)
                    .map_err(|source| SeccompError::Build {
                        step: "namespace flag condition",
                        source,
                    })?;
            SeccompRule::new(vec![cond]).map_err(|source| SeccompError::Build {
                step: "namespace flag rule",
                source,
            })
        })
        .collect()
}

/// Matches (and so refuses) `personality(p)` for every p not in [`ALLOWED_PERSONALITIES`].
fn personality_rule() -> Result<SeccompRule, SeccompError> {
    // The kernel takes an unsigned int, so the low 32 bits are the whole argument.
    let conds = ALLOWED_PERSONALITIES
        .iter()
        .map(|&v| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, v).map_err(
                |source| SeccompError::Build {
                    step: "personality condition",
                    source,
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    SeccompRule::new(conds).map_err(|source| SeccompError::Build {
        step: "personality rule",
        source,
    })
}

/// Compiles one default-ALLOW filter whose matches return `errno`.
fn compile(
    step: &'static str,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    target: seccompiler::TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let build = |source| SeccompError::Build { step, source };
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        target,
    )
    .map_err(build)?;
    BpfProgram::try_from(f).map_err(build)
}

/// BPF_LD | BPF_W | BPF_ABS (the first two are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Refuses syscall numbers with the x32 bit set (ENOSYS), before any other check.
fn x32_guard(bit: u32) -> BpfProgram {
    vec![
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0, // seccomp_data.nr
        },
        sock_filter {
            code: BPF_JMP_JGE_K,
            jt: 0,
            jf: 1,
            k: bit,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_ERRNO | libc::ENOSYS as u32,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ]
}

/// Runs several default-ALLOW programs as one: every ALLOW of a part but the last becomes a
/// jump to the next part, so a syscall is allowed only if every part allows it. (One kernel
/// filter instead of several keeps a single program for the launcher to carry.)
fn chain(parts: Vec<BpfProgram>) -> Result<BpfProgram, SeccompError> {
    let count = parts.len();
    let mut out = BpfProgram::new();
    for (i, part) in parts.into_iter().enumerate() {
        let len = part.len();
        for (j, mut ins) in part.into_iter().enumerate() {
            if i + 1 < count && ins.code == BPF_RET_K && ins.k == RET_ALLOW {
                // Forward to the first instruction after this part.
                ins = sock_filter {
                    code: BPF_JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: (len - j - 1) as u32,
                };
            }
            out.push(ins);
        }
    }
    if out.is_empty() || out.len() > 4096 {
        return Err(SeccompError::BadLength { len: out.len() });
    }
    Ok(out)
}

/// The kernel's `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const sock_filter,
}

/// Installs `prog` on the calling thread without setting no_new_privs (needs CAP_SYS_ADMIN in
/// the current user namespace). Call in the single-threaded child right before `execve`.
pub fn install(prog: &BpfProgram) -> Result<(), SeccompError> {
    let len = u16::try_from(prog.len())
        .ok()
        .filter(|l| (1..=4096).contains(l))
        .ok_or(SeccompError::BadLength { len: prog.len() })?;
    let fprog = SockFprog {
        len,
        filter: prog.as_ptr(),
    };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const SockFprog,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Install {
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    /// A classic-BPF interpreter for the instructions seccompiler and `chain` emit.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        // struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; } as 32-bit words.
        let mut data = vec![nr, arch, 0, 0];
        for a in args {
            data.push(a as u32);
            data.push((a >> 32) as u32);
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &prog[pc];
            pc += 1;
            match ins.code {
                0x20 => acc = data[ins.k as usize / 4],
                0x54 => acc &= ins.k, // ALU AND K
                0x05 => pc += ins.k as usize,
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let hit = match ins.code {
                        0x15 => acc == ins.k,
                        0x25 => acc > ins.k,
                        0x35 => acc >= ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += usize::from(if hit { ins.jt } else { ins.jf });
                }
                0x06 => return ins.k,
                other => panic!("unexpected BPF opcode {other:#x}"),
            }
        }
    }

    fn call(nr: i64, arg0: u64) -> u32 {
        let prog = filter().unwrap();
        run(&prog, AUDIT_ARCH_X86_64, nr as u32, [arg0, 0, 0, 0, 0, 0])
    }

    #[test]
    fn personality_allows_only_dockers_values() {
        for v in ALLOWED_PERSONALITIES {
            assert_eq!(call(libc::SYS_personality, v), RET_ALLOW, "{v:#x}");
        }
        // ADDR_NO_RANDOMIZE (setarch -R) and READ_IMPLIES_EXEC are refused, as in Docker.
        for v in [0x0040000, 0x0400000, 0x9, 0xffff_fffe] {
            assert_eq!(call(libc::SYS_personality, v), EPERM, "{v:#x}");
        }
    }

    #[test]
    fn clone_refuses_namespace_flags_only() {
        let sigchld = libc::SIGCHLD as u64;
        assert_eq!(call(libc::SYS_clone, sigchld), RET_ALLOW, "fork");
        // glibc's pthread_create flags.
        assert_eq!(call(libc::SYS_clone, 0x003d_0f00), RET_ALLOW, "thread");
        for f in CLONE_NS_FLAGS {
            assert_eq!(call(libc::SYS_clone, f | sigchld), EPERM, "{f:#x}");
        }
        assert_eq!(call(libc::SYS_clone3, 0), ENOSYS);
    }

    #[test]
    fn unshare_refuses_namespace_flags_only() {
        assert_eq!(call(libc::SYS_unshare, libc::CLONE_FS as u64), RET_ALLOW);
        assert_eq!(call(libc::SYS_unshare, libc::CLONE_FILES as u64), RET_ALLOW);
        assert_eq!(call(libc::SYS_unshare, libc::CLONE_NEWUSER as u64), EPERM);
        assert_eq!(call(libc::SYS_unshare, CLONE_NEWTIME), EPERM);
        assert_eq!(
            call(
                libc::SYS_unshare,
                libc::CLONE_NEWNS as u64 | libc::CLONE_FS as u64
            ),
            EPERM
        );
    }

    #[test]
    fn blocked_list_is_refused_and_ordinary_calls_pass() {
        for &(name, nr) in arch::BLOCKED {
            assert_eq!(call(nr, 0), EPERM, "{name}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_execve,
            libc::SYS_ptrace,
            libc::SYS_sethostname,
        ] {
            assert_eq!(call(nr, 0), RET_ALLOW, "{nr}");
        }
    }

    #[test]
    fn other_abis_cannot_bypass() {
        let prog = filter().unwrap();
        // x32 mount.
        let x32_mount = 0x4000_0000 | libc::SYS_mount as u32;
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, x32_mount, [0; 6]), ENOSYS);
        // i386 syscall: seccompiler's arch check kills the process.
        assert_eq!(
            run(&prog, AUDIT_ARCH_I386, 21, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert!(prog.len() < 4096);
    }
}
