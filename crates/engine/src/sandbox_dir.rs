//! What every engine's per-sandbox state has in common: the rule for engine ids (they name
//! directories, cgroups, veths, TAPs and runsc containers) and the state file kept in a
//! sandbox's directory for recovery.

use std::path::Path;

/// The state file in a sandbox's directory.
const STATE_FILE: &str = "state.json";

/// Engine ids are lowercase hex of 8 to 32 characters, safe in every name they end up in.
pub(crate) fn valid_key(id: &str) -> bool {
    (8..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes `meta` as the state file of the sandbox directory `dir` (atomically: a crash leaves
/// the old file or the new one).
pub(crate) fn save_state<T: serde::Serialize>(dir: &Path, meta: &T) -> std::io::Result<()> {
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, dir.join(STATE_FILE))
}

/// The state file of the sandbox directory `dir`, if there is a readable one.
pub(crate) fn load_state<T: serde::de::DeserializeOwned>(dir: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_lowercase_hex() {
        assert!(valid_key("0123456789abcdef"));
        assert!(!valid_key("0123456"));
        assert!(!valid_key(&"a".repeat(33)));
        assert!(!valid_key("0123456789ABCDEF"));
        assert!(!valid_key("../../etc/x"));
    }

    #[test]
    fn state_round_trips_and_missing_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load_state::<Vec<u32>>(d.path()), None);
        save_state(d.path(), &vec![1u32, 2]).unwrap();
        assert_eq!(load_state::<Vec<u32>>(d.path()), Some(vec![1, 2]));
        assert!(!d.path().join("state.json.tmp").exists());
    }
}
