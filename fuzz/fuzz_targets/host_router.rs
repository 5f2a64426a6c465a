//! The public proxy's request routing: the Host-header router of domain mode (`route_host`) and
//! the path splitter of path mode (`split_path`).
//! Invariants: no panic; an alias route is a non-empty, lower-case label without dots; the API is
//! only chosen for localhost, 127.0.0.1 or the configured api_host.
#![no_main]

use bhatti_server::public_proxy::DomainConfig;
use bhatti_server::public_proxy::{route_host, split_path, HostRoute};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // host \n zone \n api_host
    let mut parts = s.splitn(3, '\n');
    let host = parts.next().unwrap_or("");
    let zone = parts.next().unwrap_or("bhatti.test");
    let api = parts.next().unwrap_or("api.bhatti.test");
    let d = DomainConfig {
        proxy_zone: zone.to_string(),
        api_host: api.to_string(),
        ..Default::default()
    };
    match route_host(host, &d) {
        HostRoute::Alias(a) => {
            assert!(
                !a.is_empty() && !a.contains('.'),
                "alias {a:?} from {host:?}"
            );
            assert_eq!(a, a.to_ascii_lowercase());
            let z = zone.trim().trim_matches('.').to_ascii_lowercase();
            assert!(!z.is_empty(), "alias {a:?} routed with an empty zone");
        }
        HostRoute::Api => {
            let h = host.trim().to_ascii_lowercase();
            let a = api.trim().to_ascii_lowercase();
            assert!(
                h.starts_with("localhost")
                    || h.starts_with("127.0.0.1")
                    || (!a.is_empty() && h.starts_with(&a)),
                "{host:?} routed to the API (api_host {api:?})"
            );
        }
        HostRoute::Unknown => {}
    }
    if let Ok(uri) = host.parse::<axum::http::Uri>() {
        if let Some((alias, target)) = split_path(&uri) {
            assert!(!alias.is_empty() && !alias.contains('/'));
            assert!(target.starts_with('/'));
        }
    }
});
