//! `bhatti setup [--url U --token T]`: saves the endpoint and key to `~/.bhatti/config.yaml`
//! (directory 0700, file 0600, owned by the invoking user under sudo), then tests the key with
//! an authenticated `GET /sandboxes`.
//!
//! With both `--url` and `--token` it runs non-interactively and a failed test exits 1;
//! otherwise it prompts (the key masked) and a failed test is only reported.

use anyhow::{bail, Result};
use bhatti_client::Client;
use serde::Serialize;

use super::Ctx;
use crate::exit::{self, Exit};
use crate::{config, output, prompt};

#[derive(Serialize)]
struct SetupResult {
    config: String,
    api_url: String,
    authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandboxes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn run(ctx: &Ctx) -> Result<()> {
    let invoker = config::invoker();
    let path = config::config_path(&invoker);
    let flag = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let (flag_url, flag_token) = (flag(&ctx.global.url), flag(&ctx.global.token));
    let interactive = flag_url.is_none() || flag_token.is_none();

    let (url, token) = if interactive {
        if !prompt::stdin_is_tty() {
            bail!("setup needs a terminal to prompt; pass both --url and --token to run it non-interactively");
        }
        let current = ctx.resolved()?;
        let url = match flag_url {
            Some(u) => u,
            None => {
                let answer = prompt::line(&format!("API endpoint [{}]: ", current.url))?;
                if answer.is_empty() {
                    current.url
                } else {
                    answer
                }
            }
        };
        let token = match flag_token {
            Some(t) => t,
            None => prompt::masked("API key: ")?,
        };
        (url, token)
    } else {
        (flag_url.unwrap_or_default(), flag_token.unwrap_or_default())
    };
    let url = url.trim().trim_end_matches('/').to_string();
    let token = token.trim().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("API endpoint {url:?} must start with http:// or https://");
    }
    if token.is_empty() {
        bail!("an API key is required (`bhatti user create` prints one)");
    }
    // Validate the URL before writing anything.
    let client = Client::new(&url, Some(token.clone()))?;

    config::write_file(&path, &url, &token, invoker.chown_to)?;
    let probe = client.list_sandboxes(&[]).await;

    let mut result = SetupResult {
        config: path.display().to_string(),
        api_url: url,
        authenticated: probe.is_ok(),
        sandboxes: None,
        error: None,
    };
    let failure = match probe {
        Ok(list) => {
            result.sandboxes = Some(list.len());
            None
        }
        Err(e) => {
            result.error = Some(e.to_string());
            Some(anyhow::Error::from(e))
        }
    };

    if ctx.json() {
        output::print_json(&result)?;
    } else {
        println!("Saved {}", result.config);
        match (&failure, result.sandboxes) {
            (None, Some(n)) => println!("✓ authenticated ({n} sandboxes)"),
            (Some(e), _) => {
                eprintln!("✗ {e}");
                for hint in exit::hints(e) {
                    eprintln!("{hint}");
                }
            }
            (None, None) => {}
        }
        if invoker.via_sudo {
            println!("Note: sudo is not needed for bhatti setup or other client commands.");
        }
        if interactive && failure.is_none() {
            if let Some(hint) = completion_hint() {
                println!("{hint}");
            }
        }
    }
    if failure.is_some() && !interactive {
        return Err(Exit(exit::FAILURE).into());
    }
    Ok(())
}

/// How to enable tab completion in the user's shell.
fn completion_hint() -> Option<String> {
    let shell = std::env::var("SHELL").ok()?;
    let name = shell.rsplit('/').next()?;
    let line = match name {
        "zsh" => "echo 'source <(bhatti completion zsh)' >> ~/.zshrc",
        "bash" => "echo 'source <(bhatti completion bash)' >> ~/.bashrc",
        "fish" => "bhatti completion fish > ~/.config/fish/completions/bhatti.fish",
        _ => return None,
    };
    Some(format!("Tab completion: {line}"))
}
