//! Validators for names, labels and environment keys (hand-written, no regex engine).

use std::collections::BTreeMap;

/// Maximum labels per sandbox.
pub const MAX_LABELS: usize = 16;
/// Label prefix reserved for bhatti itself.
pub const RESERVED_LABEL_PREFIX: &str = "bhatti.sh/";

/// `^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$` — sandbox, user, volume, image names.
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `^[A-Za-z_][A-Za-z0-9_]*$` — environment variable and secret names.
pub fn is_valid_env_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?`
fn is_label_segment(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return false;
    }
    let end_ok = |c: &u8| c.is_ascii_alphanumeric();
    end_ok(&b[0])
        && end_ok(&b[b.len() - 1])
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A label key: optional `prefix/` then a name, each a label segment; `bhatti.sh/` reserved.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    if key.starts_with(RESERVED_LABEL_PREFIX) {
        return Err(format!(
            "label key {key:?} uses the reserved prefix {RESERVED_LABEL_PREFIX:?}"
        ));
    }
    let ok = match key.split_once('/') {
        Some((prefix, name)) => is_label_segment(prefix) && is_label_segment(name),
        None => is_label_segment(key),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

/// A label value: empty, or ≤256 chars of `[a-zA-Z0-9._-]`.
pub fn validate_label_value(key: &str, value: &str) -> Result<(), String> {
    let ok = value.len() <= 256
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label value for {key:?}"))
    }
}

/// All labels of a sandbox.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("too many labels (max {MAX_LABELS})"));
    }
    for (k, v) in labels {
        validate_label_key(k)?;
        validate_label_value(k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "A9", "web-1", "x.y_z", &"a".repeat(63)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"a".repeat(64), "a\n"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn env_keys() {
        for ok in ["A", "_x", "PATH", "a1_B"] {
            assert!(is_valid_env_key(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B", "Ä"] {
            assert!(!is_valid_env_key(bad), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(validate_label_key("team").is_ok());
        assert!(validate_label_key("example.com/team").is_ok());
        assert!(validate_label_key("bhatti.sh/x").is_err());
        assert!(validate_label_key("-x").is_err());
        assert!(validate_label_key("x-").is_err());
        assert!(validate_label_key("a/b/c").is_err());
        assert!(validate_label_value("k", "").is_ok());
        assert!(validate_label_value("k", "v1.2_3-x").is_ok());
        assert!(validate_label_value("k", "a b").is_err());
        assert!(validate_label_value("k", &"a".repeat(257)).is_err());
        let many: BTreeMap<_, _> = (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_labels(&many).is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn name_matches_regex(s in "\\PC{0,70}") {
            let b = s.as_bytes();
            let want = !b.is_empty() && b.len() <= 63 && b[0].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
            prop_assert_eq!(is_valid_name(&s), want);
        }

        #[test]
        fn generated_names_are_valid(s in "[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}") {
            prop_assert!(is_valid_name(&s));
        }

        #[test]
        fn env_keys_regex(s in "[A-Za-z_][A-Za-z0-9_]{0,30}") {
            prop_assert!(is_valid_env_key(&s));
        }
    }
}
