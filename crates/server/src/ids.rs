//! Identifiers, API keys and tokens, all from the OS CSPRNG.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `n` random bytes as lowercase hex (2n chars).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Sandbox id: 16 hex.
pub fn sandbox_id() -> String {
    random_hex(8)
}

/// User id: `usr_` + 8 hex.
pub fn user_id() -> String {
    format!("usr_{}", random_hex(4))
}

/// API key: `bht_` + 64 hex (32 random bytes).
pub fn api_key() -> String {
    format!("bht_{}", random_hex(32))
}

/// Per-sandbox agent token: 32 hex.
pub fn agent_token() -> String {
    random_hex(16)
}

/// Request id for sanitised 500s: `req_` + 16 hex.
pub fn request_id() -> String {
    format!("req_{}", random_hex(8))
}

/// Auto name for a sandbox created without one: `sandbox-<6 hex>`.
pub fn auto_sandbox_name() -> String {
    format!("sandbox-{}", random_hex(3))
}

/// Lowercase hex SHA-256 of the whole presented key; the only form in which keys are stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hex(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn formats() {
        let k = api_key();
        assert!(k.starts_with("bht_") && k.len() == 68 && is_hex(&k[4..]));
        let u = user_id();
        assert!(u.starts_with("usr_") && u.len() == 12 && is_hex(&u[4..]));
        let s = sandbox_id();
        assert!(s.len() == 16 && is_hex(&s));
        assert_eq!(agent_token().len(), 32);
        let r = request_id();
        assert!(r.starts_with("req_") && r.len() == 20);
        let n = auto_sandbox_name();
        assert!(n.starts_with("sandbox-") && n.len() == 14);
    }

    #[test]
    fn unique() {
        assert_ne!(api_key(), api_key());
        assert_ne!(sandbox_id(), sandbox_id());
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
