//! Sessions (`GET/DELETE /sandboxes/:id/sessions`) and listening ports (`GET …/ports`).
//!
//! Ports come from `/proc/net/tcp` and `/proc/net/tcp6` inside the sandbox, read through the
//! agent and parsed here (the original ran `ss` in the guest and listed lohar's own ports).

use std::collections::BTreeSet;

use bhatti_api::{Port, Session};

use super::agent;
use super::ServiceError;
use crate::state::AppState;
use crate::store::users::UserRow;

/// lohar's own control and forward ports, never reported.
pub const AGENT_PORTS: [u16; 2] = [1024, 1025];

/// The sandbox's sessions.
pub async fn list(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
) -> Result<Vec<Session>, ServiceError> {
    let (_, agent, _busy) = agent::open(st, user, id_or_name).await?;
    let mut v: Vec<Session> = agent
        .list_sessions()
        .await?
        .into_iter()
        .map(|s| Session {
            session_id: s.session_id,
            argv: s.argv,
            tty: s.tty,
            running: s.running,
            exit_code: s.exit_code,
            attached: s.attached,
            created_at: s.created_at,
        })
        .collect();
    v.sort_by(|a, b| (a.created_at, &a.session_id).cmp(&(b.created_at, &b.session_id)));
    Ok(v)
}

/// Ends a session (SIGKILL to its process group). Unknown → 404.
pub async fn kill(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    session_id: &str,
) -> Result<(), ServiceError> {
    let (_, agent, _busy) = agent::open(st, user, id_or_name).await?;
    agent.kill_session(session_id).await.map_err(|e| {
        if e.is_not_found() {
            ServiceError::NotFound(format!("session {session_id:?} not found"))
        } else {
            e.into()
        }
    })
}

/// Listening TCP ports inside the sandbox (lohar's own excluded).
pub async fn ports(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
) -> Result<Vec<Port>, ServiceError> {
    let (row, agent, _busy) = agent::open(st, user, id_or_name).await?;
    let mut ports = BTreeSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match agent.read_file_all(file).await {
            Ok(bytes) => ports.extend(listening_ports(&String::from_utf8_lossy(&bytes))),
            // No IPv6 in the sandbox's kernel: no tcp6 file.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ports
        .into_iter()
        .filter(|p| !AGENT_PORTS.contains(p))
        .map(|p| Port {
            container_port: p,
            proxy_url: format!("/sandboxes/{}/proxy/{p}/", row.id),
        })
        .collect())
}

/// Local ports in state LISTEN (`0A`) in the text of `/proc/net/tcp` or `/proc/net/tcp6`.
/// Malformed lines are skipped.
pub fn listening_ports(text: &str) -> BTreeSet<u16> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _slot = f.next()?;
            let local = f.next()?;
            let _remote = f.next()?;
            let state = f.next()?;
            if state != "0A" {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok().filter(|p| *p != 0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0400 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 100 0 0 10 0
   2: 0201000A:0400 0101000A:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: garbage
";
        assert_eq!(listening_ports(tcp), BTreeSet::from([1024, 8080]));
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 06 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_ports(tcp6), BTreeSet::from([8000]));
        assert!(listening_ports("").is_empty());
        assert!(listening_ports("header\n 0: 0:ZZZZ 0:0 0A\n").is_empty());
    }
}
