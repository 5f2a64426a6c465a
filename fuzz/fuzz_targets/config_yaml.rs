//! Arbitrary text to the daemon's config parser (`ServerConfig::from_yaml`, serde_yaml) and
//! arbitrary bytes to lohar's sandbox config (JSON).
//! Invariants: no panic; a config that parsed serializes back to YAML that parses again.
#![no_main]

use bhatti_server::ServerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // serde_yaml recurses on nesting; the daemon reads its config from a root-owned file, but the
    // parser must still fail cleanly on anything.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = ServerConfig::from_yaml(text) {
            let _ = cfg.db_path();
        }
    }
    if let Ok(c) = serde_json::from_slice::<lohar::config::SandboxConfig>(data) {
        let _ = c.run_as_root();
        let again = serde_json::to_vec(&c).expect("sandbox config serializes");
        let back: lohar::config::SandboxConfig =
            serde_json::from_slice(&again).expect("serialized sandbox config parses");
        assert_eq!(back, c);
    }
});
