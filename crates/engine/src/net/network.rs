//! [`Network`]: the host's sandbox networking — global rules at start, per-sandbox attach and
//! detach, and reconciliation of a crashed daemon's leftovers.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rtnetlink::Handle;

use super::bridge::{self, bridge_name};
use super::firewall::{self, Firewall};
use super::ipam::{max_subnet_index, subnet_gateway, user_subnet, Ipam, USER_PREFIX_LEN};
use super::netlink::{self, Kind};
use super::tap;
use super::veth::{self, host_veth_name};
use super::{AttachRequest, Attachment, NetConfig, NetError, ReconcileReport};

/// Longest interface name the kernel accepts (IFNAMSIZ − 1).
const IFNAME_MAX: usize = 15;
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The host's sandbox networking. Cheap to clone; all clones share one state.
///
/// Call [`Network::reconcile`] once after [`Network::start`] and before the first attach, so
/// the addresses of sandboxes that survived a daemon restart are known.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    config: NetConfig,
    egress: Option<String>,
    /// Netlink socket in the host namespace (the one `start` was called in).
    handle: Handle,
    state: Mutex<State>,
    /// Interface deletions running in the background (see [`Network::detach`]).
    deleting: std::sync::atomic::AtomicUsize,
    /// Notified when `deleting` drops to zero.
    deleted: tokio::sync::Notify,
}

struct State {
    ipam: Ipam,
    /// One lock per user: bridge creation/deletion and that user's veths are serialised, other
    /// users proceed in parallel.
    user_locks: HashMap<u32, Arc<tokio::sync::Mutex<()>>>,
    /// Users whose intra-bridge rule this process has ensured.
    /// Host veth name → the sandbox key using it. Names hold only 8 characters of the key, so
    /// two keys can collide; the second must fail rather than delete the first one's veth.
    veths: HashMap<String, String>,
    /// Users whose bridge lingers with no sandbox → the number of the removal timer started
    /// by their last detach (only that one may remove it).
    lingering: HashMap<u32, u64>,
    /// Numbers removal timers.
    timers: u64,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.inner.config)
            .field("egress", &self.inner.egress)
            .finish_non_exhaustive()
    }
}

fn validate(config: &NetConfig) -> Result<(), NetError> {
    let max = max_subnet_index(config.base)?;
    let bad = |what: &str, prefix: &str| NetError::Config {
        reason: format!("{what} {prefix:?}: names would not be valid interface names"),
    };
    let ok_chars = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    };
    if !ok_chars(&config.bridge_prefix)
        || bridge_name(&config.bridge_prefix, max).len() > IFNAME_MAX
    {
        return Err(bad("bridge prefix", &config.bridge_prefix));
    }
    if !ok_chars(&config.veth_prefix) || config.veth_prefix.len() + 8 > IFNAME_MAX {
        return Err(bad("veth prefix", &config.veth_prefix));
    }
    Ok(())
}

impl Network {
    /// Enables forwarding and installs the global rules (idempotently).
    pub async fn start(config: NetConfig) -> Result<Network, NetError> {
        validate(&config)?;
        let iptables = firewall::find_iptables()?;
        let handle = netlink::connect("host")?;
        std::fs::write(IP_FORWARD, "1").map_err(|source| NetError::Sysctl {
            key: IP_FORWARD.to_string(),
            source,
        })?;
        let egress = match &config.egress_interface {
            Some(iface) => Some(iface.clone()),
            None => netlink::default_route_interface(&handle).await?,
        };
        if egress.is_none() {
            tracing::warn!(
                "no default route: sandboxes get no NAT for egress (set egress_interface)"
            );
        }
        let fw = Firewall::new(iptables, config.base, &config.bridge_prefix);
        fw.install(egress.as_deref()).await?;
        tracing::info!(base = %config.base, egress = ?egress, "sandbox networking ready");
        let state = State {
            ipam: Ipam::new(config.base),
            user_locks: HashMap::new(),
            veths: HashMap::new(),
            lingering: HashMap::new(),
            timers: 0,
        };
        Ok(Network {
            inner: Arc::new(Inner {
                config,
                egress,
                handle,
                state: Mutex::new(state),
                deleting: std::sync::atomic::AtomicUsize::new(0),
                deleted: tokio::sync::Notify::new(),
            }),
        })
    }

    /// The gateway (bridge address) of user `subnet_index`; `0.0.0.0` if the index is outside
    /// the base network.
    pub fn gateway(&self, subnet_index: u32) -> Ipv4Addr {
        user_subnet(self.inner.config.base, subnet_index)
            .map(subnet_gateway)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// The interface egress is masqueraded through, if any.
    pub fn egress_interface(&self) -> Option<&str> {
        self.inner.egress.as_deref()
    }

    /// The configuration this network was started with.
    pub fn config(&self) -> &NetConfig {
        &self.inner.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ip` is free for sandbox `key` of user `subnet_index` (a stopped sandbox's old
    /// address may have gone to another sandbox meanwhile).
    pub fn ip_available(&self, subnet_index: u32, key: &str, ip: Ipv4Addr) -> bool {
        self.state().ipam.available(subnet_index, key, ip)
    }

    fn with_ipam<T>(&self, f: impl FnOnce(&mut Ipam) -> T) -> T {
        f(&mut self.state().ipam)
    }

    fn user_lock(&self, subnet_index: u32) -> Arc<tokio::sync::Mutex<()>> {
        self.state()
            .user_locks
            .entry(subnet_index)
            .or_default()
            .clone()
    }

    /// Wires a sandbox: the user's bridge (and its rule) if missing, an address, the veth pair,
    /// and `eth0`/`lo`/default route inside the sandbox's netns. On error everything is rolled
    /// back; if the future is dropped midway, call [`Network::detach`] to clean up.
    pub async fn attach(&self, req: AttachRequest<'_>) -> Result<Attachment, NetError> {
        let cfg = &self.inner.config;
        let subnet = user_subnet(cfg.base, req.subnet_index)?;
        let gateway = subnet_gateway(subnet);
        let bridge = bridge_name(&cfg.bridge_prefix, req.subnet_index);
        let host_veth = host_veth_name(&cfg.veth_prefix, req.key)?;
        // Opened first: a sandbox that already died fails before anything is allocated.
        let netns = veth::open_netns(req.netns)?;

        let lock = self.user_lock(req.subnet_index);
        let _guard = lock.lock().await;
        self.claim_veth(&host_veth, req.key)?;
        let ip = match self.with_ipam(|ipam| ipam.allocate(req.subnet_index, req.key, req.ip)) {
            Ok(ip) => ip,
            Err(e) => {
                self.release_veth(&host_veth, req.key);
                return Err(e);
            }
        };
        let wired = self
            .wire(
                req.subnet_index,
                &bridge,
                gateway,
                &host_veth,
                ip,
                netns,
                req.netns,
            )
            .await;
        if let Err(e) = wired {
            tracing::warn!(key = req.key, %ip, error = %e, "attach failed; rolling back");
            self.unwire(req.subnet_index, req.key, &bridge, &host_veth)
                .await;
            return Err(e);
        }
        tracing::debug!(key = req.key, %ip, bridge, host_veth, "sandbox attached");
        Ok(Attachment {
            ip,
            gateway,
            prefix_len: USER_PREFIX_LEN,
            bridge,
            host_veth,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn wire(
        &self,
        subnet_index: u32,
        bridge: &str,
        gateway: Ipv4Addr,
        host_veth: &str,
        ip: Ipv4Addr,
        netns: std::fs::File,
        netns_path: &Path,
    ) -> Result<(), NetError> {
        let handle = &self.inner.handle;
        let (bridge_index, _created) =
            bridge::ensure(handle, bridge, subnet_index, gateway).await?;
        bridge::forget_neighbour(handle, bridge_index, bridge, ip).await?;
        // Same key, same name: a previous incarnation's veth whose netns is still pinned.
        veth::delete(handle, host_veth).await?;
        veth::create(handle, host_veth, bridge_index, &netns).await?;
        veth::configure_in_netns(netns, netns_path, ip, gateway).await
    }

    /// Wires a VM: the user's bridge if missing, an address, and a persistent TAP (named like
    /// the host veth would be) on the bridge. The guest configures the address itself. Undo
    /// with [`Network::detach`], as for a veth.
    pub async fn attach_tap(
        &self,
        subnet_index: u32,
        key: &str,
        want_ip: Option<Ipv4Addr>,
    ) -> Result<Attachment, NetError> {
        let cfg = &self.inner.config;
        let subnet = user_subnet(cfg.base, subnet_index)?;
        let gateway = subnet_gateway(subnet);
        let bridge = bridge_name(&cfg.bridge_prefix, subnet_index);
        let tap = host_veth_name(&cfg.veth_prefix, key)?;
        let lock = self.user_lock(subnet_index);
        let _guard = lock.lock().await;
        self.claim_veth(&tap, key)?;
        let ip = match self.with_ipam(|ipam| ipam.allocate(subnet_index, key, want_ip)) {
            Ok(ip) => ip,
            Err(e) => {
                self.release_veth(&tap, key);
                return Err(e);
            }
        };
        let handle = &self.inner.handle;
        let wired = async {
            let (bridge_index, _) = bridge::ensure(handle, &bridge, subnet_index, gateway).await?;
            bridge::forget_neighbour(handle, bridge_index, &bridge, ip).await?;
            veth::delete(handle, &tap).await?;
            tap::create(handle, &tap, bridge_index).await
        }
        .await;
        if let Err(e) = wired {
            tracing::warn!(key, %ip, error = %e, "tap attach failed; rolling back");
            self.unwire(subnet_index, key, &bridge, &tap).await;
            return Err(e);
        }
        Ok(Attachment {
            ip,
            gateway,
            prefix_len: USER_PREFIX_LEN,
            bridge,
            host_veth: tap,
        })
    }

    /// Marks a live sandbox's interface name and address as used without touching any link
    /// (for an engine re-attaching to its sandboxes on a network another engine reconciles).
    pub async fn adopt(&self, subnet_index: u32, key: &str, ip: Ipv4Addr) -> Result<(), NetError> {
        let name = host_veth_name(&self.inner.config.veth_prefix, key)?;
        let lock = self.user_lock(subnet_index);
        let _guard = lock.lock().await;
        self.claim_veth(&name, key)?;
        self.with_ipam(|ipam| ipam.allocate(subnet_index, key, Some(ip)))
            .map(|_| ())
    }

    /// Records that `key` uses `host_veth`; fails if another key already does.
    fn claim_veth(&self, host_veth: &str, key: &str) -> Result<(), NetError> {
        let mut state = self.state();
        match state.veths.get(host_veth) {
            Some(owner) if owner != key => Err(NetError::VethNameTaken {
                name: host_veth.to_string(),
                owner: owner.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                state.veths.insert(host_veth.to_string(), key.to_string());
                Ok(())
            }
        }
    }

    fn release_veth(&self, host_veth: &str, key: &str) {
        let mut state = self.state();
        if state.veths.get(host_veth).is_some_and(|owner| owner == key) {
            state.veths.remove(host_veth);
        }
    }

    /// Best-effort rollback of a failed attach; errors are logged, the attach error wins.
    async fn unwire(&self, subnet_index: u32, key: &str, bridge: &str, host_veth: &str) {
        if let Err(e) = veth::delete(&self.inner.handle, host_veth).await {
            tracing::warn!(host_veth, error = %e, "rollback: deleting veth failed");
        }
        self.release_veth(host_veth, key);
        let empty = self.with_ipam(|ipam| {
            ipam.release(subnet_index, key);
            ipam.in_use(subnet_index) == 0
        });
        if empty {
            if let Err(e) = self.remove_bridge(bridge).await {
                tracing::warn!(bridge, error = %e, "rollback: deleting bridge failed");
            }
        }
    }

    async fn remove_bridge(&self, bridge: &str) -> Result<(), NetError> {
        bridge::delete(&self.inner.handle, bridge).await?;
        Ok(())
    }

    /// The user whose bridge `name` is, if it is one of ours (`<prefix><n>`).
    fn user_of_bridge(&self, name: &str) -> Option<u32> {
        name.strip_prefix(self.inner.config.bridge_prefix.as_str())?
            .parse()
            .ok()
    }

    /// Deletes user `subnet_index`'s bridge if no sandbox of theirs uses it (and, for `timer`,
    /// if no later detach started another one); whether it did.
    async fn remove_idle_bridge(
        &self,
        subnet_index: u32,
        timer: Option<u64>,
    ) -> Result<bool, NetError> {
        let lock = self.user_lock(subnet_index);
        let _guard = lock.lock().await;
        if self.with_ipam(|ipam| ipam.in_use(subnet_index)) > 0 {
            return Ok(false);
        }
        if let Some(n) = timer {
            if self.state().lingering.get(&subnet_index) != Some(&n) {
                return Ok(false);
            }
        }
        self.state().lingering.remove(&subnet_index);
        let bridge = bridge_name(&self.inner.config.bridge_prefix, subnet_index);
        if netlink::link_index(&self.inner.handle, &bridge)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        self.remove_bridge(&bridge).await?;
        Ok(true)
    }

    /// After `bridge_linger`, removes user `subnet_index`'s bridge unless a sandbox of theirs
    /// came back meanwhile. Holds no reference to the network: a network dropped first (daemon
    /// gone) leaves it to [`Network::remove_idle_bridges`] or the next start's reconcile.
    fn remove_bridge_later(&self, subnet_index: u32) {
        let linger = self.inner.config.bridge_linger;
        let timer = {
            let mut st = self.state();
            st.timers += 1;
            let n = st.timers;
            st.lingering.insert(subnet_index, n);
            n
        };
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let net = Network { inner };
            match net.remove_idle_bridge(subnet_index, Some(timer)).await {
                Ok(true) => tracing::debug!(subnet_index, "idle bridge removed"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(subnet_index, error = %e, "removing an idle bridge failed")
                }
            }
        });
    }

    /// Deletes interface `index` in the background: the kernel waits for RCU grace periods
    /// before an unregistered interface is gone (10–20 ms for a veth here), and nothing needs
    /// the dead sandbox's interface gone before its destroy answers. [`Network::settle`] waits
    /// for these.
    fn delete_later(&self, index: u32, name: String) {
        use std::sync::atomic::Ordering;
        self.inner.deleting.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            match netlink::delete_link_index(&inner.handle, index, &name).await {
                Ok(true) => tracing::debug!(interface = name, "deleted"),
                Ok(false) => {}
                Err(e) => tracing::warn!(interface = name, error = %e, "deleting failed"),
            }
            if inner.deleting.fetch_sub(1, Ordering::SeqCst) == 1 {
                inner.deleted.notify_waiters();
            }
        });
    }

    /// Waits (at most `limit`) until the interface deletions [`Network::detach`] started in the
    /// background have finished; whether they all did.
    pub async fn settle(&self, limit: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        let wait = async {
            loop {
                // Registered before the check, so a notification in between is not lost.
                let done = self.inner.deleted.notified();
                if self.inner.deleting.load(Ordering::SeqCst) == 0 {
                    return;
                }
                done.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// For a daemon that stops: lets background deletions finish, then removes every bridge of
    /// this network that no sandbox uses: no address in use and no port (veth or TAP) left on
    /// it — those lingering after their last sandbox. The bridges of sandboxes left running
    /// stay, even one whose address could not be reserved at the last start.
    pub async fn remove_idle_bridges(&self) -> Result<Vec<String>, NetError> {
        if !self.settle(std::time::Duration::from_secs(10)).await {
            tracing::warn!("interface deletions still running after 10 s");
        }
        let links = netlink::list_links(&self.inner.handle).await?;
        let with_ports: HashSet<u32> = links.iter().filter_map(|l| l.controller).collect();
        let mut removed = Vec::new();
        for link in links {
            let user: Option<u32> = match link.kind {
                Kind::Bridge if !with_ports.contains(&link.index) => {
                    self.user_of_bridge(&link.name)
                }
                _ => None,
            };
            let Some(n) = user else { continue };
            match self.remove_idle_bridge(n, None).await {
                Ok(true) => removed.push(link.name),
                Ok(false) => {}
                // One bridge that cannot go does not keep the others.
                Err(e) => {
                    tracing::warn!(bridge = link.name, error = %e, "removing an idle bridge failed")
                }
            }
        }
        Ok(removed)
    }

    /// Unwires a sandbox: frees its address and interface name and deletes its veth (or TAP;
    /// missing is fine) in the background — [`Network::settle`] waits for that. The user's
    /// bridge goes when no sandbox of theirs is left: at once, or after `bridge_linger`.
    pub async fn detach(&self, subnet_index: u32, key: &str) -> Result<(), NetError> {
        let cfg = &self.inner.config;
        let subnet = user_subnet(cfg.base, subnet_index)?;
        let bridge = bridge_name(&cfg.bridge_prefix, subnet_index);
        let host_veth = host_veth_name(&cfg.veth_prefix, key)?;
        let handle = &self.inner.handle;

        let lock = self.user_lock(subnet_index);
        let _guard = lock.lock().await;
        let foreign = self
            .state()
            .veths
            .get(&host_veth)
            .is_some_and(|owner| owner != key);
        // A key refused for a name collision must not take the other sandbox's veth with it.
        let veth_index = match foreign {
            false => netlink::link_index(handle, &host_veth).await?,
            true => None,
        };
        let (ip, empty) = self.with_ipam(|ipam| {
            let ip = ipam.release(subnet_index, key);
            (ip, ipam.in_use(subnet_index) == 0)
        });
        let linger = !self.inner.config.bridge_linger.is_zero();
        let bridged = async {
            if empty && !linger {
                self.remove_bridge(&bridge).await?;
            } else if let Some(ip) = ip {
                if let Some(index) = netlink::link_index(handle, &bridge).await? {
                    bridge::forget_neighbour(handle, index, &bridge, ip).await?;
                }
            }
            Ok::<_, NetError>(())
        }
        .await;
        // Last, and whatever the bridge did: the deletion holds the kernel's RTNL lock through
        // its grace periods, and any netlink request above would wait for it.
        if !foreign {
            if let Some(index) = veth_index {
                self.delete_later(index, host_veth.clone());
            }
            self.release_veth(&host_veth, key);
        }
        if empty && linger {
            self.remove_bridge_later(subnet_index);
        }
        bridged?;
        tracing::debug!(key, ?ip, %subnet, "sandbox detached");
        Ok(())
    }

    /// Puts a sandbox's address and default route back on the `eth0` of `netns` (idempotent),
    /// keeping its veth and MAC: gVisor's runsc moves them into its own netstack at start, and a
    /// restore needs them there again.
    pub async fn readdress(
        &self,
        subnet_index: u32,
        netns: &Path,
        ip: Ipv4Addr,
    ) -> Result<(), NetError> {
        let f = veth::open_netns(netns)?;
        veth::configure_in_netns(f, netns, ip, self.gateway(subnet_index)).await
    }

    /// Marks the addresses of live sandboxes as used and their veths as theirs, without
    /// deleting anything: for an engine sharing this network with the one that reconciles it
    /// (which must then reconcile after it, so that these are spared).
    pub fn reserve(&self, live: &[(u32, String, Ipv4Addr)]) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        self.reserve_into(live, &mut HashSet::new(), &mut HashSet::new(), &mut report);
        report
    }

    fn reserve_into(
        &self,
        live: &[(u32, String, Ipv4Addr)],
        live_veths: &mut HashSet<String>,
        live_users: &mut HashSet<u32>,
        report: &mut ReconcileReport,
    ) {
        let cfg = &self.inner.config;
        for (subnet_index, key, ip) in live {
            // A live sandbox keeps its veth and bridge even if its address conflicts: breaking
            // a running sandbox is worse than reporting the inconsistency.
            live_users.insert(*subnet_index);
            let reserved = host_veth_name(&cfg.veth_prefix, key).and_then(|name| {
                self.claim_veth(&name, key)?;
                live_veths.insert(name);
                self.with_ipam(|ipam| ipam.allocate(*subnet_index, key, Some(*ip)))
            });
            match reserved {
                Ok(_) => report.kept += 1,
                Err(e) => {
                    tracing::warn!(key, %ip, error = %e, "reconcile: cannot reserve address");
                    report.conflicts.push((key.clone(), e.to_string()));
                }
            }
        }
    }

    /// Marks the addresses of sandboxes that still exist as used and deletes every veth and
    /// bridge with our prefixes that none of them owns (a crashed daemon's leftovers), plus the
    /// rules of deleted bridges. Veths and addresses already claimed in this process (by
    /// [`Network::reserve`] or an attach) are spared too. Meant for daemon start, before any
    /// attach of a new sandbox.
    pub async fn reconcile(
        &self,
        live: &[(u32, String, Ipv4Addr)],
    ) -> Result<ReconcileReport, NetError> {
        let cfg = &self.inner.config;
        let handle = &self.inner.handle;
        let mut report = ReconcileReport::default();
        let mut live_veths = HashSet::new();
        let mut live_users = HashSet::new();
        self.reserve_into(live, &mut live_veths, &mut live_users, &mut report);
        live_veths.extend(self.state().veths.keys().cloned());

        for link in netlink::list_links(handle).await? {
            match link.kind {
                Kind::Veth | Kind::Tun
                    if link.name.starts_with(&cfg.veth_prefix)
                        && !live_veths.contains(&link.name) =>
                {
                    let existed = veth::delete(handle, &link.name).await?;
                    if existed {
                        report.deleted_veths.push(link.name);
                    }
                }
                Kind::Bridge => match self.user_of_bridge(&link.name) {
                    Some(n) if live_users.contains(&n) || self.with_ipam(|i| i.in_use(n) > 0) => {}
                    Some(_) => {
                        self.remove_bridge(&link.name).await?;
                        report.deleted_bridges.push(link.name);
                    }
                    None => {}
                },
                _ => {}
            }
        }
        tracing::info!(
            kept = report.kept,
            deleted_veths = report.deleted_veths.len(),
            deleted_bridges = report.deleted_bridges.len(),
            conflicts = report.conflicts.len(),
            "network reconciled"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert!(validate(&NetConfig::default()).is_ok());
        let long = NetConfig {
            bridge_prefix: "verylongbridge-".into(),
            ..NetConfig::default()
        };
        assert!(matches!(validate(&long), Err(NetError::Config { .. })));
        let slash = NetConfig {
            veth_prefix: "a/".into(),
            ..NetConfig::default()
        };
        assert!(validate(&slash).is_err());
        let veth_long = NetConfig {
            veth_prefix: "bhatti-v".into(),
            ..NetConfig::default()
        };
        assert!(validate(&veth_long).is_err());
        let tiny = NetConfig {
            base: "10.0.0.0/25".parse().unwrap(),
            ..NetConfig::default()
        };
        assert!(validate(&tiny).is_err());
    }
}
