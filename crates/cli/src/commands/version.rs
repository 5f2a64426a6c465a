//! `bhatti version`: the CLI's version, the API endpoint, and the server's version (from the
//! `X-Bhatti-Version` header of `GET /health`). No update check: we never call out to the
//! internet.

use anyhow::Result;
use serde::Serialize;

use super::{Ctx, CLI_VERSION};
use crate::output;

#[derive(Serialize)]
struct VersionInfo {
    version: String,
    api: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<String>,
}

pub async fn run(ctx: &Ctx) -> Result<()> {
    let resolved = ctx.resolved()?;
    let mut info = VersionInfo {
        version: format!("v{CLI_VERSION}"),
        api: resolved.url.clone(),
        server_version: None,
    };
    let mut problem = None;
    match ctx.client() {
        Ok(client) => {
            // Any answer carries the header, even an error one.
            let probe = client.health().await;
            info.server_version = client.server_version().map(|v| with_v(&v));
            if let (Err(e), None) = (probe, &info.server_version) {
                problem = Some(e.to_string());
            }
        }
        Err(e) => problem = Some(e.to_string()),
    }
    if ctx.json() {
        output::print_json(&info)?;
    } else {
        println!("bhatti {}", info.version);
        println!("api: {}", info.api);
        if let Some(v) = &info.server_version {
            println!("server: {v}");
        }
    }
    if let Some(p) = problem {
        eprintln!("server: unknown ({p})");
    }
    Ok(())
}

/// `0.1.0` → `v0.1.0`; anything not starting with a digit is shown as is.
fn with_v(v: &str) -> String {
    if v.starts_with(|c: char| c.is_ascii_digit()) {
        format!("v{v}")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_prefix() {
        assert_eq!(super::with_v("0.1.0"), "v0.1.0");
        assert_eq!(super::with_v("v0.1.0"), "v0.1.0");
        assert_eq!(super::with_v("dev"), "dev");
    }
}
