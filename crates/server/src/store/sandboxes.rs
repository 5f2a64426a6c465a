//! Sandbox records.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreError;

/// Status of a row inserted before `engine.create` returns.
pub const STATUS_CREATING: &str = "creating";
/// Status given at startup to rows a crash left in `creating`.
pub const STATUS_FAILED: &str = "failed";

/// A sandbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRow {
    /// 16 hex.
    pub id: String,
    /// Name.
    pub name: String,
    /// Template id or empty.
    pub template_id: String,
    /// Engine name.
    pub engine: String,
    /// Engine's id, empty until created.
    pub engine_id: String,
    /// Status string.
    pub status: String,
    /// IP or empty.
    pub ip: String,
    /// Engine state for recovery.
    pub engine_meta: serde_json::Value,
    /// Owner.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub stopped_at: Option<String>,
    /// Host↔guest token.
    pub agent_token: String,
    /// Never paused.
    pub keep_hot: bool,
    /// CPUs.
    pub cpus: f64,
    /// MiB.
    pub memory_mb: u64,
    /// MiB.
    pub disk_size_mb: u64,
    /// Image name.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Owner's subnet index at creation.
    pub subnet_index: u32,
    /// What the sandbox was started with (for restarts after a crash).
    pub launch: LaunchParams,
}

/// A sandbox's start parameters, minus secret values (secrets are kept by name and decrypted
/// again when needed).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LaunchParams {
    /// Environment from the create request.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of secrets injected as environment variables.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The init script.
    #[serde(default)]
    pub init: Option<String>,
}

impl SandboxRow {
    /// The API shape (no token).
    pub fn to_api(&self) -> bhatti_api::Sandbox {
        bhatti_api::Sandbox {
            id: self.id.clone(),
            name: self.name.clone(),
            template_id: self.template_id.clone(),
            engine_id: self.engine_id.clone(),
            status: self.status.clone(),
            ip: self.ip.clone(),
            engine_meta: self.engine_meta.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at.clone(),
            stopped_at: self.stopped_at.clone(),
            keep_hot: self.keep_hot,
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            disk_size_mb: self.disk_size_mb,
            image: self.image.clone(),
            labels: if self.labels.is_empty() {
                None
            } else {
                Some(self.labels.clone())
            },
            thermal: None,
            urls: None,
        }
    }
}

const COLS: &str = "id, name, template_id, engine, engine_id, status, ip, engine_meta_json, created_by,
    created_at, stopped_at, agent_token, keep_hot, cpus, memory_mb, disk_size_mb, image, labels, subnet_index,
    launch_json";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SandboxRow> {
    let meta: String = r.get(7)?;
    let labels: String = r.get(17)?;
    Ok(SandboxRow {
        id: r.get(0)?,
        name: r.get(1)?,
        template_id: r.get(2)?,
        engine: r.get(3)?,
        engine_id: r.get(4)?,
        status: r.get(5)?,
        ip: r.get(6)?,
        // A corrupt JSON column should not make the sandbox unreachable; show it empty.
        engine_meta: serde_json::from_str(&meta).unwrap_or_else(|_| serde_json::json!({})),
        created_by: r.get(8)?,
        created_at: r.get(9)?,
        stopped_at: r.get(10)?,
        agent_token: r.get(11)?,
        keep_hot: r.get(12)?,
        cpus: r.get(13)?,
        memory_mb: r.get(14)?,
        disk_size_mb: r.get(15)?,
        image: r.get(16)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        subnet_index: r.get(18)?,
        launch: serde_json::from_str(&r.get::<_, String>(19)?).unwrap_or_default(),
    })
}

/// Inserts a new row.
pub fn insert(conn: &Connection, s: &SandboxRow) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO sandboxes ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"),
        params![
            s.id,
            s.name,
            s.template_id,
            s.engine,
            s.engine_id,
            s.status,
            s.ip,
            serde_json::to_string(&s.engine_meta)?,
            s.created_by,
            s.created_at,
            s.stopped_at,
            s.agent_token,
            s.keep_hot,
            s.cpus,
            s.memory_mb,
            s.disk_size_mb,
            s.image,
            serde_json::to_string(&s.labels)?,
            s.subnet_index,
            serde_json::to_string(&s.launch)?,
        ],
    )?;
    Ok(())
}

/// Live (not destroyed) sandboxes of a user.
pub fn count_live(conn: &Connection, user_id: &str) -> Result<u32, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM sandboxes WHERE created_by = ?1 AND status != 'destroyed'",
        [user_id],
        |r| r.get(0),
    )?)
}

/// A user's live sandbox with this name.
pub fn live_by_name(
    conn: &Connection,
    user_id: &str,
    name: &str,
) -> Result<Option<SandboxRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM sandboxes WHERE created_by = ?1 AND name = ?2 AND status != 'destroyed'"),
            params![user_id, name],
            from_row,
        )
        .optional()?)
}

/// A user's sandbox by id, else by name.
pub fn by_ref(
    conn: &Connection,
    user_id: &str,
    id_or_name: &str,
) -> Result<Option<SandboxRow>, StoreError> {
    let by_id = conn
        .query_row(
            &format!("SELECT {COLS} FROM sandboxes WHERE created_by = ?1 AND id = ?2"),
            params![user_id, id_or_name],
            from_row,
        )
        .optional()?;
    match by_id {
        Some(s) => Ok(Some(s)),
        None => live_by_name(conn, user_id, id_or_name),
    }
}

/// A user's sandboxes, newest first.
pub fn list(conn: &Connection, user_id: &str) -> Result<Vec<SandboxRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM sandboxes WHERE created_by = ?1 AND status != 'destroyed'
         ORDER BY created_at DESC, rowid DESC"
    ))?;
    let rows = stmt.query_map([user_id], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records what the engine returned; false if the row vanished (destroyed meanwhile).
pub fn mark_created(
    conn: &Connection,
    id: &str,
    engine_id: &str,
    ip: &str,
    meta: &serde_json::Value,
    status: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE sandboxes SET engine_id = ?2, ip = ?3, engine_meta_json = ?4, status = ?5 WHERE id = ?1",
        params![id, engine_id, ip, serde_json::to_string(meta)?, status],
    )? == 1)
}

/// Updates the status (and `stopped_at`).
pub fn set_status(
    conn: &Connection,
    id: &str,
    status: &str,
    stopped_at: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sandboxes SET status = ?2, stopped_at = ?3 WHERE id = ?1",
        params![id, status, stopped_at],
    )?;
    Ok(())
}

/// Updates the status (and `stopped_at`) only if the row still has status `from` and engine id
/// `engine_id` (a stop, start or destroy since it was read wins); whether it did.
pub fn set_status_from(
    conn: &Connection,
    id: &str,
    engine_id: &str,
    from: &str,
    status: &str,
    stopped_at: Option<&str>,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE sandboxes SET status = ?4, stopped_at = ?5 WHERE id = ?1 AND engine_id = ?2 AND status = ?3",
        params![id, engine_id, from, status, stopped_at],
    )? == 1)
}

/// Deletes a row; false if it did not exist.
pub fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM sandboxes WHERE id = ?1", [id])? == 1)
}

/// Every sandbox the engine should be running (for recovery at startup): running ones, and
/// `unknown` ones an earlier start could not bring back.
pub fn to_recover(conn: &Connection) -> Result<Vec<SandboxRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM sandboxes WHERE status IN ('running', 'unknown') AND engine_id != '' ORDER BY created_at"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every running sandbox (for the thermal manager).
pub fn running(conn: &Connection) -> Result<Vec<SandboxRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM sandboxes WHERE status = 'running' AND engine_id != ''"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks rows a crash left in `creating` as `failed`; returns how many.
pub fn fail_interrupted_creates(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE sandboxes SET status = ?1 WHERE status = ?2",
        params![STATUS_FAILED, STATUS_CREATING],
    )?)
}
