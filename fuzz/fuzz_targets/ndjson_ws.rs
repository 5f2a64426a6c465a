//! The line and message parsers of the streaming APIs: the NDJSON exec stream (`ExecEvent`, one
//! JSON object a line, as the client splits it) and the WebSocket text messages the daemon parses
//! (piped-session start, resize).
//! Invariants: no panic; every parsed event re-serializes to one line that parses back equal;
//! accepted starts have a command and an absolute cwd; accepted resizes are non-zero.
#![no_main]

use bhatti_api::ExecEvent;
use bhatti_server::service::shell::{parse_piped_start, parse_resize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Ok(ev) = serde_json::from_slice::<ExecEvent>(line) {
            let out = serde_json::to_string(&ev).expect("event serializes");
            assert!(!out.contains('\n'), "NDJSON line with a newline: {out:?}");
            let back: ExecEvent = serde_json::from_str(&out).expect("event parses back");
            assert_eq!(back, ev);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = parse_piped_start(text) {
            assert!(p.cmd.first().is_some_and(|c| !c.is_empty()));
            if let Some(cwd) = &p.cwd {
                assert!(cwd.starts_with('/'));
            }
        }
        if let Some((r, c)) = parse_resize(text) {
            assert!(r > 0 && c > 0);
        }
    }
});
