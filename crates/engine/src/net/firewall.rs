//! Isolation and NAT rules, through whichever `iptables` is on PATH (iptables-nft on Debian).
//!
//! Layout: our rules live in three chains of our own, each jumped to from position 1 of the
//! built-in chain, so they precede UFW/Docker chains exactly as the reference's rules inserted at
//! the top did, and so we can check, order and clean up our rules without parsing anyone else's:
//!
//! ```text
//! filter FORWARD      -j BHATTI-FWD          (position 1)
//! filter BHATTI-FWD   -i brbhatti-+ -m physdev --physdev-is-bridged -j ACCEPT   same bridge
//!                     ! -s BASE -i brbhatti-+ -j DROP              spoofed source (not reference)
//!                     -s BASE -d BASE -j DROP                      cross-user
//!                     -s BASE ! -d BASE -j ACCEPT                  egress
//!                     -d BASE -m state --state RELATED,ESTABLISHED -j ACCEPT   return traffic
//! filter INPUT        -j BHATTI-IN           (position 1)
//! filter BHATTI-IN    ! -s BASE -i brbhatti-+ -j DROP              spoofed source (not reference)
//!                     -s BASE -m state --state RELATED,ESTABLISHED -j ACCEPT   replies to the host
//!                     -s BASE -m state --state NEW -j DROP         sandboxes never open to the host
//! nat POSTROUTING     -j BHATTI-NAT          (position 1)
//! nat BHATTI-NAT      -s BASE -o EGRESS -j MASQUERADE
//! ```
//!
//! The effective top-down order is the reference's (§6.3). Every rule is checked with `-C` and
//! added only when absent, so restarts never duplicate or reorder anything. Rules are written in
//! the option order `iptables -S` prints, so listings compare word for word.
//!
//! Same-user traffic: on hosts with `br_netfilter` (Docker, k8s) frames bridged between two
//! sandboxes of one user traverse FORWARD and would hit the cross-user DROP. The reference adds
//! one `-i brX -o brX -j ACCEPT` per bridge; one `physdev --physdev-is-bridged` rule limited to
//! our bridges says the same for all of them (bridged traffic never leaves its bridge, and
//! cross-user traffic is routed, not bridged), so creating or deleting a user's bridge never
//! has to run `iptables`.
//!
//! Beyond the reference: the anti-spoofing DROPs. The reference's rules match on source
//! address; a sandbox whose root may reconfigure its own `eth0` could send from an address
//! outside BASE and slip past them (e.g. UDP to a host service). Matching the ingress bridge
//! closes that. (The reference's DNS ACCEPTs are absent: sibling DNS is not implemented yet;
//! they belong between RELATED,ESTABLISHED and NEW DROP in BHATTI-IN.)

use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use tokio::process::Command;
use tokio::sync::Mutex;

use super::NetError;

/// Our chain in `filter`, jumped to from `FORWARD`.
pub const FORWARD_CHAIN: &str = "BHATTI-FWD";
/// Our chain in `filter`, jumped to from `INPUT`.
pub const INPUT_CHAIN: &str = "BHATTI-IN";
/// Our chain in `nat`, jumped to from `POSTROUTING`.
pub const NAT_CHAIN: &str = "BHATTI-NAT";

/// Runs `iptables` for our chains. One call at a time: iptables-legacy needs the xtables lock
/// (we pass `-w` too) and concurrent nft transactions only waste retries.
#[derive(Debug)]
pub(crate) struct Firewall {
    bin: PathBuf,
    base: String,
    /// `iptables` wildcard matching every user bridge (`brbhatti-+`).
    bridges: String,
    lock: Mutex<()>,
}

/// A rule: its match/target words, without table, command or chain.
type Rule = Vec<String>;

fn words(s: &str) -> Rule {
    s.split_whitespace().map(str::to_string).collect()
}

/// Finds `iptables` on PATH, falling back to the sbin directories a non-login PATH may lack.
pub(crate) fn find_iptables() -> Result<PathBuf, NetError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("iptables"))
        .find(|p| is_executable(p))
        .ok_or(NetError::IptablesMissing)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Firewall {
    /// A firewall for sandboxes inside `base` on bridges named `<bridge_prefix><n>`, using
    /// the `iptables` binary at `bin`.
    pub(crate) fn new(bin: PathBuf, base: Ipv4Net, bridge_prefix: &str) -> Self {
        Self {
            bin,
            base: base.trunc().to_string(),
            bridges: format!("{bridge_prefix}+"),
            lock: Mutex::new(()),
        }
    }

    fn forward_rules(&self) -> Vec<Rule> {
        let (b, br) = (&self.base, &self.bridges);
        vec![
            words(&format!(
                "-i {br} -m physdev --physdev-is-bridged -j ACCEPT"
            )),
            words(&format!("! -s {b} -i {br} -j DROP")),
            words(&format!("-s {b} -d {b} -j DROP")),
            words(&format!("-s {b} ! -d {b} -j ACCEPT")),
            words(&format!(
                "-d {b} -m state --state RELATED,ESTABLISHED -j ACCEPT"
            )),
        ]
    }

    fn input_rules(&self) -> Vec<Rule> {
        let (b, br) = (&self.base, &self.bridges);
        vec![
            words(&format!("! -s {b} -i {br} -j DROP")),
            words(&format!(
                "-s {b} -m state --state RELATED,ESTABLISHED -j ACCEPT"
            )),
            words(&format!("-s {b} -m state --state NEW -j DROP")),
        ]
    }

    /// Installs the global rules idempotently; `egress` is the MASQUERADE interface.
    pub(crate) async fn install(&self, egress: Option<&str>) -> Result<(), NetError> {
        let _guard = self.lock.lock().await;
        self.ensure_chain("filter", FORWARD_CHAIN).await?;
        self.ensure_chain("filter", INPUT_CHAIN).await?;
        self.ensure_chain("nat", NAT_CHAIN).await?;
        self.ensure_tail("filter", FORWARD_CHAIN, &self.forward_rules())
            .await?;
        self.ensure_tail("filter", INPUT_CHAIN, &self.input_rules())
            .await?;
        match egress {
            Some(iface) => {
                let rule = words(&format!("-s {} -o {iface} -j MASQUERADE", self.base));
                if !self.check("nat", NAT_CHAIN, &rule).await? {
                    // A rule for another interface (the default route moved) is replaced.
                    self.run(&args(&["-t", "nat", "-F", NAT_CHAIN], &[]))
                        .await?;
                    self.run(&args(&["-t", "nat", "-A", NAT_CHAIN], &rule))
                        .await?;
                }
            }
            None => {
                self.run(&args(&["-t", "nat", "-F", NAT_CHAIN], &[]))
                    .await?;
            }
        }
        // Jumps last: traffic enters our chains only once they are complete.
        let jump = |c: &str| words(&format!("-j {c}"));
        self.ensure_top("filter", "FORWARD", &jump(FORWARD_CHAIN))
            .await?;
        self.ensure_top("filter", "INPUT", &jump(INPUT_CHAIN))
            .await?;
        self.ensure_top("nat", "POSTROUTING", &jump(NAT_CHAIN))
            .await?;
        Ok(())
    }

    async fn ensure_chain(&self, table: &str, chain: &str) -> Result<(), NetError> {
        if self
            .run(&args(&["-t", table, "-S", chain], &[]))
            .await
            .is_err()
        {
            self.run(&args(&["-t", table, "-N", chain], &[])).await?;
        }
        Ok(())
    }

    /// Ensures `rules` end our chain `chain`, in this order, once each. If some are missing
    /// (a first start, or someone deleted one) the present ones are removed and all appended,
    /// so the order is always the canonical one.
    async fn ensure_tail(&self, table: &str, chain: &str, rules: &[Rule]) -> Result<(), NetError> {
        self.prune_stale(table, chain, rules).await?;
        let mut present = Vec::with_capacity(rules.len());
        for rule in rules {
            present.push(self.check(table, chain, rule).await?);
        }
        if present.iter().all(|&p| p) {
            return Ok(());
        }
        for (rule, was) in rules.iter().zip(present) {
            if was {
                self.run(&args(&["-t", table, "-D", chain], rule)).await?;
            }
        }
        for rule in rules {
            self.run(&args(&["-t", table, "-A", chain], rule)).await?;
        }
        tracing::info!(table, chain, "installed sandbox firewall rules");
        Ok(())
    }

    /// Deletes rules of our chain that are not in `rules`: the leftovers of a previous
    /// configuration (another base network, per-bridge ACCEPTs of older versions).
    async fn prune_stale(&self, table: &str, chain: &str, rules: &[Rule]) -> Result<(), NetError> {
        let listing = self.run(&args(&["-t", table, "-S", chain], &[])).await?;
        let prefix = ["-A", chain];
        for line in listing.lines() {
            let w: Vec<String> = words(line);
            if w.len() < 2 || w[..2] != prefix {
                continue;
            }
            let rule = &w[2..];
            if rules.iter().any(|r| r.as_slice() == rule) {
                continue;
            }
            tracing::info!(table, chain, rule = rule.join(" "), "removing stale rule");
            self.run(&args(&["-t", table, "-D", chain], rule)).await?;
        }
        Ok(())
    }

    /// Inserts `rule` at position 1 of `chain` unless it is already there somewhere.
    async fn ensure_top(&self, table: &str, chain: &str, rule: &Rule) -> Result<(), NetError> {
        if !self.check(table, chain, rule).await? {
            self.run(&args(&["-t", table, "-I", chain, "1"], rule))
                .await?;
        }
        Ok(())
    }

    /// `iptables -C`: whether the rule exists. Exit 1 means "no such rule" (or chain).
    async fn check(&self, table: &str, chain: &str, rule: &Rule) -> Result<bool, NetError> {
        let argv = args(&["-t", table, "-C", chain], rule);
        let out = self.spawn(&argv).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failure(&argv, &out)),
        }
    }

    /// Runs iptables; a non-zero exit is an error carrying stderr. Returns stdout.
    async fn run(&self, argv: &[String]) -> Result<String, NetError> {
        let out = self.spawn(argv).await?;
        if !out.status.success() {
            return Err(failure(argv, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn spawn(&self, argv: &[String]) -> Result<std::process::Output, NetError> {
        tracing::trace!(args = argv.join(" "), "iptables");
        Command::new(&self.bin)
            .arg("-w")
            .args(argv)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| NetError::IptablesSpawn {
                args: argv.join(" "),
                source,
            })
    }
}

fn args(head: &[&str], rule: &[String]) -> Vec<String> {
    head.iter()
        .map(|s| s.to_string())
        .chain(rule.iter().cloned())
        .collect()
}

fn failure(argv: &[String], out: &std::process::Output) -> NetError {
    NetError::Iptables {
        args: argv.join(" "),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_use_the_configured_base() {
        let fw = Firewall::new("/x".into(), "172.20.0.0/16".parse().unwrap(), "brx-");
        assert_eq!(
            fw.forward_rules()[0].join(" "),
            "-i brx-+ -m physdev --physdev-is-bridged -j ACCEPT"
        );
        assert_eq!(
            fw.forward_rules()[1].join(" "),
            "! -s 172.20.0.0/16 -i brx-+ -j DROP"
        );
        assert_eq!(
            fw.forward_rules()[2].join(" "),
            "-s 172.20.0.0/16 -d 172.20.0.0/16 -j DROP"
        );
        assert_eq!(
            fw.input_rules()[2].join(" "),
            "-s 172.20.0.0/16 -m state --state NEW -j DROP"
        );
    }
}
