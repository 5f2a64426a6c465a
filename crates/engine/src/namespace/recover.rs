//! Recovery after a daemon restart: adopt sandboxes that still run, restart the others over
//! their kept filesystem, and remove a crashed daemon's leftovers.

use std::collections::HashSet;
use std::sync::Arc;

use crate::cgroups::Limits;
use crate::spec::{Created, SandboxSpec};
use crate::EngineError;

use super::{io, pid_alive, remove_tree, NamespaceEngine, Running, SandboxMeta};

impl NamespaceEngine {
    /// Writes the engine's view of a sandbox next to its filesystem.
    pub(super) fn save_state(&self, engine_id: &str, meta: &SandboxMeta) -> std::io::Result<()> {
        crate::sandbox_dir::save_state(&self.dir(engine_id), meta)
    }

    /// The engine's view of a sandbox, if its directory has one.
    pub(super) fn load_state(&self, engine_id: &str) -> Option<SandboxMeta> {
        crate::sandbox_dir::load_state(&self.dir(engine_id))
    }

    /// See [`crate::Engine::recover`].
    pub(super) async fn recover_all(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        let wanted: HashSet<String> = sandboxes.iter().map(|s| s.id.clone()).collect();
        self.remove_orphans(&wanted).await;

        // Which of the wanted ones still run: their lohar is alive and inside their cgroup.
        let mut alive = Vec::new();
        let mut dead = Vec::new();
        for spec in sandboxes {
            let state = self.load_state(&spec.id);
            let cgroup = self.cgroups.open(&spec.id);
            match (state, cgroup) {
                (Some(meta), Some(cg))
                    if pid_alive(meta.pid)
                        && cg.pids().map(|p| p.contains(&meta.pid)).unwrap_or(false) =>
                {
                    alive.push((spec, meta, cg))
                }
                (state, _) => dead.push((spec, state)),
            }
        }
        let live_net: Vec<(u32, String, std::net::Ipv4Addr)> = alive
            .iter()
            .map(|(s, m, _)| (m.subnet_index, s.id.clone(), m.ip))
            .collect();
        if self.own_net {
            if let Err(e) = self.net.reconcile(&live_net).await {
                tracing::warn!(error = %e, "network reconcile failed");
            }
        } else {
            self.net.reserve(&live_net);
        }
        for (_, m, _) in &alive {
            self.slots.reserve(m.slot);
        }
        for (_, m) in &dead {
            if let Some(m) = m {
                self.slots.reserve(m.slot);
            }
        }

        let mut out = Vec::new();
        for (spec, meta, cg) in alive {
            let running = Arc::new(Running {
                meta: meta.clone(),
                token: spec.agent_token.clone(),
                cgroup: cg,
            });
            self.sandboxes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(spec.id.clone(), running);
            tracing::info!(sandbox = %spec.id, pid = meta.pid, "re-attached to running sandbox");
            out.push((
                spec.id.clone(),
                Ok(Created {
                    engine_id: spec.id,
                    ip: Some(meta.ip),
                    meta: serde_json::to_value(&meta).unwrap_or_default(),
                }),
            ));
        }
        for (spec, meta) in dead {
            let r = self.restart(&spec, meta).await;
            if let Err(e) = &r {
                tracing::warn!(sandbox = %spec.id, error = %e, "could not restart sandbox");
            }
            out.push((spec.id.clone(), r));
        }
        out
    }

    /// Starts a sandbox's processes again over its kept upper layer, with the same id range
    /// (its files are owned by it) and, when free, the same IP.
    pub(super) async fn restart(
        &self,
        spec: &SandboxSpec,
        meta: Option<SandboxMeta>,
    ) -> Result<Created, EngineError> {
        let meta =
            meta.ok_or_else(|| io("restart", "no saved state (sandbox filesystem missing)"))?;
        if !self.dir(&spec.id).join("upper").is_dir() {
            return Err(io("restart", "sandbox filesystem missing"));
        }
        let image_rootfs = self
            .images
            .rootfs(&spec.image)
            .map_err(|e| io("resolve image", e))?;
        if let Some(old) = self.cgroups.open(&spec.id) {
            let _ = tokio::task::spawn_blocking(move || old.destroy()).await;
        }
        // Mount points of the previous run are empty directories now; lohar's config must be
        // written afresh.
        for d in ["lower", "merged", "work/work"] {
            let _ = std::fs::remove_dir(self.dir(&spec.id).join(d));
        }
        let limits = Limits {
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            pids_max: self.cfg.pids_max,
        };
        let cgroup = self
            .cgroups
            .create(&spec.id, &limits)
            .map_err(|e| io("create cgroup", e))?;
        // The old address only if nobody took it while the sandbox was stopped; else any free
        // one (the store records the new one). Found by the API contract test: start answered
        // 500 "IP … is already used by sandbox …".
        let want_ip = self
            .net
            .ip_available(spec.subnet_index, &spec.id, meta.ip)
            .then_some(meta.ip);
        match self
            .start(spec, meta.slot, image_rootfs, &cgroup, want_ip)
            .await
        {
            Ok(created) => {
                tracing::info!(sandbox = %spec.id, "restarted sandbox over its kept filesystem");
                Ok(created)
            }
            Err(e) => {
                // Keep the directory (the user's files) and the id range; only processes go.
                let _ = self
                    .teardown(&spec.id, spec.subnet_index, None, Some(&cgroup), false)
                    .await;
                Err(e)
            }
        }
    }

    /// Destroys cgroups and directories of sandboxes nobody asked to keep.
    async fn remove_orphans(&self, keep: &HashSet<String>) {
        let mut orphans: HashSet<String> = self
            .cgroups
            .list()
            .unwrap_or_default()
            .into_iter()
            .collect();
        for e in std::fs::read_dir(&self.cfg.sandboxes_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            orphans.insert(e.file_name().to_string_lossy().into_owned());
        }
        // A stopped sandbox is not running, so the store does not list it; it is not an orphan.
        // Its id range stays reserved for its next start.
        let stopped = |id: &String| {
            let yes = self.dir(id).join(super::STOPPED_MARKER).exists();
            if yes {
                if let Some(m) = self.load_state(id) {
                    self.slots.reserve(m.slot);
                }
            }
            yes
        };
        for id in orphans
            .into_iter()
            .filter(|id| !keep.contains(id) && !stopped(id))
        {
            tracing::info!(sandbox = %id, "removing leftovers of a sandbox the store does not know");
            if let Some(cg) = self.cgroups.open(&id) {
                let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
            }
            let dir = self.dir(&id);
            let _ = tokio::task::spawn_blocking(move || remove_tree(&dir)).await;
        }
    }
}
