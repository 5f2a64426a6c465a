//! The door to a running sandbox's agent: every in-sandbox operation opens it here (lookup,
//! status check, transparent wake, and the hold that keeps the sandbox hot meanwhile), and maps
//! an agent that cannot be reached on a sandbox that died to "not running".

use bhatti_engine::RunState;

use super::sandboxes::{self, lookup};
use super::ServiceError;
use crate::state::AppState;
use crate::store::sandboxes::SandboxRow;
use crate::store::users::UserRow;
use crate::thermal::Busy;

/// One of the caller's running sandboxes and a client of its agent (every in-sandbox operation
/// starts here). Not running → 409; unknown or another user's → 404.
pub(crate) async fn open(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
) -> Result<(SandboxRow, bhatti_engine::agent::AgentClient, Busy), ServiceError> {
    let row = lookup(st, user, id_or_name).await?;
    if row.status == "stopped" {
        return Err(ServiceError::NotRunning(format!(
            "sandbox {:?} is stopped (bhatti start {})",
            row.name, row.name
        )));
    }
    if row.status != "running" || row.engine_id.is_empty() {
        return Err(ServiceError::NotRunning(format!(
            "sandbox {:?} is not running (status: {})",
            row.name, row.status
        )));
    }
    let endpoint = st.engine.agent(&row.engine_id).await.map_err(|e| match e {
        bhatti_engine::EngineError::NotFound(_) => {
            ServiceError::NotRunning(format!("sandbox {:?} is not running", row.name))
        }
        e => e.into(),
    })?;
    // Transparent wake: a warm (or cold) sandbox is brought back before it is used, and stays
    // hot while the caller holds the `Busy`.
    let busy = crate::thermal::ensure_hot(st, &row).await?;
    Ok((row, bhatti_engine::agent::AgentClient::new(endpoint), busy))
}

/// Awaits an agent operation on `row`; a failure is mapped by [`failed`].
pub(crate) async fn checked<T>(
    st: &AppState,
    row: &SandboxRow,
    op: impl std::future::Future<Output = Result<T, bhatti_engine::agent::AgentError>>,
) -> Result<T, ServiceError> {
    match op.await {
        Ok(v) => Ok(v),
        Err(e) => Err(failed(st, row, e).await),
    }
}

/// The error for an agent operation on `row` that failed. When lohar could not be reached or
/// the connection broke, and the engine says the sandbox is gone (its processes all ended), the
/// record says so from now on and the caller gets 409 "not running" rather than a gateway
/// error it could only retry.
pub(crate) async fn failed(
    st: &AppState,
    row: &SandboxRow,
    e: bhatti_engine::agent::AgentError,
) -> ServiceError {
    use bhatti_engine::agent::AgentError;
    if matches!(e, AgentError::Remote(_) | AgentError::Unexpected(_)) {
        return e.into();
    }
    match st.engine.state(&row.engine_id).await {
        Ok(state @ (RunState::Stopped | RunState::Missing)) => {
            let mut r = row.clone();
            if let Err(se) = sandboxes::sync_status(st, &mut r, state).await {
                tracing::warn!(sandbox = %row.id, error = %se, "recording a dead sandbox failed");
            }
            ServiceError::NotRunning(match state {
                RunState::Stopped => format!(
                    "sandbox {:?} is stopped: its processes ended (bhatti start {})",
                    row.name, row.name
                ),
                _ => format!(
                    "sandbox {:?} is not running: its engine no longer has it (status: unknown)",
                    row.name
                ),
            })
        }
        _ => e.into(),
    }
}
