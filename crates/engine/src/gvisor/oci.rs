//! The OCI bundle `config.json` of a gvisor sandbox, built with the `oci-spec` crate.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::namespace::rootfs::{CONFIG_PATH, LOHAR_PATH};

/// What the bundle describes.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// The merged overlay (image + the sandbox's upper layer) on the host.
    pub rootfs: PathBuf,
    /// Host directory bound at `/run/bhatti` (holds lohar's config until lohar deletes it).
    pub boot_dir: PathBuf,
    /// The static lohar binary on the host (bound read-only at [`LOHAR_PATH`]).
    pub lohar: PathBuf,
    /// Hostname (the sandbox's name).
    pub hostname: String,
    /// The sandbox's network namespace (runsc's netstack takes over its `eth0`).
    pub netns: PathBuf,
    /// cgroup path, relative to each hierarchy's root (`/<parent>/<id>`).
    pub cgroups_path: PathBuf,
}

/// Docker's default capability set: sandbox root has these inside gVisor's kernel.
const CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, String> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| e.to_string())
}

fn bind(dest: &str, source: &Path, ro: bool) -> Result<Mount, String> {
    let mut opts = vec!["rbind", "nosuid", "nodev"];
    if ro {
        opts.push("ro");
    }
    mount(dest, "bind", &source.to_string_lossy(), &opts)
}

/// The runtime spec: lohar as PID 1 with its config file as argument, the usual kernel
/// filesystems, `/run/bhatti` from the host, and pid/ipc/uts/mount namespaces plus the
/// sandbox's own network namespace.
pub fn build(b: &BundleSpec) -> Result<Spec, String> {
    let caps: std::collections::HashSet<Capability> = CAPS.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(|e| e.to_string())?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .args(vec![LOHAR_PATH.to_string(), CONFIG_PATH.to_string()])
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/root".to_string(),
        ])
        .cwd("/")
        .capabilities(capabilities)
        .no_new_privileges(false)
        .build()
        .map_err(|e| e.to_string())?;
    let root = RootBuilder::default()
        .path(b.rootfs.clone())
        .readonly(false)
        .build()
        .map_err(|e| e.to_string())?;
    let mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
        bind("/run/bhatti", &b.boot_dir, false)?,
        bind(LOHAR_PATH, &b.lohar, true)?,
    ];
    let ns = |t: LinuxNamespaceType, path: Option<&Path>| {
        let mut nb = LinuxNamespaceBuilder::default().typ(t);
        if let Some(p) = path {
            nb = nb.path(p.to_path_buf());
        }
        nb.build().map_err(|e| e.to_string())
    };
    let linux = LinuxBuilder::default()
        .namespaces(vec![
            ns(LinuxNamespaceType::Pid, None)?,
            ns(LinuxNamespaceType::Ipc, None)?,
            ns(LinuxNamespaceType::Uts, None)?,
            ns(LinuxNamespaceType::Mount, None)?,
            ns(LinuxNamespaceType::Network, Some(&b.netns))?,
        ])
        .cgroups_path(b.cgroups_path.clone())
        .build()
        .map_err(|e| e.to_string())?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .process(process)
        .hostname(b.hostname.clone())
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_lohar_as_pid1_and_the_sandbox_netns() {
        let b = BundleSpec {
            rootfs: "/d/rootfs".into(),
            boot_dir: "/d/boot".into(),
            lohar: "/usr/lib/lohar".into(),
            hostname: "dev".into(),
            netns: "/d/netns".into(),
            cgroups_path: "/bhatti-gvisor/abcd".into(),
        };
        let v = serde_json::to_value(build(&b).unwrap()).unwrap();
        assert_eq!(
            v["process"]["args"],
            serde_json::json!(["/run/bhatti/lohar", "/run/bhatti/config.json"])
        );
        assert_eq!(v["root"]["path"], "/d/rootfs");
        assert_eq!(v["hostname"], "dev");
        assert_eq!(v["linux"]["cgroupsPath"], "/bhatti-gvisor/abcd");
        let nss = v["linux"]["namespaces"].as_array().unwrap();
        assert!(nss
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/d/netns"));
        let mounts = v["mounts"].as_array().unwrap();
        let lohar = mounts
            .iter()
            .find(|m| m["destination"] == "/run/bhatti/lohar")
            .unwrap();
        assert_eq!(lohar["source"], "/usr/lib/lohar");
        assert!(lohar["options"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("ro")));
        let caps = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), 14);
        assert!(!caps.contains(&serde_json::json!("CAP_SYS_ADMIN")));
    }
}
