//! Startup recovery: the engine adopts or restarts every sandbox the store says should run, and
//! the spec a stopped sandbox starts again from.

use std::collections::BTreeMap;

use bhatti_engine::SandboxSpec;
use serde_json::json;

use super::{secrets as secret_svc, ServiceError};
use crate::state::AppState;
use crate::store::events::{self, NewEvent};
use crate::store::sandboxes::{self, SandboxRow};
use crate::store::users::UserRow;

/// What startup recovery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Sandboxes running again (adopted or restarted).
    pub recovered: usize,
    /// Sandboxes marked `unknown`.
    pub lost: usize,
}

/// At startup: asks the engine to adopt or restart every sandbox the store says should run.
/// Those it cannot bring back become `unknown` (reason logged and recorded as an event) — never
/// silently dropped; a later start tries them again.
pub async fn recover(st: &AppState) -> Result<Recovery, ServiceError> {
    let rows = st.store.call(|c| sandboxes::to_recover(c)).await?;
    let owners: BTreeMap<String, UserRow> = st
        .store
        .call(|c| crate::store::users::list_with_counts(c))
        .await?
        .into_iter()
        .map(|(u, _)| (u.id.clone(), u))
        .collect();
    let mut specs = Vec::with_capacity(rows.len());
    for row in &rows {
        specs.push(restart_spec(st, row, owners.get(&row.created_by)).await);
    }
    let results = st.engine.recover(specs).await;
    let mut report = Recovery::default();
    for (engine_id, result) in results {
        let Some(row) = rows.iter().find(|r| r.engine_id == engine_id) else {
            continue;
        };
        let id = row.id.clone();
        match result {
            Ok(c) => {
                let ip = c.ip.map(|i| i.to_string()).unwrap_or_default();
                st.store
                    .call(move |conn| {
                        sandboxes::mark_created(conn, &id, &c.engine_id, &ip, &c.meta, "running")
                    })
                    .await?;
                report.recovered += 1;
            }
            // The engine cannot run anything on this host now: leave the records as they are.
            Err(bhatti_engine::EngineError::Unavailable { .. }) => {}
            Err(e) => {
                tracing::error!(sandbox = %row.id, error = %e, "sandbox could not be recovered");
                let ev = NewEvent::new(
                    "sandbox.recovery_failed",
                    &row.created_by,
                    &row.id,
                    json!({"name": row.name, "error": e.to_string()}),
                );
                st.store
                    .call(move |conn| {
                        sandboxes::set_status(conn, &id, "unknown", None)?;
                        events::insert(conn, &[ev])
                    })
                    .await?;
                report.lost += 1;
            }
        }
    }
    Ok(report)
}

/// The spec to start a sandbox again over its kept filesystem: env and secrets re-resolved
/// from the store (only secret names are kept there).
pub(super) async fn restart_spec(
    st: &AppState,
    row: &SandboxRow,
    owner: Option<&UserRow>,
) -> SandboxSpec {
    let mut env = row.launch.env.clone();
    if let Some(owner) = owner {
        for name in &row.launch.secrets {
            // A secret deleted since create is left out rather than blocking the restart.
            match secret_svc::resolve(st, owner, vec![name.clone()]).await {
                Ok(v) => env.extend(v),
                Err(e) => {
                    tracing::warn!(sandbox = %row.id, secret = %name, error = %e, "secret not injected on restart")
                }
            }
        }
    }
    SandboxSpec {
        id: row.engine_id.clone(),
        name: row.name.clone(),
        user_id: row.created_by.clone(),
        subnet_index: row.subnet_index,
        image: row.image.clone(),
        cpus: row.cpus,
        memory_mb: row.memory_mb,
        env,
        files: Vec::new(),
        init: row.launch.init.clone(),
        agent_token: row.agent_token.clone(),
        engine: row.engine.clone(),
    }
}
