//! Ordered schema migrations; `PRAGMA user_version` records how many have run. Each runs in
//! its own transaction together with the version bump, so a crash never leaves half a migration.

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only; never edit.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        api_key_hash TEXT NOT NULL UNIQUE,
        max_sandboxes INTEGER NOT NULL DEFAULT 5,
        max_cpus_per_sandbox INTEGER NOT NULL DEFAULT 4,
        max_memory_mb_per_sandbox INTEGER NOT NULL DEFAULT 4096,
        subnet_index INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        max_volume_storage_mb INTEGER NOT NULL DEFAULT 20480,
        max_images INTEGER NOT NULL DEFAULT 10,
        max_snapshots INTEGER NOT NULL DEFAULT 5
    );
    CREATE TABLE sandboxes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        template_id TEXT NOT NULL DEFAULT '',
        engine TEXT NOT NULL DEFAULT '',
        engine_id TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'unknown',
        ip TEXT NOT NULL DEFAULT '',
        engine_meta_json TEXT NOT NULL DEFAULT '{}',
        created_by TEXT NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL,
        stopped_at TEXT,
        agent_token TEXT NOT NULL,
        shell_token_hash TEXT,
        keep_hot INTEGER NOT NULL DEFAULT 0,
        cpus REAL NOT NULL DEFAULT 1,
        memory_mb INTEGER NOT NULL DEFAULT 1024,
        disk_size_mb INTEGER NOT NULL DEFAULT 0,
        image TEXT NOT NULL DEFAULT 'minimal',
        labels TEXT NOT NULL DEFAULT '{}',
        subnet_index INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX sandboxes_owner_name ON sandboxes(created_by, name) WHERE status != 'destroyed';
    CREATE INDEX sandboxes_owner_created ON sandboxes(created_by, created_at);
    CREATE TABLE secrets (
        user_id TEXT NOT NULL REFERENCES users(id),
        name TEXT NOT NULL,
        value_encrypted BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (user_id, name)
    );
    CREATE TABLE publish_rules (
        id TEXT PRIMARY KEY,
        sandbox_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        port INTEGER NOT NULL,
        alias TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        UNIQUE (sandbox_id, port)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        sandbox_id TEXT NOT NULL DEFAULT '',
        meta TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_type_ts ON events(type, ts);
    CREATE INDEX events_user_ts ON events(user_id, ts);
    "#,
    // 2: what a sandbox was started with (env without secrets, secret names, init), so the
    // daemon can start it again after a crash without keeping secret values in clear.
    r#"
    ALTER TABLE sandboxes ADD COLUMN launch_json TEXT NOT NULL DEFAULT '{}';
    "#,
];

/// The schema version this binary writes.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}

/// Applies every migration newer than the file's `user_version`.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > latest() {
        return Err(StoreError::TooNew {
            found: current,
            supported: latest(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as u32 + 1;
        let err = |source| StoreError::Migration { version, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
