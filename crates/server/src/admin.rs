//! DB-direct user administration (`bhatti user …`): works without a running daemon, and safely
//! alongside one (SQLite WAL + busy timeout). Keys are shown once and stored only as SHA-256.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use serde_json::json;
use thiserror::Error;

use crate::ids;
use crate::store::events::{self, NewEvent};
use crate::store::{sandboxes, secrets, users, Store, StoreError};
use crate::validate;

/// Errors of user administration.
#[derive(Debug, Error)]
pub enum AdminError {
    /// A user with that name exists.
    #[error("user {0:?} already exists")]
    AlreadyExists(String),
    /// No such user.
    #[error("user {0:?} not found")]
    NotFound(String),
    /// The name is not valid.
    #[error("invalid user name {0:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{{0,62}}$")]
    InvalidName(String),
    /// A limit is zero.
    #[error("{0} must be at least 1")]
    InvalidLimit(&'static str),
    /// Deleting a user that still owns sandboxes.
    #[error("user {name:?} has {count} sandboxes; destroy them first")]
    HasSandboxes {
        /// User.
        name: String,
        /// How many.
        count: u32,
    },
    /// Deleting a user that still owns secrets.
    #[error("user {name:?} has {count} secrets; delete them first")]
    HasSecrets {
        /// User.
        name: String,
        /// How many.
        count: u32,
    },
    /// Creating the data directory failed.
    #[error("create data dir {path}: {source}")]
    DataDir {
        /// Directory.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Limits of a new user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Unique name (sandbox-name rules).
    pub name: String,
    /// Maximum live sandboxes (CLI default 5).
    pub max_sandboxes: u32,
    /// Maximum CPUs per sandbox (CLI default 4).
    pub max_cpus: u32,
    /// Maximum memory per sandbox in MiB (CLI default 4096).
    pub max_memory_mb: u64,
}

impl NewUser {
    /// A user with the CLI's default limits (5 sandboxes, 4 CPUs, 4096 MiB).
    pub fn with_defaults(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            max_sandboxes: 5,
            max_cpus: 4,
            max_memory_mb: 4096,
        }
    }
}

/// Creates the data dir (0700) if needed and opens its store.
pub fn open_store(data_dir: &Path) -> Result<Store, AdminError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| AdminError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
    Ok(Store::open(&data_dir.join("state.db"))?)
}

/// Creates a user; returns it and its plaintext API key (shown once, never stored).
pub fn create_user(
    data_dir: &Path,
    new: NewUser,
) -> Result<(bhatti_api::User, String), AdminError> {
    create_user_in(&open_store(data_dir)?, &new)
}

/// [`create_user`] on an open store.
pub fn create_user_in(
    store: &Store,
    new: &NewUser,
) -> Result<(bhatti_api::User, String), AdminError> {
    if !validate::is_valid_name(&new.name) {
        return Err(AdminError::InvalidName(new.name.clone()));
    }
    if new.max_sandboxes == 0 {
        return Err(AdminError::InvalidLimit("max sandboxes"));
    }
    if new.max_cpus == 0 {
        return Err(AdminError::InvalidLimit("max cpus"));
    }
    if new.max_memory_mb == 0 {
        return Err(AdminError::InvalidLimit("max memory"));
    }
    let key = ids::api_key();
    let hash = ids::hash_key(&key);
    let user = store.with(|conn| {
        let tx = conn.transaction()?;
        if users::by_name(&tx, &new.name)?.is_some() {
            return Ok(None);
        }
        let row = users::insert(
            &tx,
            &ids::user_id(),
            &new.name,
            &hash,
            new.max_sandboxes,
            new.max_cpus,
            new.max_memory_mb,
        )?;
        events::insert(
            &tx,
            &[NewEvent::new(
                "user.created",
                &row.id,
                "",
                json!({"name": row.name}),
            )],
        )?;
        tx.commit()?;
        Ok(Some(row))
    })?;
    match user {
        Some(row) => Ok((row.to_api(0), key)),
        None => Err(AdminError::AlreadyExists(new.name.clone())),
    }
}

/// Every user with its live sandbox count.
pub fn list_users(data_dir: &Path) -> Result<Vec<bhatti_api::User>, AdminError> {
    let store = open_store(data_dir)?;
    let rows = store.with(|c| users::list_with_counts(c))?;
    Ok(rows.into_iter().map(|(u, n)| u.to_api(n)).collect())
}

/// Replaces a user's key; the old one stops working at once. Returns the new plaintext key.
pub fn rotate_key(data_dir: &Path, name: &str) -> Result<String, AdminError> {
    let store = open_store(data_dir)?;
    let key = ids::api_key();
    let hash = ids::hash_key(&key);
    let found = store.with(|conn| {
        let tx = conn.transaction()?;
        let Some(user) = users::by_name(&tx, name)? else {
            return Ok(false);
        };
        users::set_key_hash(&tx, name, &hash)?;
        events::insert(
            &tx,
            &[NewEvent::new(
                "user.key_rotated",
                &user.id,
                "",
                json!({"name": name}),
            )],
        )?;
        tx.commit()?;
        Ok(true)
    })?;
    if found {
        Ok(key)
    } else {
        Err(AdminError::NotFound(name.into()))
    }
}

/// Deletes a user; refused while it owns sandboxes or secrets.
pub fn delete_user(data_dir: &Path, name: &str) -> Result<(), AdminError> {
    let store = open_store(data_dir)?;
    enum Outcome {
        Deleted,
        NotFound,
        Sandboxes(u32),
        Secrets(u32),
    }
    let outcome = store.with(|conn| {
        let tx = conn.transaction()?;
        let Some(user) = users::by_name(&tx, name)? else {
            return Ok(Outcome::NotFound);
        };
        let n = sandboxes::count_live(&tx, &user.id)?;
        if n > 0 {
            return Ok(Outcome::Sandboxes(n));
        }
        let n = secrets::count(&tx, &user.id)?;
        if n > 0 {
            return Ok(Outcome::Secrets(n));
        }
        // Rows left in `destroyed` state (none today) would block the foreign key; drop them.
        tx.execute("DELETE FROM sandboxes WHERE created_by = ?1", [&user.id])?;
        users::delete(&tx, &user.id)?;
        events::insert(
            &tx,
            &[NewEvent::new(
                "user.deleted",
                &user.id,
                "",
                json!({"name": name}),
            )],
        )?;
        tx.commit()?;
        Ok(Outcome::Deleted)
    })?;
    match outcome {
        Outcome::Deleted => Ok(()),
        Outcome::NotFound => Err(AdminError::NotFound(name.into())),
        Outcome::Sandboxes(count) => Err(AdminError::HasSandboxes {
            name: name.into(),
            count,
        }),
        Outcome::Secrets(count) => Err(AdminError::HasSecrets {
            name: name.into(),
            count,
        }),
    }
}

/// Filter of `bhatti admin events`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Exact type (`thermal.pause`), or without a dot a prefix (`thermal` = `thermal.*`).
    pub kind: Option<String>,
    /// User name or id.
    pub user: Option<String>,
    /// Sandbox id (or a live sandbox's name).
    pub sandbox: Option<String>,
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Most events returned (newest first).
    pub limit: u32,
}

/// One recorded event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRecord {
    /// RFC 3339 time.
    pub ts: String,
    /// e.g. `sandbox.created`.
    #[serde(rename = "type")]
    pub kind: String,
    /// User id (empty for daemon events).
    pub user_id: String,
    /// User name, when the user still exists.
    pub user: String,
    /// Sandbox id, or empty.
    pub sandbox_id: String,
    /// Details.
    pub meta: serde_json::Value,
}

/// Events matching `f`, newest first.
pub fn events(data_dir: &Path, f: &EventFilter) -> Result<Vec<EventRecord>, AdminError> {
    let store = open_store(data_dir)?;
    let f = f.clone();
    Ok(store.with(move |c| query_events(c, &f))?)
}

fn query_events(c: &rusqlite::Connection, f: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
    let mut sql = String::from(
        "SELECT e.ts, e.type, e.user_id, COALESCE(u.name, ''), e.sandbox_id, e.meta FROM events e
         LEFT JOIN users u ON u.id = e.user_id WHERE 1=1",
    );
    let mut args: Vec<String> = Vec::new();
    if let Some(k) = &f.kind {
        if k.contains('.') {
            args.push(k.clone());
            sql.push_str(&format!(" AND e.type = ?{}", args.len()));
        } else {
            args.push(k.clone());
            args.push(format!("{k}.%"));
            sql.push_str(&format!(
                " AND (e.type = ?{} OR e.type LIKE ?{})",
                args.len() - 1,
                args.len()
            ));
        }
    }
    if let Some(u) = &f.user {
        args.push(u.clone());
        sql.push_str(&format!(
            " AND (e.user_id = ?{n} OR u.name = ?{n})",
            n = args.len()
        ));
    }
    if let Some(s) = &f.sandbox {
        args.push(s.clone());
        sql.push_str(&format!(
            " AND (e.sandbox_id = ?{n} OR e.sandbox_id IN (SELECT id FROM sandboxes WHERE name = ?{n}))",
            n = args.len()
        ));
    }
    if let Some(t) = &f.since {
        args.push(t.clone());
        sql.push_str(&format!(" AND e.ts >= ?{}", args.len()));
    }
    sql.push_str(&format!(" ORDER BY e.id DESC LIMIT {}", f.limit.max(1)));
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(EventRecord {
            ts: r.get(0)?,
            kind: r.get(1)?,
            user_id: r.get(2)?,
            user: r.get(3)?,
            sandbox_id: r.get(4)?,
            meta: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One sandbox in `bhatti admin status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusSandbox {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner's name.
    pub user: String,
    /// `running`, `stopped`, …
    pub status: String,
    /// `hot`/`warm`/`cold` for running sandboxes: the latest `thermal.*` event (the daemon keeps
    /// the live state in memory; the event log is what a DB-direct reader can see).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermal: Option<String>,
}

/// One user in `bhatti admin status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusUser {
    /// Name.
    pub name: String,
    /// Live sandboxes.
    pub sandboxes: u32,
    /// `active` or `disabled`… (the user's status column).
    pub status: String,
}

/// `bhatti admin status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonStatus {
    /// Counts: sandboxes, hot, warm, cold, stopped, users, auth_failures_24h.
    pub totals: serde_json::Value,
    /// Users.
    pub users: Vec<StatusUser>,
    /// Sandboxes.
    pub sandboxes: Vec<StatusSandbox>,
    /// The 10 most recent events.
    pub recent_events: Vec<EventRecord>,
}

/// Summary of the store for operators.
pub fn status(data_dir: &Path) -> Result<DaemonStatus, AdminError> {
    let store = open_store(data_dir)?;
    Ok(store.with(|c| {
        let users_rows = users::list_with_counts(c)?;
        let mut stmt = c.prepare(
            "SELECT s.id, s.name, COALESCE(u.name, ''), s.status,
                (SELECT type FROM events e WHERE e.sandbox_id = s.id AND e.type LIKE 'thermal.%'
                 ORDER BY e.id DESC LIMIT 1)
             FROM sandboxes s LEFT JOIN users u ON u.id = s.created_by ORDER BY s.created_at",
        )?;
        let sbs: Vec<StatusSandbox> = stmt
            .query_map([], |r| {
                let status: String = r.get(3)?;
                let last: Option<String> = r.get(4)?;
                let thermal = (status == "running").then(|| {
                    match last.as_deref() {
                        Some("thermal.pause") => "warm",
                        Some("thermal.cool") => "cold",
                        _ => "hot",
                    }
                    .to_string()
                });
                Ok(StatusSandbox {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    user: r.get(2)?,
                    status,
                    thermal,
                })
            })?
            .collect::<Result<_, _>>()?;
        let count = |t: &str| {
            sbs.iter()
                .filter(|s| s.thermal.as_deref() == Some(t))
                .count()
        };
        let since = (chrono::Utc::now() - chrono::Duration::hours(24))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let auth_failures: i64 = c.query_row(
            "SELECT COUNT(*) FROM events WHERE type = 'auth.failed' AND ts >= ?1",
            [&since],
            |r| r.get(0),
        )?;
        let totals = json!({
            "sandboxes": sbs.len(),
            "hot": count("hot"),
            "warm": count("warm"),
            "cold": count("cold"),
            "stopped": sbs.iter().filter(|s| s.status == "stopped").count(),
            "users": users_rows.len(),
            "auth_failures_24h": auth_failures,
        });
        let recent_events = query_events(
            c,
            &EventFilter {
                limit: 10,
                ..EventFilter::default()
            },
        )?;
        Ok(DaemonStatus {
            totals,
            users: users_rows
                .into_iter()
                .map(|(u, n)| {
                    let api = u.to_api(n);
                    StatusUser {
                        name: api.name,
                        sandboxes: n,
                        status: "active".into(),
                    }
                })
                .collect(),
            sandboxes: sbs,
            recent_events,
        })
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        let (u, key) = create_user(&d, NewUser::with_defaults("alice")).unwrap();
        assert!(u.id.starts_with("usr_"));
        assert_eq!(u.subnet_index, 1);
        assert!(key.starts_with("bht_"));
        let (u2, _) = create_user(&d, NewUser::with_defaults("bob")).unwrap();
        assert_eq!(u2.subnet_index, 2);
        let e = create_user(&d, NewUser::with_defaults("alice")).unwrap_err();
        assert_eq!(e.to_string(), "user \"alice\" already exists");
        assert!(matches!(
            create_user(&d, NewUser::with_defaults("bad name")),
            Err(AdminError::InvalidName(_))
        ));

        let list = list_users(&d).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "alice");

        let k2 = rotate_key(&d, "alice").unwrap();
        assert_ne!(k2, key);
        let store = open_store(&d).unwrap();
        let by_old = store
            .with(|c| users::by_key_hash(c, &ids::hash_key(&key)))
            .unwrap();
        assert!(by_old.is_none());
        let by_new = store
            .with(|c| users::by_key_hash(c, &ids::hash_key(&k2)))
            .unwrap();
        assert_eq!(by_new.unwrap().name, "alice");
        assert!(matches!(
            rotate_key(&d, "nobody"),
            Err(AdminError::NotFound(_))
        ));

        // A secret blocks deletion.
        store
            .with(|c| secrets::upsert(c, &u.id, "TOKEN", b"ct").map(|_| ()))
            .unwrap();
        let e = delete_user(&d, "alice").unwrap_err();
        assert_eq!(
            e.to_string(),
            "user \"alice\" has 1 secrets; delete them first"
        );
        store
            .with(|c| secrets::delete(c, &u.id, "TOKEN").map(|_| ()))
            .unwrap();
        delete_user(&d, "alice").unwrap();
        assert_eq!(list_users(&d).unwrap().len(), 1);
        assert!(matches!(
            delete_user(&d, "alice"),
            Err(AdminError::NotFound(_))
        ));

        let kinds: Vec<_> = ["user.created", "user.key_rotated", "user.deleted"]
            .iter()
            .map(|k| store.with(|c| events::by_type(c, k)).unwrap().len())
            .collect();
        assert_eq!(kinds, vec![2, 1, 1]);
    }

    #[test]
    fn data_dir_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("new");
        list_users(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
