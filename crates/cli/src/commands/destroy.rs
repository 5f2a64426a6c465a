//! `bhatti destroy` / `rm` → confirm, then `DELETE /sandboxes/:id`.

use anyhow::Result;

use super::Ctx;
use crate::args::DestroyArgs;
use crate::{output, prompt};

pub async fn run(ctx: &Ctx, args: DestroyArgs) -> Result<()> {
    // Confirm before any request, so a refused confirmation costs nothing.
    if !prompt::confirm(&format!("Destroy sandbox {:?}?", args.sandbox), args.yes)? {
        return Ok(());
    }
    let status = ctx.client()?.destroy_sandbox(&args.sandbox).await?;
    if ctx.json() {
        output::print_json(&status)
    } else {
        println!("sandbox/{} destroyed", args.sandbox);
        Ok(())
    }
}
