//! The web shell page: `webshell/page.html` with xterm.js (installed from npm by `build.rs`),
//! its fit add-on and our client script inlined, under a strict Content-Security-Policy whose
//! script nonce is new on every request.

use std::sync::LazyLock;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore;

const TEMPLATE: &str = include_str!("../../webshell/page.html");
const APP_JS: &str = include_str!("../../webshell/shell.js");
const XTERM_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/xterm.js"));
const XTERM_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/xterm.css"));
const FIT_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/addon-fit.js"));

/// A piece of the page: fixed text, or the place of the per-request nonce.
#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    Nonce,
}

/// Splits the template at its `{{…}}` placeholders once, filling in the assets, so that text
/// inside an asset is never mistaken for a placeholder.
fn parts(template: &str, assets: &[(&str, &str)]) -> Vec<Part> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i..].find("}}") else { break };
        out.push(Part::Text(rest[..i].to_string()));
        let name = &rest[i + 2..i + j];
        if name == "NONCE" {
            out.push(Part::Nonce);
        } else {
            let asset = assets
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, v)| *v);
            out.push(Part::Text(asset.to_string()));
        }
        rest = &rest[i + j + 2..];
    }
    out.push(Part::Text(rest.to_string()));
    out
}

fn assemble(parts: &[Part], nonce: &str) -> String {
    let mut page = String::with_capacity(
        parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Nonce => nonce.len(),
            })
            .sum(),
    );
    for p in parts {
        match p {
            Part::Text(t) => page.push_str(t),
            Part::Nonce => page.push_str(nonce),
        }
    }
    page
}

static PAGE: LazyLock<Vec<Part>> = LazyLock::new(|| {
    parts(
        TEMPLATE,
        &[
            ("XTERM_CSS", XTERM_CSS),
            ("XTERM_JS", XTERM_JS),
            ("FIT_JS", FIT_JS),
            ("APP_JS", APP_JS),
        ],
    )
});

/// The policy: only scripts carrying this response's nonce run; the page may connect back to
/// its own origin (the WebSocket) and nowhere else; it cannot be framed. Styles allow inline
/// because xterm.js creates `<style>` elements at run time.
pub fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src data:; font-src data:; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// The page with fresh nonce and its security headers.
pub fn render() -> Response {
    let mut b = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let nonce = base64::engine::general_purpose::STANDARD.encode(b);
    let body = assemble(&PAGE, &nonce);
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(h, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(h, header::CONTENT_SECURITY_POLICY, &csp(&nonce));
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once() {
        let p = parts(
            "<a n={{NONCE}}>{{X}}</a>{{NONCE}}",
            &[("X", "{{NONCE}} stays")],
        );
        assert_eq!(assemble(&p, "N1"), "<a n=N1>{{NONCE}} stays</a>N1");
    }

    #[test]
    fn page_embeds_xterm_and_the_nonce() {
        let r = render();
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap()
            .to_string();
        assert!(nonce.len() >= 20);
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let body = assemble(&PAGE, &nonce);
        for name in ["NONCE", "XTERM_CSS", "XTERM_JS", "FIT_JS", "APP_JS"] {
            assert!(!body.contains(&format!("{{{{{name}}}}}")), "{name} filled");
        }
        assert_eq!(body.matches(&format!("nonce=\"{nonce}\"")).count(), 3);
        assert!(XTERM_JS.len() > 100_000, "xterm.js embedded");
        assert!(body.contains("FitAddon"));
        assert!(!body.contains("sourceMappingURL"));
        assert!(
            !body.contains("<script src") && !body.contains("<link "),
            "nothing loaded from elsewhere"
        );
        let other = render();
        assert_ne!(
            other.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap(),
            csp,
            "a new nonce per request"
        );
    }
}
