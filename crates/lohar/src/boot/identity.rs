//! Hostname, /etc/hosts and the resolver configuration.

use crate::config::SandboxConfig;

/// Applies the hostname (when configured) and resolv.conf (when nameservers are configured).
pub fn apply(config: &SandboxConfig) -> std::io::Result<()> {
    if !config.hostname.is_empty() {
        // The engine usually sets it already (lohar itself lacks CAP_SYS_ADMIN in a sandbox).
        let current = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned());
        if current.as_deref().ok() != Some(config.hostname.as_str()) {
            nix::unistd::sethostname(&config.hostname).map_err(std::io::Error::from)?;
        }
        std::fs::write("/etc/hostname", format!("{}\n", config.hostname))?;
        std::fs::write("/etc/hosts", hosts_file(&config.hostname))?;
    }
    if !config.dns.is_empty() {
        std::fs::write("/etc/resolv.conf", resolv_conf(&config.dns))?;
    }
    Ok(())
}

/// `/etc/hosts` content naming the sandbox on loopback.
pub fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback {hostname}\n"
    )
}

/// `/etc/resolv.conf` content for the given nameservers.
pub fn resolv_conf(servers: &[String]) -> String {
    let mut s = String::new();
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s.push_str("options timeout:2 attempts:1\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        assert!(hosts_file("dev").starts_with("127.0.0.1\tlocalhost dev\n"));
        assert_eq!(
            resolv_conf(&["10.0.1.1".into()]),
            "nameserver 10.0.1.1\noptions timeout:2 attempts:1\n"
        );
    }
}
