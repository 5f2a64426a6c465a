//! Per-user bridges (`brbhatti-<n>`, gateway `.1/24`) and their neighbour table.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder};

use super::ipam::USER_PREFIX_LEN;
use super::netlink::{self, is_errno, nl_err, EEXIST, ENOENT};
use super::NetError;

/// The bridge name of user `subnet_index`.
pub(crate) fn bridge_name(prefix: &str, subnet_index: u32) -> String {
    format!("{prefix}{subnet_index}")
}

/// A fixed, locally administered MAC per user bridge.
///
/// Why: a bridge without an explicit address takes the lowest MAC of its ports, so the
/// gateway's MAC would change whenever a sandbox comes or goes and every other sandbox would
/// keep a stale ARP entry for the gateway until it expires.
fn bridge_mac(subnet_index: u32) -> Vec<u8> {
    let [_, a, b, c] = subnet_index.to_be_bytes();
    // 0x02: locally administered, unicast; "bh" marks it as ours.
    vec![0x02, b'b', b'h', a, b, c]
}

/// Ensures user `subnet_index`'s bridge exists, is up and carries `gateway/24`; returns its
/// index and whether it was created now.
pub(crate) async fn ensure(
    handle: &Handle,
    name: &str,
    subnet_index: u32,
    gateway: Ipv4Addr,
) -> Result<(u32, bool), NetError> {
    let mut created = false;
    let index = match netlink::link_index(handle, name).await? {
        Some(index) => index,
        None => {
            // Created down: IPv6 goes before the first up (see `disable_ipv6`).
            let msg = LinkMessageBuilder::<LinkBridge>::new(name)
                .address(bridge_mac(subnet_index))
                .build();
            match handle.link().add(msg).execute().await {
                Ok(()) => created = true,
                // Someone (a previous daemon) made it between our lookup and add: use it.
                Err(e) if is_errno(&e, EEXIST) => {}
                Err(e) => return Err(nl_err("create bridge", name)(e)),
            }
            netlink::require_link(handle, "create bridge", name).await?
        }
    };
    netlink::disable_ipv6(name)?;
    // Replace keeps this idempotent for a bridge a previous daemon left behind.
    handle
        .address()
        .add(index, IpAddr::V4(gateway), USER_PREFIX_LEN)
        .replace()
        .execute()
        .await
        .map_err(nl_err(
            "add gateway address to",
            format!("{name} ({gateway})"),
        ))?;
    // Also brings up a bridge a previous daemon left (or someone set down).
    netlink::set_up(handle, index, name).await?;
    if created {
        tracing::info!(bridge = name, %gateway, "created user bridge");
    }
    Ok((index, created))
}

/// Deletes a user bridge; a missing bridge is fine.
pub(crate) async fn delete(handle: &Handle, name: &str) -> Result<(), NetError> {
    if netlink::delete_link(handle, name).await? {
        tracing::info!(bridge = name, "deleted user bridge");
    }
    Ok(())
}

/// Deletes the bridge's neighbour (ARP) entry for `ip`, if any.
///
/// Why: when an address is reused by a new sandbox (new veth, new MAC), a cached entry for the
/// old MAC makes the host's first packets go nowhere until the entry times out (reference
/// incident: 30 s readiness timeouts).
pub(crate) async fn forget_neighbour(
    handle: &Handle,
    bridge_index: u32,
    bridge: &str,
    ip: Ipv4Addr,
) -> Result<(), NetError> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = bridge_index;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    match handle.neighbours().del(msg).execute().await {
        Ok(()) => {
            tracing::debug!(bridge, %ip, "deleted stale neighbour entry");
            Ok(())
        }
        Err(e) if is_errno(&e, ENOENT) => Ok(()),
        Err(e) => Err(nl_err(
            "delete neighbour entry on",
            format!("{bridge} ({ip})"),
        )(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_and_macs() {
        assert_eq!(bridge_name("brbhatti-", 1), "brbhatti-1");
        assert_eq!(bridge_mac(1), vec![2, b'b', b'h', 0, 0, 1]);
        assert_eq!(bridge_mac(0x01_02_03), vec![2, b'b', b'h', 1, 2, 3]);
        assert_eq!(bridge_mac(1)[0] & 0x01, 0, "unicast");
        assert_eq!(bridge_mac(1)[0] & 0x02, 2, "locally administered");
    }
}
