//! Subnet maths and in-memory IP address management. Pure: no I/O, no locking (the caller holds
//! the state lock), so every rule here is unit-tested.
//!
//! User `n` (n >= 1) owns the n-th /24 inside the configured base: with the default
//! `10.0.0.0/8`, user 1 → `10.0.1.0/24`, user 254 → `10.0.254.0/24`, user 256 → `10.1.0.0/24`.
//! Inside each /24, `.1` is the gateway (the bridge), `.0` and `.255` are network/broadcast and
//! sandboxes get `.2`–`.254`, lowest free first.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::NetError;

/// Lowest host octet handed to a sandbox (`.1` is the gateway).
const FIRST_HOST: u8 = 2;
/// Highest host octet handed to a sandbox (`.255` is broadcast).
const LAST_HOST: u8 = 254;
/// Prefix length of every user subnet.
pub const USER_PREFIX_LEN: u8 = 24;

/// The n-th /24 inside `base` (n >= 1): the subnet of the user with `subnet_index` n.
pub fn user_subnet(base: Ipv4Net, subnet_index: u32) -> Result<Ipv4Net, NetError> {
    let max = max_subnet_index(base)?;
    if subnet_index == 0 || subnet_index > max {
        return Err(NetError::SubnetOutOfRange {
            index: subnet_index,
            base,
            max,
        });
    }
    // `subnet_index <= max < 2^24`, so the shift stays inside the base's host bits.
    let network = u32::from(base.network()) | (subnet_index << 8);
    Ipv4Net::new(Ipv4Addr::from(network), USER_PREFIX_LEN).map_err(|e| NetError::Config {
        reason: format!("subnet {subnet_index} of {base}: {e}"),
    })
}

/// The largest valid subnet index for `base` (index 0, the base's first /24, is never used).
pub fn max_subnet_index(base: Ipv4Net) -> Result<u32, NetError> {
    let prefix = base.prefix_len();
    if prefix > USER_PREFIX_LEN {
        return Err(NetError::Config {
            reason: format!("base network {base} is smaller than a /24"),
        });
    }
    let count = 1u64 << (USER_PREFIX_LEN - prefix);
    u32::try_from(count - 1).map_err(|_| NetError::Config {
        reason: format!("base network {base} is too large"),
    })
}

/// The gateway (bridge) address of a user subnet: its `.1`.
pub fn subnet_gateway(subnet: Ipv4Net) -> Ipv4Addr {
    host(subnet, 1)
}

fn host(subnet: Ipv4Net, octet: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) | u32::from(octet))
}

/// The sandbox addresses of one user: which host octets are taken, and by whom.
#[derive(Debug, Clone)]
struct Pool {
    subnet: Ipv4Net,
    /// Host octet → owning sandbox key.
    used: BTreeMap<u8, String>,
    /// Sandbox key → host octet.
    owners: HashMap<String, u8>,
}

impl Pool {
    fn new(subnet: Ipv4Net) -> Self {
        Self {
            subnet,
            used: BTreeMap::new(),
            owners: HashMap::new(),
        }
    }

    fn lowest_free(&self) -> Option<u8> {
        (FIRST_HOST..=LAST_HOST).find(|o| !self.used.contains_key(o))
    }
}

/// The host octet of `ip` if it is a sandbox address of `subnet`.
fn pool_octet(subnet: Ipv4Net, ip: Ipv4Addr) -> Result<u8, NetError> {
    let octet = ip.octets()[3];
    if !subnet.contains(&ip) || !(FIRST_HOST..=LAST_HOST).contains(&octet) {
        return Err(NetError::IpOutsidePool { ip, subnet });
    }
    Ok(octet)
}

/// Every user's pool, keyed by subnet index. Users without sandboxes have no entry.
#[derive(Debug, Clone)]
pub struct Ipam {
    base: Ipv4Net,
    pools: HashMap<u32, Pool>,
}

impl Ipam {
    /// An empty allocator for subnets inside `base`.
    pub fn new(base: Ipv4Net) -> Self {
        Self {
            base,
            pools: HashMap::new(),
        }
    }

    /// Gives sandbox `key` of user `subnet_index` an address: `requested` if given (error if
    /// another sandbox holds it), else the lowest free one. A key that already holds an address
    /// keeps it (re-attach after a restart), unless it asks for a different one.
    pub fn allocate(
        &mut self,
        subnet_index: u32,
        key: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NetError> {
        let subnet = user_subnet(self.base, subnet_index)?;
        let wanted = match requested {
            Some(ip) => Some(pool_octet(subnet, ip)?),
            None => None,
        };
        let pool = self
            .pools
            .entry(subnet_index)
            .or_insert_with(|| Pool::new(subnet));
        let held = pool.owners.get(key).copied();
        let octet = match (wanted, held) {
            (None, Some(h)) => h,
            (Some(o), Some(h)) if o == h => h,
            (Some(o), _) => {
                if let Some(owner) = pool.used.get(&o) {
                    return Err(NetError::IpTaken {
                        ip: host(subnet, o),
                        owner: owner.clone(),
                    });
                }
                o
            }
            (None, None) => pool
                .lowest_free()
                .ok_or(NetError::PoolExhausted { subnet })?,
        };
        // Moving to another address gives the old one back.
        if let Some(h) = held.filter(|&h| h != octet) {
            pool.used.remove(&h);
        }
        pool.used.insert(octet, key.to_string());
        pool.owners.insert(key.to_string(), octet);
        Ok(host(subnet, octet))
    }

    /// Frees the address of sandbox `key`; returns it, or `None` if the key held none.
    pub fn release(&mut self, subnet_index: u32, key: &str) -> Option<Ipv4Addr> {
        let pool = self.pools.get_mut(&subnet_index)?;
        let octet = pool.owners.remove(key)?;
        pool.used.remove(&octet);
        let ip = host(pool.subnet, octet);
        self.drop_if_empty(subnet_index);
        Some(ip)
    }

    /// The address held by sandbox `key`, if any.
    pub fn lookup(&self, subnet_index: u32, key: &str) -> Option<Ipv4Addr> {
        let pool = self.pools.get(&subnet_index)?;
        pool.owners.get(key).map(|&o| host(pool.subnet, o))
    }

    /// Whether `ip` is free for sandbox `key` (unused, or held by `key` itself).
    pub fn available(&self, subnet_index: u32, key: &str, ip: Ipv4Addr) -> bool {
        let Some(pool) = self.pools.get(&subnet_index) else {
            return true;
        };
        match pool.used.get(&ip.octets()[3]) {
            None => true,
            Some(owner) => owner == key && pool.subnet.contains(&ip),
        }
    }

    /// How many sandboxes of user `subnet_index` hold an address.
    pub fn in_use(&self, subnet_index: u32) -> usize {
        self.pools.get(&subnet_index).map_or(0, |p| p.owners.len())
    }

    fn drop_if_empty(&mut self, subnet_index: u32) {
        if self.in_use(subnet_index) == 0 {
            self.pools.remove(&subnet_index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Ipv4Net {
        "10.0.0.0/8".parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnet_maths_matches_the_reference_for_the_first_254_users() {
        assert_eq!(user_subnet(base(), 1).unwrap().to_string(), "10.0.1.0/24");
        assert_eq!(
            user_subnet(base(), 254).unwrap().to_string(),
            "10.0.254.0/24"
        );
        assert_eq!(
            user_subnet(base(), 255).unwrap().to_string(),
            "10.0.255.0/24"
        );
        assert_eq!(user_subnet(base(), 256).unwrap().to_string(), "10.1.0.0/24");
        assert_eq!(
            user_subnet(base(), 65535).unwrap().to_string(),
            "10.255.255.0/24"
        );
        assert_eq!(
            subnet_gateway(user_subnet(base(), 2).unwrap()),
            ip("10.0.2.1")
        );
    }

    #[test]
    fn subnet_index_out_of_range_is_an_error() {
        assert!(matches!(
            user_subnet(base(), 0),
            Err(NetError::SubnetOutOfRange { .. })
        ));
        assert!(matches!(
            user_subnet(base(), 65536),
            Err(NetError::SubnetOutOfRange { max: 65535, .. })
        ));
        let small: Ipv4Net = "172.20.0.0/16".parse().unwrap();
        assert_eq!(user_subnet(small, 3).unwrap().to_string(), "172.20.3.0/24");
        assert!(user_subnet(small, 256).is_err());
        // A base that is not aligned is truncated to its network.
        let odd: Ipv4Net = "192.168.7.9/16".parse().unwrap();
        assert_eq!(user_subnet(odd, 1).unwrap().to_string(), "192.168.1.0/24");
        let tiny: Ipv4Net = "10.0.0.0/25".parse().unwrap();
        assert!(matches!(user_subnet(tiny, 1), Err(NetError::Config { .. })));
    }

    #[test]
    fn available_only_when_unused_or_own() {
        let mut ipam = Ipam::new(base());
        assert!(ipam.available(1, "x", ip("10.0.1.2")));
        let a = ipam.allocate(1, "x", None).unwrap();
        assert!(ipam.available(1, "x", a));
        assert!(!ipam.available(1, "y", a));
        ipam.release(1, "x");
        assert!(ipam.available(1, "y", a));
    }

    #[test]
    fn allocates_lowest_free_and_reuses_released() {
        let mut ipam = Ipam::new(base());
        assert_eq!(ipam.allocate(1, "a", None).unwrap(), ip("10.0.1.2"));
        assert_eq!(ipam.allocate(1, "b", None).unwrap(), ip("10.0.1.3"));
        assert_eq!(ipam.allocate(1, "c", None).unwrap(), ip("10.0.1.4"));
        assert_eq!(ipam.allocate(2, "d", None).unwrap(), ip("10.0.2.2"));
        assert_eq!(ipam.release(1, "b"), Some(ip("10.0.1.3")));
        assert_eq!(ipam.allocate(1, "e", None).unwrap(), ip("10.0.1.3"));
        assert_eq!(ipam.in_use(1), 3);
        assert_eq!(ipam.release(1, "nobody"), None);
        assert_eq!(ipam.lookup(1, "c"), Some(ip("10.0.1.4")));
    }

    #[test]
    fn same_key_keeps_its_address() {
        let mut ipam = Ipam::new(base());
        assert_eq!(ipam.allocate(1, "a", None).unwrap(), ip("10.0.1.2"));
        assert_eq!(ipam.allocate(1, "a", None).unwrap(), ip("10.0.1.2"));
        assert_eq!(
            ipam.allocate(1, "a", Some(ip("10.0.1.2"))).unwrap(),
            ip("10.0.1.2")
        );
        assert_eq!(ipam.in_use(1), 1);
        // Asking for another address moves the key.
        assert_eq!(
            ipam.allocate(1, "a", Some(ip("10.0.1.9"))).unwrap(),
            ip("10.0.1.9")
        );
        assert_eq!(ipam.allocate(1, "b", None).unwrap(), ip("10.0.1.2"));
        // A refused move keeps the old address.
        assert!(ipam.allocate(1, "a", Some(ip("10.0.1.2"))).is_err());
        assert_eq!(ipam.lookup(1, "a"), Some(ip("10.0.1.9")));
    }

    #[test]
    fn reserve_requested_and_reject_taken() {
        let mut ipam = Ipam::new(base());
        // Re-reserving after a restart: restored addresses are marked used, new ones go around them.
        assert_eq!(
            ipam.allocate(1, "x", Some(ip("10.0.1.2"))).unwrap(),
            ip("10.0.1.2")
        );
        assert_eq!(
            ipam.allocate(1, "y", Some(ip("10.0.1.4"))).unwrap(),
            ip("10.0.1.4")
        );
        assert_eq!(ipam.allocate(1, "z", None).unwrap(), ip("10.0.1.3"));
        assert_eq!(ipam.allocate(1, "w", None).unwrap(), ip("10.0.1.5"));
        let err = ipam.allocate(1, "v", Some(ip("10.0.1.4"))).unwrap_err();
        assert!(matches!(err, NetError::IpTaken { owner, .. } if owner == "y"));
        for bad in [
            "10.0.1.1",
            "10.0.1.0",
            "10.0.1.255",
            "10.0.2.7",
            "192.168.1.2",
        ] {
            assert!(
                matches!(
                    ipam.allocate(1, "v", Some(ip(bad))),
                    Err(NetError::IpOutsidePool { .. })
                ),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn exhaustion_after_253() {
        let mut ipam = Ipam::new(base());
        for i in 0..253 {
            ipam.allocate(7, &format!("k{i}"), None).unwrap();
        }
        assert_eq!(ipam.lookup(7, "k252"), Some(ip("10.0.7.254")));
        let err = ipam.allocate(7, "one-more", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("IP pool exhausted (253 sandboxes per user)"),
            "{err}"
        );
        ipam.release(7, "k100");
        assert_eq!(
            ipam.allocate(7, "one-more", None).unwrap(),
            ip("10.0.7.102")
        );
        // Other users are unaffected.
        assert_eq!(ipam.allocate(8, "a", None).unwrap(), ip("10.0.8.2"));
    }

    #[test]
    fn empty_users_are_forgotten() {
        let mut ipam = Ipam::new(base());
        ipam.allocate(3, "a", None).unwrap();
        ipam.release(3, "a");
        assert_eq!(ipam.in_use(3), 0);
        assert!(ipam.pools.is_empty());
        assert!(ipam.allocate(3, "b", Some(ip("10.0.1.5"))).is_err());
        assert!(
            ipam.pools.is_empty(),
            "a refused request leaves no empty pool behind"
        );
    }
}
