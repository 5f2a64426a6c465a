//! Small helpers over rtnetlink shared by bridge.rs and veth.rs: connections, link lookup and
//! deletion, link dumps and default-route detection.

use std::net::Ipv4Addr;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteType};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::NetError;

/// `errno` values the kernel answers with that callers treat as "already so".
pub(crate) const ENOENT: i32 = 2;
pub(crate) const ENODEV: i32 = 19;
pub(crate) const EEXIST: i32 = 17;

/// The main routing table's id.
const RT_TABLE_MAIN: u32 = 254;

/// Opens a route-netlink socket in the calling thread's network namespace and spawns its
/// driver on the current tokio runtime. The socket stays bound to that namespace.
pub(crate) fn connect(context: &str) -> Result<Handle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Connect {
        context: context.to_string(),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Whether a netlink error is the kernel answering `-errno`.
pub(crate) fn is_errno(err: &rtnetlink::Error, errno: i32) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// Maps a netlink error into [`NetError::Netlink`] with the step and object.
pub(crate) fn nl_err(
    step: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let object = object.into();
    move |source| NetError::Netlink {
        step,
        object,
        source,
    }
}

/// The index of interface `name`, or `None` if it does not exist.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, ENODEV) => Ok(None),
        Err(e) => Err(nl_err("look up interface", name)(e)),
    }
}

/// Like [`link_index`] but a missing interface is an error.
pub(crate) async fn require_link(
    handle: &Handle,
    step: &'static str,
    name: &str,
) -> Result<u32, NetError> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| NetError::LinkMissing {
            step,
            name: name.to_string(),
        })
}

/// Deletes interface `name`; returns whether it existed.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<bool, NetError> {
    delete(handle, LinkUnspec::new_with_name(name).build(), name).await
}

/// Deletes interface `index` (`name` is for messages); returns whether it existed. By index,
/// so an interface that took the same name meanwhile is not touched.
pub(crate) async fn delete_link_index(
    handle: &Handle,
    index: u32,
    name: &str,
) -> Result<bool, NetError> {
    delete(handle, LinkUnspec::new_with_index(index).build(), name).await
}

async fn delete(handle: &Handle, msg: LinkMessage, name: &str) -> Result<bool, NetError> {
    match handle.link().del_with_message(msg).execute().await {
        Ok(()) => Ok(true),
        Err(e) if is_errno(&e, ENODEV) => Ok(false),
        Err(e) => Err(nl_err("delete interface", name)(e)),
    }
}

/// Sets interface `index` up.
pub(crate) async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), NetError> {
    let msg = LinkUnspec::new_with_index(index).up().build();
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(nl_err("set up", name))
}

/// The kind of a link ("veth", "bridge" …) as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A veth end.
    Veth,
    /// A Linux bridge.
    Bridge,
    /// A TUN/TAP device (a VM's).
    Tun,
    /// Anything else.
    Other,
}

/// One interface of a dump: name, kind, index and the bridge it is a port of.
#[derive(Debug, Clone)]
pub(crate) struct LinkSummary {
    pub name: String,
    pub kind: Kind,
    pub index: u32,
    pub controller: Option<u32>,
}

fn summarize(msg: &LinkMessage) -> Option<LinkSummary> {
    let mut name = None;
    let mut kind = Kind::Other;
    let mut controller = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Controller(c) => controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        kind = match k {
                            InfoKind::Veth => Kind::Veth,
                            InfoKind::Bridge => Kind::Bridge,
                            InfoKind::Tun => Kind::Tun,
                            _ => Kind::Other,
                        };
                    }
                }
            }
            _ => {}
        }
    }
    name.map(|name| LinkSummary {
        name,
        kind,
        index: msg.header.index,
        controller,
    })
}

/// Every interface of the namespace the handle is bound to.
pub(crate) async fn list_links(handle: &Handle) -> Result<Vec<LinkSummary>, NetError> {
    let mut out = Vec::new();
    let mut links = handle.link().get().execute();
    while let Some(msg) = links
        .try_next()
        .await
        .map_err(nl_err("list interfaces", "(all)"))?
    {
        if let Some(s) = summarize(&msg) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The name of the interface carrying the IPv4 default route of the main table (lowest metric
/// wins), or `None` when there is no default route.
pub(crate) async fn default_route_interface(handle: &Handle) -> Result<Option<String>, NetError> {
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut best: Option<(u32, u32)> = None; // (metric, oif)
    while let Some(route) = routes
        .try_next()
        .await
        .map_err(nl_err("list routes", "(ipv4)"))?
    {
        if route.header.destination_prefix_length != 0 || route.header.kind != RouteType::Unicast {
            continue;
        }
        let mut table = u32::from(route.header.table);
        let mut oif = None;
        let mut metric = 0;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Priority(p) => metric = *p,
                _ => {}
            }
        }
        if table != RT_TABLE_MAIN {
            continue;
        }
        if let Some(oif) = oif {
            if best.is_none_or(|(m, _)| metric < m) {
                best = Some((metric, oif));
            }
        }
    }
    let Some((_, oif)) = best else {
        return Ok(None);
    };
    let mut links = handle.link().get().match_index(oif).execute();
    let msg = links
        .try_next()
        .await
        .map_err(nl_err("look up interface", format!("#{oif}")))?;
    Ok(msg.as_ref().and_then(summarize).map(|s| s.name))
}

/// Removes IPv6 from a host-side interface (before it goes up, so it never gets a link-local
/// address).
///
/// Why: the isolation rules are IPv4 iptables. With a link-local address on the bridge or the
/// host veth, a sandbox could reach any host service listening on `[::]` (sshd, the API …) via
/// `fe80::…%eth0`, bypassing them. Hosts booted without IPv6 have nothing to disable.
pub(crate) fn disable_ipv6(name: &str) -> Result<(), NetError> {
    let key = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    match std::fs::write(&key, "1") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !Path::new(IPV6_CONF).exists() => {
            Ok(())
        }
        Err(source) => Err(NetError::Sysctl { key, source }),
    }
}

const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";
