//! `bhatti secret set|list|delete` → `/secrets`.

use anyhow::{bail, Result};
use serde::Serialize;

use super::Ctx;
use crate::args::SecretCommand;
use crate::{output, prompt};

pub async fn run(ctx: &Ctx, cmd: SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::Set { name, value } => {
            let value = match value.as_deref() {
                Some("-") => prompt::stdin_value()?,
                Some(v) => v.to_string(),
                None if prompt::stdin_is_tty() => prompt::masked(&format!("Value for {name}: "))?,
                None => prompt::stdin_value()?,
            };
            if value.is_empty() {
                bail!("empty secret value");
            }
            let info = ctx.client()?.set_secret(&name, &value).await?;
            if ctx.json() {
                output::print_json(&info)
            } else {
                println!("ok");
                Ok(())
            }
        }
        SecretCommand::List => {
            let secrets = ctx.client()?.list_secrets().await?;
            if ctx.json() {
                #[derive(Serialize)]
                struct Name<'a> {
                    name: &'a str,
                }
                let names: Vec<Name<'_>> = secrets.iter().map(|s| Name { name: &s.name }).collect();
                return output::print_json(&names);
            }
            for s in &secrets {
                println!("{}", s.name);
            }
            Ok(())
        }
        SecretCommand::Delete { name, yes } => {
            if !prompt::confirm(&format!("Delete secret {name:?}?"), yes)? {
                return Ok(());
            }
            let status = ctx.client()?.delete_secret(&name).await?;
            if ctx.json() {
                output::print_json(&status)
            } else {
                println!("deleted");
                Ok(())
            }
        }
    }
}
