//! Publish rules: a sandbox port reachable without a key at a public URL, by alias.
//!
//! Alias rules (reference §2.11): `^[a-z0-9][a-z0-9-]{0,62}$`, a few reserved words, globally
//! unique. Without an alias: `<sanitised sandbox name>-<6 hex from the OS CSPRNG>`.

use std::collections::HashMap;

use bhatti_api::{PublishRequest, PublishRule, Sandbox};

use super::ServiceError;
use crate::config::ServerConfig;
use crate::ids;
use crate::state::AppState;
use crate::store::now_rfc3339;
use crate::store::publish::{self, PublishRow};
use crate::store::sandboxes::{self, SandboxRow};
use crate::store::users::UserRow;

/// Aliases nobody may publish under.
pub const RESERVED_ALIASES: &[&str] = &[
    "www",
    "mail",
    "admin",
    "status",
    "ns1",
    "ns2",
    "api",
    "app",
    "_acme-challenge",
];

/// Longest alias (a DNS label).
pub const MAX_ALIAS: usize = 63;

/// How many random auto aliases are tried before giving up.
const AUTO_ATTEMPTS: usize = 4;

/// Checks an alias against the rules; the error is the 400 message.
pub fn validate_alias(a: &str) -> Result<(), String> {
    if RESERVED_ALIASES.contains(&a) {
        return Err(format!("alias {a:?} is reserved"));
    }
    let b = a.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_ALIAS
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid alias {a:?}: must match ^[a-z0-9][a-z0-9-]{{0,62}}$"
        ))
    }
}

/// The sandbox name as an alias base: lowercase, anything outside `[a-z0-9-]` → `-`, trimmed
/// of `-` (empty → `sandbox`), cut so that `<base>-<6 hex>` fits in 63.
pub fn alias_base(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-');
    let s = if s.is_empty() { "sandbox" } else { s };
    let cut: String = s.chars().take(MAX_ALIAS - 7).collect();
    cut.trim_end_matches('-').to_string()
}

/// `<alias_base(name)>-<hex6>`.
pub fn auto_alias(name: &str, hex6: &str) -> String {
    format!("{}-{hex6}", alias_base(name))
}

/// The public URL of an alias: `https://<alias>.<zone>` in domain mode,
/// `http://<public_proxy_listen>/<alias>/` with a path-mode listener (an unspecified host is
/// shown as `localhost`), else a placeholder.
pub fn public_url(cfg: &ServerConfig, alias: &str) -> String {
    if let Some(zone) = cfg.domain.as_ref().map(|d| d.proxy_zone.trim_matches('.')) {
        if !zone.is_empty() {
            return format!("https://{alias}.{zone}");
        }
    }
    match cfg.public_proxy_listen.as_deref() {
        Some(l) if !l.is_empty() => {
            let l = if let Some(p) = l.strip_prefix(':') {
                format!("localhost:{p}")
            } else if let Some(p) = l.strip_prefix("0.0.0.0:") {
                format!("localhost:{p}")
            } else if let Some(p) = l.strip_prefix("[::]:") {
                format!("localhost:{p}")
            } else {
                l.to_string()
            };
            format!("http://{l}/{alias}/")
        }
        _ => format!("(no public proxy configured) alias: {alias}"),
    }
}

fn to_api(cfg: &ServerConfig, r: PublishRow) -> PublishRule {
    PublishRule {
        url: public_url(cfg, &r.alias),
        id: r.id,
        sandbox_id: r.sandbox_id,
        port: r.port,
        alias: r.alias,
        created_at: r.created_at,
    }
}

async fn sandbox(
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

fn port_of(p: i64) -> Result<u16, ServiceError> {
    match u16::try_from(p) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ServiceError::Invalid(format!(
            "port must be between 1 and 65535 (got {p})"
        ))),
    }
}

/// What a publish did.
pub enum Published {
    /// A new rule (201).
    New(PublishRule),
    /// The port was already published by this sandbox (200 + `X-Bhatti-Existing`).
    Existing(PublishRule),
}

/// Publishes a port of one of the caller's sandboxes.
pub async fn create(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    req: PublishRequest,
) -> Result<Published, ServiceError> {
    let port = port_of(req.port)?;
    let alias = req.alias.filter(|a| !a.is_empty());
    if let Some(a) = &alias {
        validate_alias(a).map_err(ServiceError::Invalid)?;
    }
    let sb = sandbox(st, user, id_or_name).await?;
    let cfg = &st.config;
    let existing = |r: PublishRow, alias: &Option<String>| -> Result<Published, ServiceError> {
        match alias {
            Some(a) if *a != r.alias => Err(ServiceError::Conflict(format!(
                "port {port} is already published as {:?}",
                r.alias
            ))),
            _ => Ok(Published::Existing(to_api(cfg, r))),
        }
    };
    let sid = sb.id.clone();
    if let Some(r) = st
        .store
        .call(move |c| publish::by_port(c, &sid, port))
        .await?
    {
        return existing(r, &alias);
    }
    let attempts = if alias.is_some() { 1 } else { AUTO_ATTEMPTS };
    for _ in 0..attempts {
        let row = PublishRow {
            id: format!("pub_{}", ids::random_hex(8)),
            sandbox_id: sb.id.clone(),
            user_id: user.id.clone(),
            port,
            alias: alias
                .clone()
                .unwrap_or_else(|| auto_alias(&sb.name, &ids::random_hex(3))),
            created_at: now_rfc3339(),
        };
        let r2 = row.clone();
        match st.store.call(move |c| publish::insert(c, &r2)).await {
            Ok(()) => {
                st.record(crate::store::events::NewEvent::new(
                    "publish.created",
                    &user.id,
                    &row.sandbox_id,
                    serde_json::json!({"port": row.port, "alias": row.alias}),
                ));
                return Ok(Published::New(to_api(cfg, row)));
            }
            Err(e) if publish::is_unique_violation(&e) => {
                // Either this port was published meanwhile, or the alias is taken.
                let sid = sb.id.clone();
                if let Some(r) = st
                    .store
                    .call(move |c| publish::by_port(c, &sid, port))
                    .await?
                {
                    return existing(r, &alias);
                }
                if alias.is_some() {
                    return Err(ServiceError::Conflict(format!(
                        "alias {:?} is already in use",
                        row.alias
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Task(
        "could not find a free alias; pass one with alias".into(),
    ))
}

/// A sandbox's rules.
pub async fn list(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
) -> Result<Vec<PublishRule>, ServiceError> {
    let sb = sandbox(st, user, id_or_name).await?;
    let rows = st
        .store
        .call(move |c| publish::by_sandbox(c, &sb.id))
        .await?;
    Ok(rows.into_iter().map(|r| to_api(&st.config, r)).collect())
}

/// Unpublishes a port (404 if it is not published). The public proxy reads rules from the
/// store on every request, so the URL stops working at once.
pub async fn delete(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    port: &str,
) -> Result<(), ServiceError> {
    let port = super::proxy::parse_port(port)?;
    let sb = sandbox(st, user, id_or_name).await?;
    let sid = sb.id.clone();
    if st
        .store
        .call(move |c| publish::delete(c, &sid, port))
        .await?
    {
        st.record(crate::store::events::NewEvent::new(
            "publish.deleted",
            &user.id,
            &sb.id,
            serde_json::json!({"port": port}),
        ));
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!(
            "port {port} is not published"
        )))
    }
}

/// Fills `urls` of listed sandboxes (only those with rules).
pub async fn fill_urls(
    st: &AppState,
    user: &UserRow,
    list: &mut [Sandbox],
) -> Result<(), ServiceError> {
    let uid = user.id.clone();
    let rows = st.store.call(move |c| publish::by_user(c, &uid)).await?;
    let mut by: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows {
        by.entry(r.sandbox_id)
            .or_default()
            .push(public_url(&st.config, &r.alias));
    }
    for s in list {
        if let Some(u) = by.remove(&s.id) {
            s.urls = Some(u);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alias_rules() {
        for ok in ["a", "0", "my-app", "a-", "x".repeat(63).as_str(), "9lives"] {
            assert!(validate_alias(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "A",
            "my_app",
            "a.b",
            "x".repeat(64).as_str(),
            "é",
            "a b",
        ] {
            assert!(
                validate_alias(bad).unwrap_err().contains("invalid alias"),
                "{bad}"
            );
        }
        for r in RESERVED_ALIASES {
            assert!(validate_alias(r).unwrap_err().contains("reserved"), "{r}");
        }
    }

    #[test]
    fn auto_aliases() {
        assert_eq!(auto_alias("dev", "a1b2c3"), "dev-a1b2c3");
        assert_eq!(auto_alias("My_App.v2", "000000"), "my-app-v2-000000");
        assert_eq!(auto_alias("--", "abcdef"), "sandbox-abcdef");
        assert_eq!(auto_alias("ÜBER", "abcdef"), "ber-abcdef");
        let long = auto_alias(&"n".repeat(100), "abcdef");
        assert_eq!(long.len(), 63);
        assert!(validate_alias(&long).is_ok());
    }

    #[test]
    fn urls() {
        let mut cfg = ServerConfig::default();
        assert_eq!(
            public_url(&cfg, "x"),
            "(no public proxy configured) alias: x"
        );
        cfg.public_proxy_listen = Some(":8443".into());
        assert_eq!(public_url(&cfg, "x"), "http://localhost:8443/x/");
        cfg.public_proxy_listen = Some("127.0.0.1:9000".into());
        assert_eq!(public_url(&cfg, "x"), "http://127.0.0.1:9000/x/");
        cfg.domain = Some(crate::public_proxy::DomainConfig {
            api_host: "api.example.com".into(),
            proxy_zone: "apps.example.com".into(),
            ..Default::default()
        });
        assert_eq!(public_url(&cfg, "x"), "https://x.apps.example.com");
    }

    proptest! {
        #[test]
        fn auto_alias_is_always_valid(name in "\\PC{0,80}", hex in "[0-9a-f]{6}") {
            let a = auto_alias(&name, &hex);
            prop_assert!(validate_alias(&a).is_ok(), "{}", a);
        }
    }
}
