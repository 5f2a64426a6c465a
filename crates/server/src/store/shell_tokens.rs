//! Web shell share tokens: the SHA-256 of a sandbox's current token (`sandboxes.shell_token_hash`).

use rusqlite::{params, Connection, OptionalExtension};

use super::sandboxes::{self, SandboxRow};
use super::StoreError;

/// Sets (or with `None` clears) a sandbox's token hash; `false` if no such sandbox.
pub fn set(conn: &Connection, sandbox_id: &str, hash: Option<&str>) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE sandboxes SET shell_token_hash = ?2 WHERE id = ?1",
        params![sandbox_id, hash],
    )?;
    Ok(n == 1)
}

/// A sandbox by id with its token hash (`None` when sharing is off).
pub fn get(
    conn: &Connection,
    sandbox_id: &str,
) -> Result<Option<(SandboxRow, Option<String>)>, StoreError> {
    let found: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT created_by, shell_token_hash FROM sandboxes WHERE id = ?1",
            [sandbox_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((owner, hash)) = found else {
        return Ok(None);
    };
    Ok(sandboxes::by_ref(conn, &owner, sandbox_id)?.map(|row| (row, hash)))
}
