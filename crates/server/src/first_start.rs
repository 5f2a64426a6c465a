//! First start on an empty data dir: create the `admin` user, show its key once, and write it
//! with the API URL into the invoking user's `~/.bhatti/config.yaml`, so `bhatti create` works
//! right away, as the original installer arranges.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::ServerConfig;

/// Where to write the CLI config and whom it should belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliConfigTarget {
    /// The file.
    pub path: PathBuf,
    /// `(uid, gid)` to chown the file and its directory to (when run through sudo).
    pub owner: Option<(u32, u32)>,
}

/// The invoking user's CLI config: the configured override, else `SUDO_USER`'s home when run as
/// root through sudo, else `$HOME`.
pub fn cli_config_target(cfg: &ServerConfig) -> Option<CliConfigTarget> {
    if !cfg.write_cli_config {
        return None;
    }
    if let Some(p) = &cfg.first_start_cli_config {
        return Some(CliConfigTarget {
            path: p.clone(),
            owner: None,
        });
    }
    if nix::unistd::geteuid().is_root() {
        if let Some(name) = std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty() && u != "root")
        {
            if let Ok(Some(u)) = nix::unistd::User::from_name(&name) {
                return Some(CliConfigTarget {
                    path: u.dir.join(".bhatti").join("config.yaml"),
                    owner: Some((u.uid.as_raw(), u.gid.as_raw())),
                });
            }
        }
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(CliConfigTarget {
        path: PathBuf::from(home).join(".bhatti").join("config.yaml"),
        owner: None,
    })
}

/// The URL a local CLI should use for a listener: unspecified addresses become loopback.
pub fn api_url(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        a => format!("http://{a}"),
    }
}

/// Writes `api_url` and `auth_token` (dir 0700, file 0600) unless the file already has a token.
/// Returns whether it wrote.
pub fn write_cli_config(
    target: &CliConfigTarget,
    api_url: &str,
    token: &str,
) -> std::io::Result<bool> {
    let mut doc = match std::fs::read_to_string(&target.path) {
        Ok(text) => serde_yaml::from_str::<serde_yaml::Mapping>(&text).unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_yaml::Mapping::new(),
        Err(e) => return Err(e),
    };
    let has_token = doc
        .get("auth_token")
        .and_then(|v| v.as_str())
        .is_some_and(|s| !s.is_empty());
    if has_token {
        return Ok(false);
    }
    doc.insert("api_url".into(), api_url.into());
    doc.insert("auth_token".into(), token.into());
    let text = serde_yaml::to_string(&doc).map_err(std::io::Error::other)?;

    let dir = target.path.parent().unwrap_or(Path::new("."));
    let dir_existed = dir.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = target.path.with_extension("yaml.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    if let Some((uid, gid)) = target.owner {
        let (uid, gid) = (
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        );
        nix::unistd::chown(&tmp, uid, gid).map_err(std::io::Error::from)?;
        if !dir_existed {
            nix::unistd::chown(dir, uid, gid).map_err(std::io::Error::from)?;
        }
    }
    std::fs::rename(&tmp, &target.path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn urls() {
        assert_eq!(
            api_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            api_url("10.0.0.1:80".parse().unwrap()),
            "http://10.0.0.1:80"
        );
        assert_eq!(api_url("[::]:8080".parse().unwrap()), "http://[::1]:8080");
    }

    #[test]
    fn writes_once_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let t = CliConfigTarget {
            path: dir.path().join("h/.bhatti/config.yaml"),
            owner: None,
        };
        assert!(write_cli_config(&t, "http://127.0.0.1:1", "bht_a").unwrap());
        let text = std::fs::read_to_string(&t.path).unwrap();
        assert!(text.contains("auth_token: bht_a") && text.contains("api_url: http://127.0.0.1:1"));
        let m = std::fs::metadata(&t.path).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o600);
        let m = std::fs::metadata(t.path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o700);
        assert!(!write_cli_config(&t, "http://x", "bht_b").unwrap());
        assert!(std::fs::read_to_string(&t.path).unwrap().contains("bht_a"));
    }

    #[test]
    fn disabled_or_overridden() {
        let mut c = ServerConfig {
            write_cli_config: false,
            ..ServerConfig::default()
        };
        assert_eq!(cli_config_target(&c), None);
        c.write_cli_config = true;
        c.first_start_cli_config = Some("/tmp/x.yaml".into());
        assert_eq!(
            cli_config_target(&c).unwrap().path,
            PathBuf::from("/tmp/x.yaml")
        );
    }
}
