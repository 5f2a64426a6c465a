//! The event log (`events` table).

use rusqlite::{params, Connection};

use super::StoreError;

/// One event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// e.g. `sandbox.created`.
    pub kind: String,
    /// Acting / owning user, or empty.
    pub user_id: String,
    /// Sandbox, or empty.
    pub sandbox_id: String,
    /// JSON object with details (never keys or secret values).
    pub meta: serde_json::Value,
}

impl NewEvent {
    /// An event with a meta object.
    pub fn new(kind: &str, user_id: &str, sandbox_id: &str, meta: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            user_id: user_id.into(),
            sandbox_id: sandbox_id.into(),
            meta,
        }
    }
}

/// Inserts events (inside the caller's transaction, if any).
pub fn insert(conn: &Connection, events: &[NewEvent]) -> Result<(), StoreError> {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (ts, type, user_id, sandbox_id, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for e in events {
        stmt.execute(params![
            ts,
            e.kind,
            e.user_id,
            e.sandbox_id,
            e.meta.to_string()
        ])?;
    }
    Ok(())
}

/// Events of one type, oldest first, as `(user_id, sandbox_id, meta)` (tests and tools).
pub fn by_type(
    conn: &Connection,
    kind: &str,
) -> Result<Vec<(String, String, serde_json::Value)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT user_id, sandbox_id, meta FROM events WHERE type = ?1 ORDER BY id")?;
    let rows = stmt.query_map([kind], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (u, s, m) = row?;
        out.push((u, s, serde_json::from_str(&m)?));
    }
    Ok(out)
}
