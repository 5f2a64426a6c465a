//! Users and their API key hashes.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{now_rfc3339, StoreError};

/// A user row (without the key hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// `usr_…`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Maximum live sandboxes.
    pub max_sandboxes: u32,
    /// Maximum CPUs per sandbox.
    pub max_cpus_per_sandbox: u32,
    /// Maximum memory per sandbox (MiB).
    pub max_memory_mb_per_sandbox: u64,
    /// Network index.
    pub subnet_index: u32,
    /// RFC 3339.
    pub created_at: String,
}

impl UserRow {
    /// The API shape, with the caller-supplied live sandbox count.
    pub fn to_api(&self, sandbox_count: u32) -> bhatti_api::User {
        bhatti_api::User {
            id: self.id.clone(),
            name: self.name.clone(),
            max_sandboxes: self.max_sandboxes,
            max_cpus_per_sandbox: self.max_cpus_per_sandbox,
            max_memory_mb_per_sandbox: self.max_memory_mb_per_sandbox,
            subnet_index: self.subnet_index,
            created_at: self.created_at.clone(),
            sandbox_count,
        }
    }
}

const COLS: &str = "id, name, max_sandboxes, max_cpus_per_sandbox, max_memory_mb_per_sandbox, subnet_index, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        name: r.get(1)?,
        max_sandboxes: r.get(2)?,
        max_cpus_per_sandbox: r.get(3)?,
        max_memory_mb_per_sandbox: r.get(4)?,
        subnet_index: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// Inserts a user with the next subnet index (max + 1). Call inside a transaction.
pub fn insert(
    conn: &Connection,
    id: &str,
    name: &str,
    key_hash: &str,
    max_sandboxes: u32,
    max_cpus: u32,
    max_memory_mb: u64,
) -> Result<UserRow, StoreError> {
    let subnet_index: u32 = conn.query_row(
        "SELECT COALESCE(MAX(subnet_index), 0) + 1 FROM users",
        [],
        |r| r.get(0),
    )?;
    let created_at = now_rfc3339();
    conn.execute(
        "INSERT INTO users (id, name, api_key_hash, max_sandboxes, max_cpus_per_sandbox,
             max_memory_mb_per_sandbox, subnet_index, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            name,
            key_hash,
            max_sandboxes,
            max_cpus,
            max_memory_mb,
            subnet_index,
            created_at
        ],
    )?;
    Ok(UserRow {
        id: id.into(),
        name: name.into(),
        max_sandboxes,
        max_cpus_per_sandbox: max_cpus,
        max_memory_mb_per_sandbox: max_memory_mb,
        subnet_index,
        created_at,
    })
}

/// Number of users.
pub fn count(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

/// User by name.
pub fn by_name(conn: &Connection, name: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM users WHERE name = ?1"),
            [name],
            from_row,
        )
        .optional()?)
}

/// User owning the key with this SHA-256 hex.
pub fn by_key_hash(conn: &Connection, hash: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM users WHERE api_key_hash = ?1"),
            [hash],
            from_row,
        )
        .optional()?)
}

/// Every user with its live sandbox count, by creation order.
pub fn list_with_counts(conn: &Connection) -> Result<Vec<(UserRow, u32)>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS}, (SELECT COUNT(*) FROM sandboxes s WHERE s.created_by = users.id
             AND s.status != 'destroyed') FROM users ORDER BY created_at, name"
    ))?;
    let rows = stmt.query_map([], |r| Ok((from_row(r)?, r.get::<_, u32>(7)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces a user's key hash; returns false if the user does not exist.
pub fn set_key_hash(conn: &Connection, name: &str, hash: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE users SET api_key_hash = ?1 WHERE name = ?2",
        params![hash, name],
    )? == 1)
}

/// Deletes a user row.
pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM users WHERE id = ?1", [id])?;
    Ok(())
}
