//! The authenticated proxy's lookup: the caller's running sandbox and a fresh tunnel to a port
//! inside it (through lohar's forward port).

use bhatti_engine::agent::BoxedStream;

use super::agent;
use super::ServiceError;
use crate::state::AppState;
use crate::store::sandboxes::SandboxRow;
use crate::store::users::UserRow;
use crate::thermal::Busy;
use bhatti_engine::agent::AgentError;

/// Parses a proxy port: 1–65535, else 400 `invalid port`.
pub fn parse_port(s: &str) -> Result<u16, ServiceError> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ServiceError::Invalid("invalid port".into())),
    }
}

/// A fresh tunnel to `127.0.0.1:<port>` in one of the caller's running sandboxes, and the hold
/// that keeps it hot while the tunnel is used. Lookup errors are the usual 404/409; a refused
/// or failed forward is [`ServiceError::Agent`] (the proxy answers 502).
pub async fn tunnel(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    port: u16,
) -> Result<(BoxedStream, Busy), ServiceError> {
    let (_, tunnel, busy) = sandbox_tunnel(st, user, id_or_name, port).await?;
    Ok((tunnel?, busy))
}

/// The sandbox, and a tunnel to its port or why there is none (nothing listening, agent
/// failure): the caller answers 502 and records it against the sandbox. The `Busy` keeps the
/// sandbox hot while the caller uses the tunnel.
pub async fn sandbox_tunnel(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    port: u16,
) -> Result<(SandboxRow, Result<BoxedStream, AgentError>, Busy), ServiceError> {
    let (row, agent, busy) = agent::open(st, user, id_or_name).await?;
    let tunnel = agent.forward(port).await;
    Ok((row, tunnel, busy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080").unwrap(), 8080);
        assert_eq!(parse_port("65535").unwrap(), 65535);
        for bad in ["0", "65536", "-1", "", "abc", "80a"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }
}
