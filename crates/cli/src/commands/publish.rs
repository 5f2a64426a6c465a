//! `bhatti publish NAME -p PORT [-a ALIAS]`, `bhatti unpublish NAME -p PORT`.

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::args::{PublishArgs, UnpublishArgs};
use crate::output;

/// `publish` → `POST …/publish` → `Published: <url>`.
pub async fn publish(ctx: &Ctx, args: PublishArgs) -> Result<()> {
    let client = ctx.client()?;
    let rule = client
        .publish(&args.sandbox, args.port, args.alias.as_deref())
        .await?;
    if ctx.json() {
        return output::print_json(&rule);
    }
    if rule.url.starts_with("(no public proxy configured)") {
        eprintln!(
            "No public proxy is configured on the server (set public_proxy_listen or domain in its \
             config); alias {:?} is reserved. With your key, the port is reachable at:",
            rule.alias
        );
        println!(
            "Published: {}",
            client.proxy_url(&rule.sandbox_id, rule.port)
        );
    } else {
        println!("Published: {}", rule.url);
    }
    Ok(())
}

/// `unpublish` → `DELETE …/publish/<port>` → `Unpublished port N`.
pub async fn unpublish(ctx: &Ctx, args: UnpublishArgs) -> Result<()> {
    ctx.client()?.unpublish(&args.sandbox, args.port).await?;
    if ctx.json() {
        return output::print_json(&json!({"status": "unpublished", "port": args.port}));
    }
    println!("Unpublished port {}", args.port);
    Ok(())
}
