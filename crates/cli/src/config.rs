//! The CLI's own config: where the API is and which key to use.
//!
//! Precedence, for the URL and the token independently:
//! `--url`/`--token` flag → config file (`api_url`, `auth_token`) → `BHATTI_URL`/`BHATTI_TOKEN`
//! → `http://localhost:8080` / no token. The file beats the environment on purpose: what
//! `bhatti setup` wrote just works; the environment is a fallback for CI and scripts.
//!
//! The file is `~/.bhatti/config.yaml`, where `~` is the *invoking* user's home (under `sudo`,
//! `SUDO_USER`'s home), so `bhatti …` and `sudo bhatti …` read the same file. `BHATTI_HOME`
//! replaces the `~/.bhatti` directory (tests and unusual setups).
//!
//! [`resolve`] is pure; the rest reads and writes files.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// URL used when nothing else names one.
pub const DEFAULT_URL: &str = "http://localhost:8080";
/// Environment variable overriding the `~/.bhatti` directory.
pub const HOME_ENV: &str = "BHATTI_HOME";
/// Environment fallback for the URL.
pub const URL_ENV: &str = "BHATTI_URL";
/// Environment fallback for the token.
pub const TOKEN_ENV: &str = "BHATTI_TOKEN";

/// One source of settings; empty strings count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// API endpoint.
    #[serde(default, rename = "api_url", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// API key.
    #[serde(
        default,
        rename = "auth_token",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<String>,
}

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    File,
    Env,
    Default,
}

/// The settings a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub url: String,
    pub url_source: Source,
    /// `None` = no key at all.
    pub token: Option<String>,
    pub token_source: Source,
}

/// Applies the precedence flag → file → env → default, for URL and token independently.
pub fn resolve(flag: &Layer, file: &Layer, env: &Layer) -> Resolved {
    fn pick(values: [(Option<&String>, Source); 3]) -> Option<(String, Source)> {
        values.into_iter().find_map(|(v, src)| {
            v.map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_string(), src))
        })
    }
    let (url, url_source) = pick([
        (flag.url.as_ref(), Source::Flag),
        (file.url.as_ref(), Source::File),
        (env.url.as_ref(), Source::Env),
    ])
    .unwrap_or_else(|| (DEFAULT_URL.to_string(), Source::Default));
    let (token, token_source) = match pick([
        (flag.token.as_ref(), Source::Flag),
        (file.token.as_ref(), Source::File),
        (env.token.as_ref(), Source::Env),
    ]) {
        Some((t, s)) => (Some(t), s),
        None => (None, Source::Default),
    };
    Resolved {
        url: url.trim_end_matches('/').to_string(),
        url_source,
        token,
        token_source,
    }
}

/// `BHATTI_URL` / `BHATTI_TOKEN`.
pub fn env_layer() -> Layer {
    Layer {
        url: std::env::var(URL_ENV).ok(),
        token: std::env::var(TOKEN_ENV).ok(),
    }
}

/// Parses the config file's text. Unknown keys (e.g. a server config's) are ignored.
pub fn parse_file(text: &str) -> Result<Layer, serde_yaml::Error> {
    if text.trim().is_empty() {
        return Ok(Layer::default());
    }
    serde_yaml::from_str(text)
}

/// Renders the file `setup` writes.
pub fn render_file(url: &str, token: &str) -> String {
    // serde_yaml quotes whatever needs quoting.
    serde_yaml::to_string(&Layer {
        url: Some(url.to_string()),
        token: Some(token.to_string()),
    })
    .unwrap_or_else(|_| format!("api_url: {url}\nauth_token: {token}\n"))
}

/// The invoking user: under `sudo` (root with `SUDO_USER` set), that user; else the current one.
#[derive(Debug, Clone)]
pub struct Invoker {
    pub home: PathBuf,
    /// Set when files we write must be handed back to this uid/gid (we run as root for them).
    pub chown_to: Option<(u32, u32)>,
    /// Running under sudo for another user.
    pub via_sudo: bool,
}

/// Finds the invoking user's home directory.
pub fn invoker() -> Invoker {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        if let Some(name) = std::env::var("SUDO_USER")
            .ok()
            .filter(|s| !s.is_empty() && s != "root")
        {
            if let Ok(Some(u)) = nix::unistd::User::from_name(&name) {
                return Invoker {
                    home: u.dir,
                    chown_to: Some((u.uid.as_raw(), u.gid.as_raw())),
                    via_sudo: true,
                };
            }
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("/"));
    Invoker {
        home,
        chown_to: None,
        via_sudo: false,
    }
}

/// The directory holding the CLI config: `$BHATTI_HOME`, else `<invoking home>/.bhatti`.
pub fn config_dir(invoker: &Invoker) -> PathBuf {
    match std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => invoker.home.join(".bhatti"),
    }
}

/// The CLI config file path.
pub fn config_path(invoker: &Invoker) -> PathBuf {
    config_dir(invoker).join("config.yaml")
}

/// Reads the config file; a missing file is an empty layer.
pub fn read_file(path: &Path) -> Result<Layer> {
    match fs::read_to_string(path) {
        Ok(text) => parse_file(&text).with_context(|| format!("parse {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Layer::default()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes the config file atomically: directory 0700, file 0600, both handed back to the
/// invoking user under sudo.
pub fn write_file(path: &Path, url: &str, token: &str, chown_to: Option<(u32, u32)>) -> Result<()> {
    let dir = path.parent().context("config path has no directory")?;
    let existed = dir.exists();
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    if !existed {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    let tmp = dir.join(".config.yaml.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(render_file(url, token).as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    if let Some((uid, gid)) = chown_to {
        let (uid, gid) = (
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        );
        if !existed {
            nix::unistd::chown(dir, uid, gid)
                .with_context(|| format!("chown {}", dir.display()))?;
        }
        nix::unistd::chown(&tmp, uid, gid).with_context(|| format!("chown {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(url: Option<&str>, token: Option<&str>) -> Layer {
        Layer {
            url: url.map(str::to_string),
            token: token.map(str::to_string),
        }
    }

    #[test]
    fn default_when_nothing_set() {
        let r = resolve(&Layer::default(), &Layer::default(), &Layer::default());
        assert_eq!(r.url, DEFAULT_URL);
        assert_eq!(r.url_source, Source::Default);
        assert_eq!(r.token, None);
        assert_eq!(r.token_source, Source::Default);
    }

    #[test]
    fn env_beats_default() {
        let r = resolve(
            &Layer::default(),
            &Layer::default(),
            &layer(Some("http://env:1"), Some("tok-env")),
        );
        assert_eq!(
            (r.url.as_str(), r.url_source),
            ("http://env:1", Source::Env)
        );
        assert_eq!(
            (r.token.as_deref(), r.token_source),
            (Some("tok-env"), Source::Env)
        );
    }

    #[test]
    fn file_beats_env() {
        let r = resolve(
            &Layer::default(),
            &layer(Some("http://file:1"), Some("tok-file")),
            &layer(Some("http://env:1"), Some("tok-env")),
        );
        assert_eq!(
            (r.url.as_str(), r.url_source),
            ("http://file:1", Source::File)
        );
        assert_eq!(
            (r.token.as_deref(), r.token_source),
            (Some("tok-file"), Source::File)
        );
    }

    #[test]
    fn flag_beats_everything() {
        let r = resolve(
            &layer(Some("http://flag:1"), Some("tok-flag")),
            &layer(Some("http://file:1"), Some("tok-file")),
            &layer(Some("http://env:1"), Some("tok-env")),
        );
        assert_eq!(
            (r.url.as_str(), r.url_source),
            ("http://flag:1", Source::Flag)
        );
        assert_eq!(
            (r.token.as_deref(), r.token_source),
            (Some("tok-flag"), Source::Flag)
        );
    }

    #[test]
    fn url_and_token_resolve_independently() {
        // URL from the flag, token from the env (file has only a URL).
        let r = resolve(
            &layer(Some("http://flag:1"), None),
            &layer(Some("http://file:1"), None),
            &layer(None, Some("tok-env")),
        );
        assert_eq!(r.url_source, Source::Flag);
        assert_eq!(
            (r.token.as_deref(), r.token_source),
            (Some("tok-env"), Source::Env)
        );
        // Token from the flag, URL from the file.
        let r = resolve(
            &layer(None, Some("tok-flag")),
            &layer(Some("http://file:1"), Some("tok-file")),
            &layer(Some("http://env:1"), None),
        );
        assert_eq!(
            (r.url.as_str(), r.url_source),
            ("http://file:1", Source::File)
        );
        assert_eq!(r.token_source, Source::Flag);
        // URL from the env, token from the file.
        let r = resolve(
            &Layer::default(),
            &layer(None, Some("tok-file")),
            &layer(Some("http://env:1"), Some("tok-env")),
        );
        assert_eq!(r.url_source, Source::Env);
        assert_eq!(r.token_source, Source::File);
    }

    #[test]
    fn empty_values_are_unset_and_trailing_slash_dropped() {
        let r = resolve(
            &layer(Some(""), Some("  ")),
            &layer(Some("http://file:1/"), Some("")),
            &layer(None, Some("tok-env")),
        );
        assert_eq!(r.url, "http://file:1");
        assert_eq!(r.token.as_deref(), Some("tok-env"));
    }

    #[test]
    fn file_round_trip_and_unknown_keys() {
        let text = render_file("http://h:8080", "bht_abc");
        assert_eq!(text, "api_url: http://h:8080\nauth_token: bht_abc\n");
        assert_eq!(
            parse_file(&text).unwrap(),
            layer(Some("http://h:8080"), Some("bht_abc"))
        );
        assert_eq!(
            parse_file("listen: 127.0.0.1:8080\napi_url: http://x\n").unwrap(),
            layer(Some("http://x"), None)
        );
        assert_eq!(parse_file("").unwrap(), Layer::default());
        assert!(parse_file("api_url: [").is_err());
    }

    #[test]
    fn write_file_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new").join("config.yaml");
        write_file(&path, "http://h", "t", None).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            read_file(&path).unwrap(),
            layer(Some("http://h"), Some("t"))
        );
        // Rewriting replaces the content.
        write_file(&path, "http://h2", "t2", None).unwrap();
        assert_eq!(read_file(&path).unwrap().token.as_deref(), Some("t2"));
        assert_eq!(
            read_file(&tmp.path().join("missing")).unwrap(),
            Layer::default()
        );
    }
}
