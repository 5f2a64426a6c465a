//! Bringing the loopback interface up (the engine configures eth0 from outside).

/// Sets IFF_UP on `lo` with the classic ioctl pair.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain datagram socket used only for interface ioctls, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own for the call.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            Err(std::io::Error::last_os_error())
        } else if ifr.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short != 0 {
            // Already up (the engine does it from outside): nothing to do.
            Ok(())
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    result
}

/// Configures `iface` from inside (the vm engine's guest): address, netmask, up, and a default
/// route via `gateway`, with the classic ioctls (no netlink client needed for one interface).
pub fn configure(
    iface: &str,
    ip: std::net::Ipv4Addr,
    prefix: u8,
    gateway: std::net::Ipv4Addr,
) -> std::io::Result<()> {
    // SAFETY: a plain datagram socket used only for ioctls, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let r = configure_fd(fd, iface, ip, prefix, gateway);
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    r
}

/// The netmask of a prefix length, host byte order.
pub fn netmask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn sockaddr_in(ip: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it by family.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn configure_fd(
    fd: libc::c_int,
    iface: &str,
    ip: std::net::Ipv4Addr,
    prefix: u8,
    gateway: std::net::Ipv4Addr,
) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if iface.len() >= ifr.ifr_name.len() {
        return Err(std::io::Error::other("interface name too long"));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: each ioctl below reads/writes only the ifreq/rtentry we own for the call.
    unsafe {
        ifr.ifr_ifru.ifru_addr = sockaddr_in(ip);
        check(libc::ioctl(fd, libc::SIOCSIFADDR, &ifr))?;
        ifr.ifr_ifru.ifru_netmask = sockaddr_in(std::net::Ipv4Addr::from(netmask(prefix)));
        check(libc::ioctl(fd, libc::SIOCSIFNETMASK, &ifr))?;
        check(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr))?;
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr))?;
        let mut rt: libc::rtentry = std::mem::zeroed();
        rt.rt_dst = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr_in(gateway);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        let r = libc::ioctl(fd, libc::SIOCADDRT, &rt);
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // A second boot of the same kernel state (never expected) already has the route.
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        assert_eq!(netmask(24), 0xffff_ff00);
        assert_eq!(netmask(32), u32::MAX);
        assert_eq!(netmask(0), 0);
        assert_eq!(netmask(8), 0xff00_0000);
    }
}
