//! `bhatti create` → `POST /sandboxes`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bhatti_api::{CreateSandboxRequest, FileSpec};

use super::{parse_labels, Ctx};
use crate::args::CreateArgs;
use crate::output;

pub async fn run(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let req = build_request(&args)?;
    let client = ctx.client()?;
    let (sandbox, existing) = client.create_sandbox(&req).await?;
    if ctx.json() {
        output::print_json(&sandbox)
    } else {
        print!("{}", output::created(&sandbox, existing));
        Ok(())
    }
}

/// The request body: `name` and `cpus` always, the rest only when set.
fn build_request(args: &CreateArgs) -> Result<CreateSandboxRequest> {
    if !(args.cpus > 0.0 && args.cpus.is_finite()) {
        bail!("--cpus must be a positive number");
    }
    let env = parse_env(&args.env)?;
    let labels: BTreeMap<String, String> = parse_labels(&args.label)?.into_iter().collect();
    let files = args
        .file
        .iter()
        .map(|spec| read_file_spec(spec))
        .collect::<Result<Vec<_>>>()?;
    Ok(CreateSandboxRequest {
        name: args.name.clone().filter(|n| !n.is_empty()),
        image: args.image.clone().filter(|i| !i.is_empty()),
        cpus: Some(args.cpus),
        memory_mb: (args.memory > 0).then_some(args.memory),
        disk_size_mb: (args.disk_size > 0).then_some(args.disk_size),
        env: (!env.is_empty()).then_some(env),
        init: args.init.clone().filter(|i| !i.is_empty()),
        keep_hot: args.keep_hot.then_some(true),
        labels: (!labels.is_empty()).then_some(labels),
        secrets: (!args.secret.is_empty()).then(|| args.secret.clone()),
        files: (!files.is_empty()).then_some(files),
        engine: args.engine.clone().filter(|e| !e.is_empty()),
    })
}

/// Parses `--env K=V,K=V` (repeatable): split on `,`, then on the first `=`.
///
/// Unlike the original CLI, which silently dropped malformed pairs, an entry without `=` or
/// with an empty key is an error. Empty entries (`A=1,,B=2`, trailing comma) are ignored.
pub fn parse_env(items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for item in items {
        for pair in item.split(',') {
            if pair.trim().is_empty() {
                continue;
            }
            match pair.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    env.insert(k.trim().to_string(), v.to_string());
                }
                _ => bail!("invalid --env entry {pair:?}: want KEY=VALUE"),
            }
        }
    }
    Ok(env)
}

/// Reads `local_path:guest_path` into a file spec (content base64).
fn read_file_spec(spec: &str) -> Result<FileSpec> {
    let Some((local, guest)) = spec.rsplit_once(':') else {
        bail!("invalid --file {spec:?}: want local_path:guest_path");
    };
    if local.is_empty() || !guest.starts_with('/') {
        bail!("invalid --file {spec:?}: want local_path:/absolute/guest/path");
    }
    let bytes = std::fs::read(local).with_context(|| format!("read {local}"))?;
    Ok(FileSpec {
        guest_path: guest.to_string(),
        content: base64::engine::general_purpose::STANDARD.encode(bytes),
        mode: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> CreateArgs {
        let mut argv = vec!["bhatti", "create"];
        argv.extend_from_slice(extra);
        match crate::args::Cli::try_parse_from(argv).unwrap().command {
            crate::args::Command::Create(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn env_parsing() {
        let env = parse_env(&["API_KEY=sk-abc,NODE_ENV=prod".into()]).unwrap();
        assert_eq!(env["API_KEY"], "sk-abc");
        assert_eq!(env["NODE_ENV"], "prod");
        let env = parse_env(&["A=x=y".into(), "B=".into(), "C=1,".into()]).unwrap();
        assert_eq!(env["A"], "x=y");
        assert_eq!(env["B"], "");
        assert_eq!(env["C"], "1");
        assert!(parse_env(&["NOEQUALS".into()]).is_err());
        assert!(parse_env(&["=v".into()]).is_err());
        assert!(parse_env(&[]).unwrap().is_empty());
    }

    #[test]
    fn minimal_body_has_name_and_cpus_only() {
        let req = build_request(&args(&["--name", "dev"])).unwrap();
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v, serde_json::json!({"name": "dev", "cpus": 1.0}));
    }

    #[test]
    fn full_body() {
        let req = build_request(&args(&[
            "--name",
            "w",
            "--cpus",
            "2",
            "--memory",
            "512",
            "--env",
            "A=1,B=2",
            "--init",
            "echo hi",
            "--image",
            "tiny",
            "--label",
            "team=a",
            "--label",
            "env=x",
            "--secret",
            "TOKEN",
            "--keep-hot",
            "--engine",
            "gvisor",
        ]))
        .unwrap();
        assert_eq!(req.engine.as_deref(), Some("gvisor"));
        assert_eq!(req.cpus, Some(2.0));
        assert_eq!(req.memory_mb, Some(512));
        assert_eq!(req.env.unwrap().len(), 2);
        assert_eq!(req.init.as_deref(), Some("echo hi"));
        assert_eq!(req.image.as_deref(), Some("tiny"));
        assert_eq!(req.labels.unwrap()["team"], "a");
        assert_eq!(req.secrets.unwrap(), vec!["TOKEN".to_string()]);
        assert_eq!(req.keep_hot, Some(true));
    }

    #[test]
    fn bad_flags_rejected() {
        assert!(build_request(&args(&["--label", "novalue"])).is_err());
        assert!(build_request(&args(&["--cpus", "0"])).is_err());
        assert!(build_request(&args(&["--file", "nocolon"])).is_err());
    }

    #[test]
    fn file_flag_reads_and_encodes() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), b"hello").unwrap();
        let spec = format!("{}:/workspace/h.txt", tmp.path().display());
        let f = read_file_spec(&spec).unwrap();
        assert_eq!(f.guest_path, "/workspace/h.txt");
        assert_eq!(f.content, "aGVsbG8=");
    }
}
