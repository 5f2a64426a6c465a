//! Building images: the default Debian `minimal` (debootstrap) and the tiny busybox image.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::{ImageError, ImageInfo, ImageStore};

/// Packages of the `minimal` image on top of debootstrap's minbase.
pub const MINIMAL_PACKAGES: &[&str] = &[
    "bash",
    "sudo",
    "ca-certificates",
    "curl",
    "git",
    "python3",
    "procps",
    "iproute2",
    "less",
];

fn build_err(step: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::Build {
        step: step.into(),
        detail: e.to_string(),
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn du_mb(p: &Path) -> u64 {
    Command::new("du")
        .args(["-sm", "--one-file-system"])
        .arg(p)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn run(step: &str, cmd: &mut Command) -> Result<(), ImageError> {
    let out = cmd.output().map_err(|e| build_err(step, e))?;
    if out.status.success() {
        return Ok(());
    }
    let mut tail = String::from_utf8_lossy(&out.stderr).into_owned();
    tail.push_str(&String::from_utf8_lossy(&out.stdout));
    let tail: String = tail
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(build_err(step, format!("{}: {tail}", out.status)))
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
}

/// The Debian mirror apt on this host uses (so image builds work wherever apt does).
pub fn debian_mirror() -> String {
    let mut sources = Vec::new();
    if let Ok(s) = std::fs::read_to_string("/etc/apt/sources.list") {
        sources.push(s);
    }
    let mut files: Vec<_> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .collect();
    files.sort();
    sources.extend(files.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    mirror_from_sources(&sources).unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// The first Debian archive URL (not security, not a third-party repository) in apt sources,
/// one-line or deb822 format.
pub fn mirror_from_sources(sources: &[String]) -> Option<String> {
    let is_debian = |url: &str| {
        let u = url.trim_end_matches('/');
        (u.starts_with("http://") || u.starts_with("https://"))
            && u.ends_with("/debian")
            && !u.contains("security")
    };
    for s in sources {
        for line in s.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let words: Vec<&str> = if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().collect()
            } else if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().collect()
            } else {
                continue;
            };
            if let Some(url) = words.into_iter().find(|w| is_debian(w)) {
                return Some(url.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

fn write(p: &Path, content: &str, mode: u32) -> Result<(), ImageError> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| build_err("mkdir", e))?;
    }
    std::fs::write(p, content).map_err(|e| build_err(&format!("write {}", p.display()), e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| build_err(&format!("chmod {}", p.display()), e))
}

fn chown_1000(p: &Path) -> Result<(), ImageError> {
    std::os::unix::fs::chown(p, Some(1000), Some(1000))
        .map_err(|e| build_err(&format!("chown {}", p.display()), e))
}

/// Builds the tiny busybox image `name` from the host's static busybox (Debian `busybox-static`).
pub fn build_busybox(store: &ImageStore, name: &str) -> Result<ImageInfo, ImageError> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return Err(ImageError::MissingTool {
            tool: "busybox",
            hint: "install Debian's busybox-static (apt-get install busybox-static)",
        });
    }
    let staging = store.staging(name)?;
    let result = (|| {
        let root = staging.join("rootfs");
        for d in [
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "root",
            "home/lohar",
            "workspace",
            "var/tmp",
        ] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| build_err("mkdir", e))?;
        }
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| build_err("chmod tmp", e))?;
        std::fs::copy(busybox, root.join("bin/busybox"))
            .map_err(|e| build_err("copy busybox", e))?;
        let list = Command::new(busybox)
            .arg("--list-full")
            .output()
            .map_err(|e| build_err("busybox --list-full", e))?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let target = root.join(applet);
            if applet == "bin/busybox" || target.exists() {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| build_err("mkdir", e))?;
            }
            std::os::unix::fs::symlink("/bin/busybox", &target)
                .map_err(|e| build_err("symlink applet", e))?;
        }
        write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nlohar:x:1000:1000:lohar:/home/lohar:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644)?;
        write(
            &root.join("etc/group"),
            "root:x:0:\ntty:x:5:\nsudo:x:27:lohar\nlohar:x:1000:\nnogroup:x:65534:\n",
            0o644,
        )?;
        write(&root.join("etc/hostname"), "bhatti\n", 0o644)?;
        write(&root.join("etc/hosts"), "127.0.0.1\tlocalhost\n", 0o644)?;
        chown_1000(&root.join("home/lohar"))?;
        chown_1000(&root.join("workspace"))?;
        Ok(ImageInfo {
            name: name.into(),
            source: "busybox".into(),
            size_mb: du_mb(&root),
            created_at: now_rfc3339(),
        })
    })();
    finish(store, &staging, result)
}

fn finish(
    store: &ImageStore,
    staging: &Path,
    result: Result<ImageInfo, ImageError>,
) -> Result<ImageInfo, ImageError> {
    match result {
        Ok(info) => {
            store.commit(staging, &info)?;
            Ok(info)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(staging);
            Err(e)
        }
    }
}

/// Builds the default Debian bookworm image (`debootstrap --variant=minbase` plus
/// [`MINIMAL_PACKAGES`], user `lohar` with passwordless sudo, `/workspace`). `progress` gets one
/// line per step and debootstrap's own progress lines.
pub fn build_minimal(
    store: &ImageStore,
    name: &str,
    mut progress: impl FnMut(&str),
) -> Result<ImageInfo, ImageError> {
    if !which("debootstrap") {
        return Err(ImageError::MissingTool {
            tool: "debootstrap",
            hint: "install it with `apt-get install debootstrap`",
        });
    }
    let mirror = debian_mirror();
    let staging = store.staging(name)?;
    let result = (|| {
        let root = staging.join("rootfs");
        progress(&format!("debootstrap bookworm from {mirror}"));
        let mut child = Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--include={}", MINIMAL_PACKAGES.join(",")),
                "bookworm",
            ])
            .arg(&root)
            .arg(&mirror)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| build_err("start debootstrap", e))?;
        let stdout = child.stdout.take();
        let mut last = Vec::new();
        if let Some(out) = stdout {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                progress(&line);
                last.push(line);
                if last.len() > 15 {
                    last.remove(0);
                }
            }
        }
        let status = child.wait().map_err(|e| build_err("debootstrap", e))?;
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(build_err(
                "debootstrap",
                format!(
                    "{status} (is the mirror {mirror} reachable?)\n{}\n{err}",
                    last.join("\n")
                ),
            ));
        }
        progress("creating user lohar (uid 1000, passwordless sudo) and /workspace");
        run(
            "useradd lohar",
            Command::new("chroot").arg(&root).args([
                "useradd",
                "-m",
                "-u",
                "1000",
                "-U",
                "-s",
                "/bin/bash",
                "-G",
                "sudo",
                "lohar",
            ]),
        )?;
        write(
            &root.join("etc/sudoers.d/lohar"),
            "lohar ALL=(ALL) NOPASSWD:ALL\n",
            0o440,
        )?;
        std::fs::create_dir_all(root.join("workspace"))
            .map_err(|e| build_err("mkdir /workspace", e))?;
        chown_1000(&root.join("workspace"))?;
        write(&root.join("etc/hostname"), "bhatti\n", 0o644)?;
        // Caches and logs only cost space in every sandbox's lower layer.
        for d in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            if let Ok(rd) = std::fs::read_dir(root.join(d)) {
                for e in rd.flatten() {
                    if e.path().is_file() {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        Ok(ImageInfo {
            name: name.into(),
            source: "debootstrap:bookworm".into(),
            size_mb: du_mb(&root),
            created_at: now_rfc3339(),
        })
    })();
    finish(store, &staging, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_detection() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/x\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n".to_string();
        let third = "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n".to_string();
        let security =
            "deb http://security.debian.org/debian-security bookworm-security main".to_string();
        let oneline = "deb [arch=amd64] http://mirror.example/debian/ bookworm main".to_string();
        assert_eq!(
            mirror_from_sources(&[third.clone(), deb822]).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            mirror_from_sources(&[security, oneline]).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_from_sources(&[third]), None);
    }

    #[test]
    fn timestamp_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
