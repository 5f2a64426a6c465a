//! `bhatti list` / `ls` → `GET /sandboxes[?label=k=v…]`.

use anyhow::Result;

use super::{parse_labels, Ctx};
use crate::args::{ListArgs, ListFormat};
use crate::output::{self, SandboxSummary};

pub async fn run(ctx: &Ctx, args: ListArgs) -> Result<()> {
    let labels = parse_labels(&args.label)?;
    let sandboxes = ctx.client()?.list_sandboxes(&labels).await?;
    if ctx.json() {
        let reduced: Vec<SandboxSummary<'_>> = sandboxes.iter().map(SandboxSummary::from).collect();
        return output::print_json(&reduced);
    }
    print!(
        "{}",
        output::sandbox_table(&sandboxes, args.output == Some(ListFormat::Wide))
    );
    Ok(())
}
