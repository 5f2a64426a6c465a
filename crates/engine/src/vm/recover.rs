//! Recovery after a daemon restart: re-attach to VMs that still run, keep cold ones ready to
//! wake, boot the others afresh over their kept disks, and remove a crashed daemon's leftovers.

use std::collections::HashSet;
use std::sync::Arc;

use crate::cgroups::Cgroup;
use crate::error::io;
use crate::sandbox_dir::valid_key;
use crate::spec::{Created, SandboxSpec};
use crate::EngineError;

use super::{Running, VmEngine, VmMeta, COLD_MARKER, STOPPED_MARKER};

impl VmEngine {
    /// Registers a VM re-adopted after a restart (running, or cold and ready to wake) and what
    /// recovery reports for it.
    fn readopt(&self, spec: &SandboxSpec, m: &VmMeta, cgroup: Cgroup) -> Created {
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                spec.id.clone(),
                Arc::new(Running {
                    meta: m.clone(),
                    token: spec.agent_token.clone(),
                    cgroup,
                }),
            );
        Created {
            engine_id: spec.id.clone(),
            ip: Some(m.ip),
            meta: serde_json::to_value(m).unwrap_or_default(),
        }
    }

    /// Adopts, wakes or reboots the sandboxes the server still has, and removes the rest.
    pub(super) async fn recover_all(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        let wanted: HashSet<String> = sandboxes.iter().map(|s| s.id.clone()).collect();
        // A crashed daemon's leftovers: VM directories nobody asked for.
        if let Ok(rd) = std::fs::read_dir(&self.cfg.sandboxes_dir) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                // A stopped VM is not running, so the server does not list it; its
                // directory (the user's files) stays for `start`.
                let stopped = e.path().join(STOPPED_MARKER).exists();
                if stopped && e.path().join(COLD_MARKER).exists() {
                    // A stopped VM whose memory is on disk keeps its address and TAP (the
                    // saved guest has them configured): claimed before any reconcile.
                    if let Some(m) = self.load_meta(&id) {
                        if let Err(err) = self.net.adopt(m.subnet_index, &id, m.ip).await {
                            tracing::warn!(sandbox = %id, error = %err, "cannot keep a stopped VM's address; it boots afresh at start");
                        }
                    }
                }
                if valid_key(&id) && !wanted.contains(&id) && !stopped {
                    let meta = self.load_meta(&id);
                    tracing::info!(sandbox = %id, "removing orphaned VM");
                    self.teardown(&id, meta.as_ref().map(|m| m.subnet_index), true)
                        .await;
                    self.release_uid(meta.and_then(|m| m.uid));
                }
            }
        }
        let mut live = Vec::new();
        let mut adopt = Vec::new();
        let mut cold = Vec::new();
        let mut dead = Vec::new();
        for spec in sandboxes {
            let meta = self.load_meta(&spec.id);
            let stopped = self.dir(&spec.id).join(STOPPED_MARKER).exists();
            match meta {
                Some(m) if self.vmm.pid(&self.dir(&spec.id)).is_some() => {
                    live.push((m.subnet_index, spec.id.clone(), m.ip));
                    adopt.push((spec, m));
                }
                Some(m) if self.is_cold(&spec.id) => cold.push((spec, m)),
                Some(m) if stopped => dead.push((spec, Some(m), true)),
                m => dead.push((spec, m, false)),
            }
        }
        if self.own_net {
            if let Err(e) = self.net.reconcile(&live).await {
                tracing::warn!(error = %e, "network reconcile failed");
            }
        } else {
            for (s, id, ip) in &live {
                if let Err(e) = self.net.adopt(*s, id, *ip).await {
                    tracing::warn!(sandbox = %id, error = %e, "reserving a live VM's address failed");
                }
            }
        }
        let mut out = Vec::new();
        for (spec, m) in adopt {
            let cg = match self.cgroups.open(&spec.id) {
                Some(c) => c,
                None => match self.cgroups.create(&spec.id, &self.limits(&m)) {
                    Ok(c) => c,
                    Err(e) => {
                        out.push((spec.id.clone(), Err(io("recreate cgroup", e))));
                        continue;
                    }
                },
            };
            if let Some(pid) = self.vmm.pid(&self.dir(&spec.id)) {
                let _ = cg.add_pid(pid);
            }
            let created = self.readopt(&spec, &m, cg);
            tracing::info!(sandbox = %spec.id, "re-attached to running VM");
            out.push((spec.id.clone(), Ok(created)));
        }
        for (spec, m) in cold {
            // A cold VM keeps its address; its TAP is (re)made now so the wake finds it.
            let r = async {
                // A cold VM's (empty) cgroup survives a daemon restart; a host reboot does not.
                let cg = match self.cgroups.open(&spec.id) {
                    Some(c) => c,
                    None => self
                        .cgroups
                        .create(&spec.id, &self.limits(&m))
                        .map_err(|e| io("create cgroup", e))?,
                };
                self.net
                    .attach_tap(m.subnet_index, &spec.id, Some(m.ip))
                    .await
                    .map_err(|e| io("attach network", e))?;
                Ok(self.readopt(&spec, &m, cg))
            }
            .await;
            out.push((spec.id.clone(), r));
        }
        for (spec, m, stopped) in dead {
            if stopped {
                // Stays stopped; its directory is kept for `start`.
                out.push((
                    spec.id.clone(),
                    Err(EngineError::NotSupported {
                        engine: "vm",
                        what: "recovering a stopped sandbox (start it)",
                    }),
                ));
                continue;
            }
            let r = match m {
                Some(m) => {
                    let want = self
                        .net
                        .ip_available(spec.subnet_index, &spec.id, m.ip)
                        .then_some(m.ip);
                    self.teardown(&spec.id, None, false).await;
                    let r = self.boot(&spec, m, want).await;
                    if r.is_err() {
                        self.teardown(&spec.id, Some(spec.subnet_index), false)
                            .await;
                    }
                    r
                }
                None => Err(EngineError::NotFound(spec.id.clone())),
            };
            out.push((spec.id.clone(), r));
        }
        out
    }
}
