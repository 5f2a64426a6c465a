//! Encrypted secret values per user. This module only stores bytes; encryption is `crate::secrets`.

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_rfc3339, StoreError};

/// Metadata of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Inserts or replaces a secret's ciphertext, keeping its `created_at`.
pub fn upsert(
    conn: &Connection,
    user_id: &str,
    name: &str,
    ciphertext: &[u8],
) -> Result<SecretRow, StoreError> {
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO secrets (user_id, name, value_encrypted, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (user_id, name) DO UPDATE SET value_encrypted = excluded.value_encrypted,
             updated_at = excluded.updated_at",
        params![user_id, name, ciphertext, now],
    )?;
    Ok(conn.query_row(
        "SELECT name, created_at, updated_at FROM secrets WHERE user_id = ?1 AND name = ?2",
        params![user_id, name],
        |r| {
            Ok(SecretRow {
                name: r.get(0)?,
                created_at: r.get(1)?,
                updated_at: r.get(2)?,
            })
        },
    )?)
}

/// A user's secrets (metadata only), by name.
pub fn list(conn: &Connection, user_id: &str) -> Result<Vec<SecretRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT name, created_at, updated_at FROM secrets WHERE user_id = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(SecretRow {
            name: r.get(0)?,
            created_at: r.get(1)?,
            updated_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A secret's ciphertext.
pub fn ciphertext(
    conn: &Connection,
    user_id: &str,
    name: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT value_encrypted FROM secrets WHERE user_id = ?1 AND name = ?2",
            params![user_id, name],
            |r| r.get(0),
        )
        .optional()?)
}

/// Deletes a secret; false if it did not exist.
pub fn delete(conn: &Connection, user_id: &str, name: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM secrets WHERE user_id = ?1 AND name = ?2",
        params![user_id, name],
    )? == 1)
}

/// Number of secrets a user has.
pub fn count(conn: &Connection, user_id: &str) -> Result<u32, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM secrets WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?)
}
