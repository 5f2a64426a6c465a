//! Publish rules: `(sandbox, port)` → a globally unique alias.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreError;

/// A publish rule row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRow {
    /// `pub_` + 16 hex.
    pub id: String,
    /// Sandbox id.
    pub sandbox_id: String,
    /// Owner.
    pub user_id: String,
    /// Port inside the sandbox.
    pub port: u16,
    /// Alias.
    pub alias: String,
    /// RFC 3339.
    pub created_at: String,
}

const COLS: &str = "id, sandbox_id, user_id, port, alias, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<PublishRow> {
    Ok(PublishRow {
        id: r.get(0)?,
        sandbox_id: r.get(1)?,
        user_id: r.get(2)?,
        port: r.get(3)?,
        alias: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// Inserts a rule; a UNIQUE violation (alias or sandbox+port) is returned as the SQLite error.
pub fn insert(conn: &Connection, r: &PublishRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO publish_rules (id, sandbox_id, user_id, port, alias, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![r.id, r.sandbox_id, r.user_id, r.port, r.alias, r.created_at],
    )?;
    Ok(())
}

/// Whether an error is a UNIQUE constraint violation.
pub fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Sql(rusqlite::Error::SqliteFailure(f, _))
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// A sandbox's rules by port.
pub fn by_sandbox(conn: &Connection, sandbox_id: &str) -> Result<Vec<PublishRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM publish_rules WHERE sandbox_id = ?1 ORDER BY port"
    ))?;
    let rows = stmt.query_map([sandbox_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A user's rules (for `list`'s `urls`).
pub fn by_user(conn: &Connection, user_id: &str) -> Result<Vec<PublishRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM publish_rules WHERE user_id = ?1 ORDER BY sandbox_id, port"
    ))?;
    let rows = stmt.query_map([user_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The rule of one sandbox port.
pub fn by_port(
    conn: &Connection,
    sandbox_id: &str,
    port: u16,
) -> Result<Option<PublishRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM publish_rules WHERE sandbox_id = ?1 AND port = ?2"),
            params![sandbox_id, port],
            row,
        )
        .optional()?)
}

/// The rule with this alias.
pub fn by_alias(conn: &Connection, alias: &str) -> Result<Option<PublishRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM publish_rules WHERE alias = ?1"),
            [alias],
            row,
        )
        .optional()?)
}

/// Deletes rules whose sandbox is gone, so their aliases are free again; returns how many.
/// (Rules of a sandbox in `unknown` stay: it is still listed, and destroying it removes them.)
pub fn delete_orphans(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM publish_rules WHERE sandbox_id NOT IN \
         (SELECT id FROM sandboxes WHERE status != 'destroyed')",
        [],
    )?)
}

/// Deletes one sandbox port's rule; returns whether one existed.
pub fn delete(conn: &Connection, sandbox_id: &str, port: u16) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM publish_rules WHERE sandbox_id = ?1 AND port = ?2",
        params![sandbox_id, port],
    )? > 0)
}
