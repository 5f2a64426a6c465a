//! `bhatti user create|list|rotate-key|delete`: opens the daemon's database directly (no
//! daemon needed; safe alongside a running one). The data dir is `--data-dir`, else the
//! server config's `data_dir` (`BHATTI_CONFIG`, else `/etc/bhatti/config.yaml`, else
//! `/var/lib/bhatti`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use bhatti_api::User;
use bhatti_server::admin::{self, NewUser};
use bhatti_server::ServerConfig;
use serde::Serialize;

use super::Ctx;
use crate::args::{UserCommand, UserCreateArgs};
use crate::{output, prompt};

pub fn run(ctx: &Ctx, cmd: UserCommand) -> Result<()> {
    let (data_dir, server_config) = data_dir(ctx)?;
    match cmd {
        UserCommand::Create(args) => create(ctx, &data_dir, server_config.as_ref(), args),
        UserCommand::List => {
            let users = admin::list_users(&data_dir)?;
            if ctx.json() {
                return output::print_json(&users);
            }
            print!("{}", output::user_table(&users, |i| i.to_string()));
            Ok(())
        }
        UserCommand::RotateKey { name } => {
            let key = admin::rotate_key(&data_dir, &name)?;
            if ctx.json() {
                #[derive(Serialize)]
                struct Rotated<'a> {
                    name: &'a str,
                    api_key: &'a str,
                }
                return output::print_json(&Rotated {
                    name: &name,
                    api_key: &key,
                });
            }
            println!("New key: {key}");
            println!("The old key no longer works. This key will not be shown again.");
            Ok(())
        }
        UserCommand::Delete { name, yes } => {
            if !prompt::confirm(&format!("Delete user {name:?}?"), yes)? {
                return Ok(());
            }
            admin::delete_user(&data_dir, &name)?;
            if ctx.json() {
                output::print_json(&bhatti_api::StatusResponse::new("deleted"))
            } else {
                println!("user/{name} deleted");
                Ok(())
            }
        }
    }
}

fn create(
    ctx: &Ctx,
    data_dir: &std::path::Path,
    server_config: Option<&ServerConfig>,
    args: UserCreateArgs,
) -> Result<()> {
    let (user, key) = admin::create_user(
        data_dir,
        NewUser {
            name: args.name,
            max_sandboxes: args.max_sandboxes,
            max_cpus: args.max_cpus,
            max_memory_mb: args.max_memory,
        },
    )?;
    if ctx.json() {
        #[derive(Serialize)]
        struct Created<'a> {
            #[serde(flatten)]
            user: &'a User,
            api_key: &'a str,
        }
        return output::print_json(&Created {
            user: &user,
            api_key: &key,
        });
    }
    let url = ctx
        .global
        .url
        .clone()
        .unwrap_or_else(|| local_api_url(server_config.map(|c| c.listen.as_str())));
    print!("{}", created_text(&user, &key, &url));
    Ok(())
}

/// The human output of `user create`.
fn created_text(user: &User, key: &str, url: &str) -> String {
    format!(
        "User created\n\
         \x20 ID:       {id}\n\
         \x20 Name:     {name}\n\
         \x20 Subnet:   {subnet}\n\
         \x20 Limits:   {ms} sandboxes, {mc} CPUs and {mm} MB per sandbox\n\
         \x20 API key:  {key}\n\
         \n\
         Save the API key now: it will not be shown again.\n\
         \n\
         Quick start:\n\
         \x20 bhatti setup --url {url} --token {key}\n\
         or\n\
         \x20 export BHATTI_URL={url}\n\
         \x20 export BHATTI_TOKEN={key}\n",
        id = user.id,
        name = user.name,
        subnet = user.subnet_index,
        ms = user.max_sandboxes,
        mc = user.max_cpus_per_sandbox,
        mm = user.max_memory_mb_per_sandbox,
    )
}

/// `--data-dir`, else the server config's data dir. Also returns the server config when it
/// was read.
pub(super) fn data_dir(ctx: &Ctx) -> Result<(PathBuf, Option<ServerConfig>)> {
    if let Some(d) = &ctx.global.data_dir {
        return Ok((d.clone(), ServerConfig::load().ok()));
    }
    let config = ServerConfig::load()
        .context("load the server config to find its data_dir (or pass --data-dir)")?;
    Ok((config.data_dir.clone(), Some(config)))
}

/// The URL a local client uses to reach a daemon listening on `listen`.
pub fn local_api_url(listen: Option<&str>) -> String {
    let Some(listen) = listen.map(str::trim).filter(|l| !l.is_empty()) else {
        return crate::config::DEFAULT_URL.to_string();
    };
    if listen.starts_with("http://") || listen.starts_with("https://") {
        return listen.trim_end_matches('/').to_string();
    }
    let (host, port) = match listen.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => ("", listen),
    };
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    format!("http://{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls() {
        assert_eq!(
            local_api_url(Some("127.0.0.1:8080")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(local_api_url(Some(":8080")), "http://127.0.0.1:8080");
        assert_eq!(local_api_url(Some("0.0.0.0:9000")), "http://127.0.0.1:9000");
        assert_eq!(local_api_url(Some("[::]:9000")), "http://[::1]:9000");
        assert_eq!(local_api_url(Some("[::1]:9000")), "http://[::1]:9000");
        assert_eq!(local_api_url(None), "http://localhost:8080");
    }

    #[test]
    fn created_text_shows_key_once_with_quick_start() {
        let u = User {
            id: "usr_0a1b2c3d".into(),
            name: "alice".into(),
            max_sandboxes: 5,
            max_cpus_per_sandbox: 4,
            max_memory_mb_per_sandbox: 4096,
            subnet_index: 1,
            created_at: "2026-11-29T01:00:00Z".into(),
            sandbox_count: 0,
        };
        let t = created_text(&u, "bht_k", "http://h:1");
        assert!(t.contains("  ID:       usr_0a1b2c3d\n"));
        assert!(t.contains("  API key:  bht_k\n"));
        assert!(t.contains("will not be shown again"));
        assert!(t.contains("export BHATTI_URL=http://h:1\n  export BHATTI_TOKEN=bht_k\n"));
    }
}
