//! `bhatti inspect` / `info` → `GET /sandboxes/:id`.

use anyhow::Result;

use super::Ctx;
use crate::args::SandboxArg;
use crate::output;

pub async fn run(ctx: &Ctx, args: SandboxArg) -> Result<()> {
    let sandbox = ctx.client()?.get_sandbox(&args.sandbox).await?;
    if ctx.json() {
        output::print_json(&sandbox)
    } else {
        print!("{}", output::describe(&sandbox));
        Ok(())
    }
}
