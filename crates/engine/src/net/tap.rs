//! Per-sandbox TAP devices for VMs: a persistent TAP `bh-<key8>` (the same name a veth would
//! have, so detach and the orphan sweep treat both alike) on the user's bridge. The VMM opens
//! it by name; the guest configures its own address.

use std::os::fd::AsRawFd;

use rtnetlink::{Handle, LinkUnspec};

use super::netlink::{self, nl_err};
use super::NetError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

fn tun_err(step: &'static str, name: &str, source: std::io::Error) -> NetError {
    NetError::Tap {
        step,
        name: name.to_string(),
        source,
    }
}

/// Creates persistent TAP `name` (through /dev/net/tun), enslaves it to `bridge_index` and
/// sets it up.
pub(crate) async fn create(handle: &Handle, name: &str, bridge_index: u32) -> Result<(), NetError> {
    make_persistent_tap(name)?;
    netlink::disable_ipv6(name)?;
    let index = netlink::require_link(handle, "create tap", name).await?;
    let msg = LinkUnspec::new_with_index(index)
        .controller(bridge_index)
        .up()
        .build();
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(nl_err("attach tap to bridge", name))
}

fn make_persistent_tap(name: &str) -> Result<(), NetError> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| tun_err("open /dev/net/tun for", name, e))?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(tun_err("name", name, std::io::Error::other("too long")));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads/writes the ifreq we own; TUNSETPERSIST takes an int by value.
    unsafe {
        if libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut ifr) < 0 {
            return Err(tun_err("create", name, std::io::Error::last_os_error()));
        }
        if libc::ioctl(tun.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_int) < 0 {
            return Err(tun_err(
                "make persistent",
                name,
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
