//! The capability bounding set of sandbox processes (Docker's default set, no wider).
//!
//! [`restrict_bounding_set`] runs in the launcher's single-threaded child right before it execs
//! the sandbox's PID 1. It drops every capability outside [`DEFAULT_CAPS`] from the bounding set,
//! clears the ambient set and trims the inheritable set. The inheritable trim matters: when uid 0
//! execs a binary the kernel grants `inheritable | bounding`, so a stale inheritable bit would
//! survive a bounding-set drop.

use std::io;

/// One Linux capability: its `CAP_*` name without the prefix, and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Name without `CAP_` (as Docker spells it).
    pub name: &'static str,
    /// The kernel's capability number.
    pub number: u32,
}

/// Exactly Docker's default capability set.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability {
        name: "CHOWN",
        number: 0,
    },
    Capability {
        name: "DAC_OVERRIDE",
        number: 1,
    },
    Capability {
        name: "FOWNER",
        number: 3,
    },
    Capability {
        name: "FSETID",
        number: 4,
    },
    Capability {
        name: "KILL",
        number: 5,
    },
    Capability {
        name: "SETGID",
        number: 6,
    },
    Capability {
        name: "SETUID",
        number: 7,
    },
    Capability {
        name: "SETPCAP",
        number: 8,
    },
    Capability {
        name: "NET_BIND_SERVICE",
        number: 10,
    },
    Capability {
        name: "NET_RAW",
        number: 13,
    },
    Capability {
        name: "SYS_CHROOT",
        number: 18,
    },
    Capability {
        name: "MKNOD",
        number: 27,
    },
    Capability {
        name: "AUDIT_WRITE",
        number: 29,
    },
    Capability {
        name: "SETFCAP",
        number: 31,
    },
];

/// [`DEFAULT_CAPS`] as a bitmask, as `/proc/<pid>/status` `CapBnd` shows it.
pub const fn default_caps_mask() -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < DEFAULT_CAPS.len() {
        mask |= 1u64 << DEFAULT_CAPS[i].number;
        i += 1;
    }
    mask
}

/// Highest capability number this kernel knows, from /proc or by probing `PR_CAPBSET_READ`.
fn last_cap() -> u32 {
    if let Some(n) = read_cap_last_cap() {
        return n;
    }
    // /proc may not be mounted in the child yet: ask the kernel cap by cap (EINVAL past the end).
    let mut n = 0u32;
    // SAFETY: PR_CAPBSET_READ only reads the calling thread's bounding set.
    while n < 63 && unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(n + 1)) } >= 0 {
        n += 1;
    }
    n
}

/// Reads /proc/sys/kernel/cap_last_cap into a stack buffer (no allocation after fork).
fn read_cap_last_cap() -> Option<u32> {
    let path = b"/proc/sys/kernel/cap_last_cap\0";
    // SAFETY: path is NUL-terminated; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 16];
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// Drops every capability outside [`DEFAULT_CAPS`] from the bounding set, clears the ambient set
/// and masks the inheritable set. Call in the single-threaded child right before `execve`; it
/// needs CAP_SETPCAP (the child is root of its user namespace).
pub fn restrict_bounding_set() -> io::Result<()> {
    let keep = default_caps_mask();
    for cap in 0..=last_cap() {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments; no memory is passed.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: a cap the kernel does not know (cap_last_cap raced or lied) — nothing to drop.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // EINVAL: kernels before 4.3 have no ambient set, so there is nothing to clear.
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(io::Error::last_os_error());
    }
    mask_inheritable(keep)
}

/// Version 3 capability header/data for capget/capset (64-bit sets in two 32-bit halves).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Removes from the inheritable set every capability not in `keep`.
fn mask_inheritable(keep: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid for the v3 layout (two CapData entries).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    data[0].inheritable &= keep as u32;
    data[1].inheritable &= (keep >> 32) as u32;
    // SAFETY: as above; capset only reads the structures.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_dockers_default() {
        // Docker's default CapBnd as shown by `docker run --rm debian grep CapBnd /proc/self/status`.
        assert_eq!(default_caps_mask(), 0x0000_0000_a804_25fb);
        assert_eq!(DEFAULT_CAPS.len(), 14);
    }
}
