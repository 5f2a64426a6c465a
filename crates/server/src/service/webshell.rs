//! Web shell sharing (reference §2.12): share tokens and the live web shells of each sandbox.
//!
//! A share token is 32 random bytes (64 hex chars) handed to the owner once; the store keeps
//! only its SHA-256, so a leaked database does not open shells. Creating a token replaces the
//! previous one; revoking clears it and ends every live web shell of the sandbox.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::ServiceError;
use crate::rate_limit::{BucketConfig, KeyedBuckets};
use crate::state::AppState;
use crate::store::sandboxes::SandboxRow;
use crate::store::users::UserRow;
use crate::store::{sandboxes, shell_tokens};

/// Live web shells allowed per sandbox.
pub const MAX_PER_SANDBOX: usize = 5;

/// A new share token: 64 lowercase hex chars from the OS CSPRNG.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// What the store keeps of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` matches the stored hash, in time independent of where they differ.
pub fn token_matches(token: &str, stored_hash: &str) -> bool {
    let got = hash_token(token);
    let (a, b) = (got.as_bytes(), stored_hash.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The shareable page's URL. With `domain.api_host` it is `https://<api_host>/…`; otherwise it
/// is built from the address the caller used to reach the API (`base`, e.g.
/// `http://127.0.0.1:8080`). The token goes in the fragment, which browsers never send.
pub fn share_url(api_host: Option<&str>, base: &str, sandbox_id: &str, token: &str) -> String {
    match api_host.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => format!("https://{h}/_shell/{sandbox_id}#token={token}"),
        None => format!(
            "{}/_shell/{sandbox_id}#token={token}",
            base.trim_end_matches('/')
        ),
    }
}

async fn lookup(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
) -> Result<SandboxRow, ServiceError> {
    let (uid, r) = (user.id.clone(), id_or_name.to_string());
    st.store
        .call(move |c| sandboxes::by_ref(c, &uid, &r))
        .await?
        .ok_or_else(|| ServiceError::NotFound("not found".into()))
}

/// Issues a new token for the caller's sandbox (invalidating the previous one); returns the
/// sandbox and the token.
pub async fn issue(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
) -> Result<(SandboxRow, String), ServiceError> {
    let row = lookup(st, user, id_or_name).await?;
    let token = new_token();
    let (id, hash) = (row.id.clone(), hash_token(&token));
    st.store
        .call(move |c| shell_tokens::set(c, &id, Some(&hash)))
        .await?;
    Ok((row, token))
}

/// Clears the caller's sandbox's token and disconnects its live web shells.
pub async fn revoke(st: &AppState, user: &UserRow, id_or_name: &str) -> Result<(), ServiceError> {
    let row = lookup(st, user, id_or_name).await?;
    let id = row.id.clone();
    st.store
        .call(move |c| shell_tokens::set(c, &id, None))
        .await?;
    st.web_shells.disconnect_all(&row.id);
    Ok(())
}

/// The sandbox a web shell may open with `token`, or `None` (unknown sandbox, no token set,
/// mismatch — callers answer all of them the same way).
pub async fn authorize(st: &AppState, sandbox_id: &str, token: &str) -> Option<SandboxRow> {
    let id = sandbox_id.to_string();
    let (row, hash) = st
        .store
        .call(move |c| shell_tokens::get(c, &id))
        .await
        .ok()??;
    token_matches(token, &hash?).then_some(row)
}

/// Connection attempts to `/_shell/<id>/ws` allowed per client IP: 10 a second.
pub const ATTEMPTS: BucketConfig = BucketConfig {
    burst: 10,
    per_minute: 600,
};

/// Live web shells per sandbox (enforces the per-sandbox cap and lets revoke end them) and
/// connection attempts per client IP.
pub struct WebShells {
    live: Mutex<HashMap<String, Live>>,
    attempts: KeyedBuckets,
}

impl Default for WebShells {
    fn default() -> Self {
        Self {
            live: Mutex::default(),
            attempts: KeyedBuckets::new(10_000),
        }
    }
}

struct Live {
    count: usize,
    /// Cancelled by revoke; a fresh one serves shells opened afterwards.
    cancel: CancellationToken,
}

/// A web shell's place among its sandbox's live shells; leaving frees it.
pub struct Seat<'a> {
    shells: &'a WebShells,
    sandbox: String,
    /// Fires when the owner revokes sharing.
    pub revoked: CancellationToken,
}

impl WebShells {
    /// Counts a connection attempt from `ip`; `Err(retry_after)` beyond [`ATTEMPTS`].
    pub fn attempt(&self, ip: &str, now: Instant) -> Result<(), Duration> {
        self.attempts.take(ip, ATTEMPTS, now)
    }

    /// Takes a seat, or `None` when the sandbox already has [`MAX_PER_SANDBOX`] web shells.
    pub fn join(&self, sandbox: &str) -> Option<Seat<'_>> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let e = live.entry(sandbox.to_string()).or_insert_with(|| Live {
            count: 0,
            cancel: CancellationToken::new(),
        });
        if e.count >= MAX_PER_SANDBOX {
            return None;
        }
        e.count += 1;
        Some(Seat {
            shells: self,
            sandbox: sandbox.to_string(),
            revoked: e.cancel.clone(),
        })
    }

    /// Ends every live web shell of `sandbox`.
    pub fn disconnect_all(&self, sandbox: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = live.get_mut(sandbox) {
            e.cancel.cancel();
            e.cancel = CancellationToken::new();
        }
    }

    /// Live web shells of `sandbox`.
    pub fn count(&self, sandbox: &str) -> usize {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(sandbox).map_or(0, |e| e.count)
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let mut live = self.shells.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = live.get_mut(&self.sandbox) {
            e.count -= 1;
            if e.count == 0 {
                live.remove(&self.sandbox);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn token_check() {
        let t = new_token();
        let h = hash_token(&t);
        assert_ne!(h, t, "the token itself is never stored");
        assert!(token_matches(&t, &h));
        assert!(!token_matches(&new_token(), &h));
        assert!(!token_matches("", &h));
        assert!(!token_matches(&t, ""));
        assert!(!token_matches(&t, &h[..63]));
    }

    #[test]
    fn urls() {
        assert_eq!(
            share_url(Some("api.example.com"), "http://x", "abc", "t0"),
            "https://api.example.com/_shell/abc#token=t0"
        );
        assert_eq!(
            share_url(None, "http://127.0.0.1:8080/", "abc", "t0"),
            "http://127.0.0.1:8080/_shell/abc#token=t0"
        );
        assert_eq!(
            share_url(Some(" "), "http://h:1", "abc", "t0"),
            "http://h:1/_shell/abc#token=t0"
        );
    }

    #[test]
    fn seats_are_capped_released_and_revoked() {
        let w = WebShells::default();
        let seats: Vec<_> = (0..MAX_PER_SANDBOX).map(|_| w.join("s").unwrap()).collect();
        assert!(w.join("s").is_none(), "cap");
        assert!(w.join("other").is_some(), "per sandbox");
        assert_eq!(w.count("s"), MAX_PER_SANDBOX);
        w.disconnect_all("s");
        assert!(seats.iter().all(|s| s.revoked.is_cancelled()));
        drop(seats);
        assert_eq!(w.count("s"), 0);
        let fresh = w.join("s").unwrap();
        assert!(
            !fresh.revoked.is_cancelled(),
            "a revoke ends only the shells open at the time"
        );
    }

    #[test]
    fn attempts_per_ip() {
        let w = WebShells::default();
        let t = Instant::now();
        for _ in 0..10 {
            w.attempt("10.0.0.1", t).unwrap();
        }
        assert!(w.attempt("10.0.0.1", t).is_err());
        w.attempt("10.0.0.2", t).unwrap();
        w.attempt("10.0.0.1", t + Duration::from_millis(150))
            .unwrap();
    }
}
