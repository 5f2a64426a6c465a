//! Files from the config, and the environment every process gets.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::{decode_file, SandboxConfig};

/// Writes the config's files (mode as given, parents created 0755), owned by `owner` when set.
pub fn write_files(config: &SandboxConfig, owner: Option<(u32, u32)>) {
    for (path, f) in &config.files {
        if let Err(e) = write_one(path, f, owner) {
            tracing::warn!(path, error = %e, "writing config file failed");
        }
    }
}

fn write_one(
    path: &str,
    f: &crate::config::ConfigFile,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(std::io::Error::other("path must be absolute"));
    }
    let (content, mode) = decode_file(f).map_err(std::io::Error::other)?;
    if let Some(parent) = p.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(parent, Some(uid), Some(gid))?;
            }
        }
    }
    std::fs::write(p, content)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Parses `KEY=VALUE` lines (blank lines and `#` comments skipped).
pub fn parse_env_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines() {
        let m = parse_env_lines("A=1\n# c\n\nB=x=y\n=bad\nnoeq\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "x=y");
    }
}
