//! Per-sandbox veth pairs: the host end (`bh-<key8>`) on the user's bridge, the peer created
//! directly inside the sandbox's netns as `eth0` and configured there over netlink.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::ipam::USER_PREFIX_LEN;
use super::netlink::{self, nl_err};
use super::NetError;

/// The interface name of the sandbox's end, inside its netns.
pub(crate) const SANDBOX_IFACE: &str = "eth0";
/// Characters of the sandbox key used in the host end's name.
const KEY_CHARS: usize = 8;

/// The host end's name for sandbox `key`: the prefix plus the key's first 8 characters.
pub(crate) fn host_veth_name(prefix: &str, key: &str) -> Result<String, NetError> {
    let short = key.get(..KEY_CHARS).filter(|s| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    match short {
        Some(s) => Ok(format!("{prefix}{s}")),
        None => Err(NetError::BadKey {
            key: key.to_string(),
        }),
    }
}

/// Opens a netns path (e.g. `/proc/<pid>/ns/net`) so the namespace stays pinned while we use it.
pub(crate) fn open_netns(path: &Path) -> Result<File, NetError> {
    File::open(path).map_err(|source| NetError::Netns {
        step: "open netns",
        path: path.to_path_buf(),
        source,
    })
}

/// Creates the veth pair: host end `host` enslaved to `bridge_index`, without IPv6, up; peer
/// `eth0` created straight inside `netns` (one request; no rename, no move).
pub(crate) async fn create(
    handle: &Handle,
    host: &str,
    bridge_index: u32,
    netns: &File,
) -> Result<(), NetError> {
    let peer = LinkUnspec::new_with_name(SANDBOX_IFACE)
        .append_extra_attribute(LinkAttribute::NetNsFd(netns.as_raw_fd()))
        .build();
    let msg = LinkVeth::new(host, SANDBOX_IFACE)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge_index)
        .build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(nl_err("create veth pair", host))?;
    netlink::disable_ipv6(host)?;
    let index = netlink::require_link(handle, "create veth pair", host).await?;
    netlink::set_up(handle, index, host).await
}

/// Deletes the host end (the kernel deletes the peer with it); returns whether it existed.
pub(crate) async fn delete(handle: &Handle, host: &str) -> Result<bool, NetError> {
    let existed = netlink::delete_link(handle, host).await?;
    if existed {
        tracing::debug!(veth = host, "deleted veth");
    }
    Ok(existed)
}

/// Inside the sandbox's netns: `lo` up, `eth0` up with `ip/24`, default route via `gateway`.
///
/// Runs on a short-lived std thread that `setns`es into the namespace and opens its netlink
/// socket there (a socket stays bound to the namespace it was created in). A dedicated thread,
/// not a pooled one, so no other task ever runs in the sandbox's namespace; it exits afterwards.
pub(crate) async fn configure_in_netns(
    netns: File,
    path: &Path,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_path = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("bhatti-netns".into())
        .spawn(move || {
            let _ = tx.send(configure_on_thread(&netns, thread_path, ip, gateway));
        });
    if let Err(source) = spawned {
        return Err(NetError::Netns {
            step: "spawn helper thread for",
            path: path.to_path_buf(),
            source,
        });
    }
    rx.await.unwrap_or_else(|_| {
        Err(NetError::NetnsThread {
            path: path.to_path_buf(),
        })
    })
}

fn configure_on_thread(
    netns: &File,
    path: PathBuf,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Netns {
        step: "enter netns",
        path: path.clone(),
        source: e.into(),
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetError::Netns {
            step: "start runtime for",
            path: path.clone(),
            source,
        })?;
    rt.block_on(async move {
        let handle = netlink::connect(&format!("netns {}", path.display()))?;
        configure(&handle, ip, gateway).await
    })
}

async fn configure(handle: &Handle, ip: Ipv4Addr, gateway: Ipv4Addr) -> Result<(), NetError> {
    let lo = netlink::require_link(handle, "configure sandbox", "lo").await?;
    netlink::set_up(handle, lo, "lo").await?;
    let eth = netlink::require_link(handle, "configure sandbox", SANDBOX_IFACE).await?;
    handle
        .address()
        .add(eth, IpAddr::V4(ip), USER_PREFIX_LEN)
        .replace()
        .execute()
        .await
        .map_err(nl_err("add address to", format!("{SANDBOX_IFACE} ({ip})")))?;
    netlink::set_up(handle, eth, SANDBOX_IFACE).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(eth)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(nl_err("add default route via", gateway.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_and_reject_bad_keys() {
        assert_eq!(
            host_veth_name("bh-", "0123456789abcdef").unwrap(),
            "bh-01234567"
        );
        assert!(host_veth_name("bh-", "0123456").is_err());
        assert!(host_veth_name("bh-", "0123/567").is_err());
        assert!(host_veth_name("bh-", "0123 567ab").is_err());
        assert!(host_veth_name("bh-", "ééééé").is_err());
    }
}
