//! SQLite store: WAL, busy timeout, versioned migrations, one connection behind a mutex (so one
//! writer), and async access through `spawn_blocking` so the runtime's workers never block on disk.
//!
//! Crash safety: every multi-row change runs in a transaction and WAL makes commits atomic, so a
//! daemon killed at any instant reopens at the last committed state.

pub mod events;
pub mod migrations;
pub mod publish;
pub mod sandboxes;
pub mod secrets;
pub mod shell_tokens;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use thiserror::Error;

/// Errors of the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Opening the database failed.
    #[error("open database {path}: {source}")]
    Open {
        /// Database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A migration failed.
    #[error("migration {version}: {source}")]
    Migration {
        /// Target schema version.
        version: u32,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database is newer than this binary.
    #[error("database schema version {found} is newer than this bhatti ({supported})")]
    TooNew {
        /// Version in the file.
        found: u32,
        /// Highest version this binary knows.
        supported: u32,
    },
    /// A query failed.
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A JSON column could not be (de)serialised.
    #[error("json column: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Join(String),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // The daemon and DB-direct commands (`bhatti user …`) share the file. A deferred
        // transaction that reads and then writes while the other holds the write lock fails at
        // once with "database is locked": SQLite skips the busy handler there, as waiting
        // could deadlock. Taking the write lock at BEGIN lets the busy timeout apply.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // NORMAL is durable across application crashes in WAL mode (only an OS crash can lose
        // the last commits), and much faster than FULL.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        migrations::migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on the current thread (for DB-direct CLI commands and startup).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn)
    }

    /// Runs `f` on the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.with(f))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// Current time as RFC 3339 UTC with seconds precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_twice_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let s = Store::open(&p).unwrap();
        let mode: String = s
            .with(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        let s = Store::open(&p).unwrap();
        let v: u32 = s
            .with(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(v, migrations::latest());
    }

    /// A read-then-write transaction on one handle while another handle holds the write lock
    /// waits for it (as `bhatti user create` does against a busy daemon) instead of failing
    /// with "database is locked".
    #[test]
    fn read_then_write_waits_for_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let a = Store::open(&p).unwrap();
        let b = Store::open(&p).unwrap();
        a.with(|c| Ok(c.execute("CREATE TABLE t (x INTEGER)", [])?))
            .unwrap();
        let (held, release) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            a.with(|c| {
                let tx = c.transaction()?;
                tx.execute("INSERT INTO t VALUES (1)", [])?;
                held.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                Ok(tx.commit()?)
            })
        });
        release.recv().unwrap();
        let n: i64 = b
            .with(|c| {
                let tx = c.transaction()?;
                let n: i64 = tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
                tx.execute("INSERT INTO t VALUES (2)", [])?;
                tx.commit()?;
                Ok(n)
            })
            .expect("waited for the other writer");
        writer.join().unwrap().unwrap();
        assert_eq!(n, 1, "saw the other writer's committed row");
    }
}
