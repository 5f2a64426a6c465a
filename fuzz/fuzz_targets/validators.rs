//! The input validators the API applies to user-supplied names, aliases, labels, env keys, file
//! query strings, modes and ports.
//! Invariants: no panic; anything accepted obeys the documented rules; `auto_alias` always
//! produces a valid alias.
#![no_main]

use std::collections::BTreeMap;

use bhatti_server::service::{files, proxy, publish, sandboxes};
use bhatti_server::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // Splitting on the first NUL gives a second, independent string (label value, hex…).
    let (a, b) = s.split_once('\0').unwrap_or((s, ""));

    if validate::is_valid_name(a) {
        assert!(
            a.len() <= 63 && a.as_bytes()[0].is_ascii_alphanumeric(),
            "{a:?}"
        );
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')),
            "{a:?}"
        );
    }
    let _ = validate::is_valid_env_key(a);
    let _ = validate::validate_label_key(a);
    let _ = validate::validate_label_value(a, b);
    let mut labels = BTreeMap::new();
    for part in s.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let _ = validate::validate_labels(&labels);

    if publish::validate_alias(a).is_ok() {
        assert!(!a.is_empty() && a.len() <= 63, "{a:?}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{a:?}"
        );
    }
    let base = publish::alias_base(a);
    let hex: String = b
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .chain("000000".chars())
        .take(6)
        .collect();
    let auto = publish::auto_alias(a, &hex);
    assert!(
        publish::validate_alias(&auto).is_ok(),
        "auto alias {auto:?} (base {base:?}) of {a:?} is invalid"
    );

    let _ = sandboxes::parse_label_filters(Some(s));
    if let Ok(q) = files::parse_query(Some(s)) {
        if let Ok(p) = files::require_path(&q) {
            assert!(p.starts_with('/') && !p.contains('\0'));
        }
        if let Ok(m) = files::parse_mode(q.mode.as_deref()) {
            assert!(m <= 0o7777);
        }
    }
    if let Ok(p) = proxy::parse_port(a) {
        assert!(p > 0);
    }
});
