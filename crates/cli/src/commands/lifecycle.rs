//! `bhatti stop`, `bhatti start` and `bhatti edit`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use bhatti_api::sandbox::UpdateSandboxRequest;

use super::{parse_labels, Ctx};
use crate::args::{EditArgs, SandboxArg};
use crate::output;

/// `POST /sandboxes/:id/stop` → `sandbox/<arg> stopped`.
pub async fn stop(ctx: &Ctx, args: SandboxArg) -> Result<()> {
    let s = ctx.client()?.stop_sandbox(&args.sandbox).await?;
    if ctx.json() {
        return output::print_json(&s);
    }
    println!("sandbox/{} stopped", args.sandbox);
    Ok(())
}

/// `POST /sandboxes/:id/start` → `sandbox/<arg> started`.
pub async fn start(ctx: &Ctx, args: SandboxArg) -> Result<()> {
    let s = ctx.client()?.start_sandbox(&args.sandbox).await?;
    if ctx.json() {
        return output::print_json(&s);
    }
    println!("sandbox/{} started", args.sandbox);
    Ok(())
}

/// The PATCH body for `edit`'s flags.
pub fn edit_request(args: &EditArgs) -> Result<UpdateSandboxRequest> {
    let labels: BTreeMap<String, String> = parse_labels(&args.label)?.into_iter().collect();
    let req = UpdateSandboxRequest {
        keep_hot: if args.keep_hot {
            Some(true)
        } else if args.allow_cold {
            Some(false)
        } else {
            None
        },
        name: args.name.clone(),
        labels_add: (!labels.is_empty()).then_some(labels),
        labels_remove: (!args.label_delete.is_empty()).then(|| args.label_delete.clone()),
    };
    if req == UpdateSandboxRequest::default() {
        bail!(
            "nothing to update: give --keep-hot, --allow-cold, --name, --label or --label-delete"
        );
    }
    Ok(req)
}

/// `PATCH /sandboxes/:id` → `Updated <arg>` plus what changed.
pub async fn edit(ctx: &Ctx, args: EditArgs) -> Result<()> {
    let req = edit_request(&args)?;
    let s = ctx.client()?.update_sandbox(&args.sandbox, &req).await?;
    if ctx.json() {
        return output::print_json(&s);
    }
    println!("Updated {}", args.sandbox);
    if let Some(n) = &req.name {
        println!("  name: {n} (the hostname inside the sandbox is unchanged)");
    }
    if req.keep_hot.is_some() {
        println!(
            "  keep_hot: {}",
            if s.keep_hot {
                "on (never cools)"
            } else {
                "off (may cool when idle)"
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<UpdateSandboxRequest> {
        let cli = Cli::try_parse_from(args)?;
        match cli.command {
            Command::Edit(a) => edit_request(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn edit_flags() {
        let r = parse(&[
            "bhatti",
            "edit",
            "dev",
            "--keep-hot",
            "--name",
            "dev2",
            "--label",
            "a=b",
            "--label-delete",
            "c",
        ])
        .unwrap();
        assert_eq!(r.keep_hot, Some(true));
        assert_eq!(r.name.as_deref(), Some("dev2"));
        assert_eq!(r.labels_add.unwrap()["a"], "b");
        assert_eq!(r.labels_remove.unwrap(), ["c"]);
        assert_eq!(
            parse(&["bhatti", "edit", "dev", "--allow-cold"])
                .unwrap()
                .keep_hot,
            Some(false)
        );
        assert!(parse(&["bhatti", "edit", "dev", "--keep-hot", "--allow-cold"]).is_err());
        let e = parse(&["bhatti", "edit", "dev"]).unwrap_err().to_string();
        assert!(e.contains("nothing to update"), "{e}");
    }
}
