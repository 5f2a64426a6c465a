//! `bhatti publish NAME -p PORT [-a ALIAS] [--shell]`, `bhatti unpublish NAME -p PORT`,
//! `bhatti share NAME [--revoke]`.

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::args::{PublishArgs, ShareArgs, UnpublishArgs};
use crate::output;

/// `publish` → `POST …/publish` → `Published: <url>`.
pub async fn publish(ctx: &Ctx, args: PublishArgs) -> Result<()> {
    let client = ctx.client()?;
    let rule = client
        .publish(&args.sandbox, args.port, args.alias.as_deref())
        .await?;
    let shell = match args.shell {
        true => {
            let t = client.share_shell(&rule.sandbox_id).await?;
            Some((client.shell_link(&rule.sandbox_id, &t), t.token))
        }
        false => None,
    };
    if ctx.json() {
        let mut v = serde_json::to_value(&rule)?;
        if let Some((url, token)) = &shell {
            v["shell_url"] = json!(url);
            v["shell_token"] = json!(token);
        }
        return output::print_json(&v);
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
    if let Some((url, _)) = shell {
        println!("Shell:     {url}");
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

/// `share` → `POST …/shell-token` → `Shell: <url>`; `--revoke` → `DELETE …/shell-token`.
pub async fn share(ctx: &Ctx, args: ShareArgs) -> Result<()> {
    let client = ctx.client()?;
    if args.revoke {
        client.revoke_shell(&args.sandbox).await?;
        if ctx.json() {
            return output::print_json(&json!({"status": "revoked"}));
        }
        println!("Shell access revoked.");
        return Ok(());
    }
    // The link names the sandbox by id: resolve a name first.
    let id = client.get_sandbox(&args.sandbox).await?.id;
    let t = client.share_shell(&id).await?;
    let url = client.shell_link(&id, &t);
    if ctx.json() {
        return output::print_json(&json!({"token": t.token, "url": url}));
    }
    println!("Shell: {url}");
    eprintln!(
        "Anyone with this link can use a shell in the sandbox; `bhatti share {} --revoke` ends it.",
        args.sandbox
    );
    Ok(())
}
