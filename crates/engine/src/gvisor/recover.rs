//! Recovery after a daemon restart: re-adopt sandboxes that still run or are cold, boot the
//! others again over their kept filesystem, and remove a crashed daemon's leftovers.

use crate::error::io;
use crate::sandbox_dir::valid_key;
use crate::spec::{Created, SandboxSpec};
use crate::EngineError;

use super::{blocking, GvisorEngine, GvisorMeta, Phase, STOPPED_MARKER};

impl GvisorEngine {
    /// See [`crate::Engine::recover`].
    pub(super) async fn recover_all(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        let wanted: std::collections::HashSet<String> =
            sandboxes.iter().map(|s| s.id.clone()).collect();
        // Stopped sandboxes are not listed (they do not run) but keep their files, checkpoint
        // and IP; everything else unlisted is a crashed daemon's leftover.
        let mut kept_net = Vec::new();
        for e in std::fs::read_dir(self.cfg.dir.join("sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            if wanted.contains(&id) || !valid_key(&id) {
                continue;
            }
            if self.dir(&id).join(STOPPED_MARKER).exists() {
                if let Some(m) = self.load_state(&id) {
                    kept_net.push((m.subnet_index, id.clone(), m.ip));
                }
                continue;
            }
            tracing::info!(sandbox = %id, "removing leftovers of a gvisor sandbox the store does not know");
            let _ = self.teardown(&id, None).await;
        }
        self.net.reserve(&kept_net);
        let mut out = Vec::new();
        for spec in &sandboxes {
            let r = self.recover_one(spec).await;
            if let Err(e) = &r {
                tracing::warn!(sandbox = %spec.id, error = %e, "could not recover gvisor sandbox");
            }
            out.push((spec.id.clone(), r));
        }
        if self.own_net {
            // Everything live has been reserved or attached above; this sweeps the rest.
            if let Err(e) = self.net.reconcile(&[]).await {
                tracing::warn!(error = %e, "network reconcile failed");
            }
        }
        out
    }

    async fn recover_one(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        let id = &spec.id;
        let meta = self
            .load_state(id)
            .ok_or_else(|| io("recover", "no saved state (sandbox directory missing)"))?;
        let created = |m: &GvisorMeta| Created {
            engine_id: id.clone(),
            ip: Some(m.ip),
            meta: serde_json::to_value(m).unwrap_or_default(),
        };
        if self.is_cold(id) {
            // Cold stays cold: the checkpoint is on disk; a wake restores it.
            self.net
                .reserve(&[(meta.subnet_index, id.clone(), meta.ip)]);
            self.register(spec, meta.clone(), Phase::Cold);
            return Ok(created(&meta));
        }
        let (r, idc, ns) = (self.runsc.clone(), id.clone(), self.dir(id).join("netns"));
        let status = blocking(move || Ok(r.status(&idc, &ns))).await?;
        match status.as_deref() {
            Some("running") | Some("paused") => {
                self.net
                    .reserve(&[(meta.subnet_index, id.clone(), meta.ip)]);
                let phase = if status.as_deref() == Some("paused") {
                    Phase::Paused
                } else {
                    Phase::Running
                };
                self.register(spec, meta.clone(), phase);
                tracing::info!(sandbox = %id, "re-attached to running gvisor sandbox");
                Ok(created(&meta))
            }
            _ => self.boot(spec, Some(meta.ip)).await,
        }
    }
}
