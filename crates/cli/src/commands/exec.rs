//! `bhatti exec NAME -- CMD…` → `POST /sandboxes/:id/exec`.
//!
//! The CLI's exit code is the remote exit code. Output streams (NDJSON) when stdout is a
//! terminal or `BHATTI_FORCE_STREAM=1`, else it is buffered. Stdin is forwarded when it is a
//! pipe or a file (an extension; `-n` turns it off), sent base64 in the request's `stdin`.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bhatti_api::{ExecEvent, ExecRequest};
use clap::CommandFactory;

use super::Ctx;
use crate::args::{Cli, ExecArgs};
use crate::exit::Exit;
use crate::output;

/// Largest stdin forwarded: the request body is capped at 1 MiB and base64 grows by 4/3.
const MAX_STDIN: usize = 700 * 1024;

pub async fn run(ctx: &Ctx, args: ExecArgs) -> Result<()> {
    let mut cmd = args.cmd;
    if cmd.first().map(String::as_str) == Some("--") {
        cmd.remove(0);
    }
    if cmd.is_empty() {
        let mut c = Cli::command();
        if let Some(sub) = c.find_subcommand_mut("exec") {
            sub.print_help()?;
        }
        return Ok(());
    }
    let mut env = std::collections::BTreeMap::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => bail!("invalid --env {kv:?}: want KEY=VALUE"),
        }
    }
    let stdin = if args.no_stdin || args.detach {
        None
    } else {
        piped_stdin()?
    };
    let req = ExecRequest {
        cmd,
        timeout_sec: (args.timeout > 0).then_some(args.timeout as i64),
        detach: args.detach,
        env: (!env.is_empty()).then_some(env),
        cwd: args.cwd,
        stdin: stdin.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        ..Default::default()
    };
    let client = ctx.client()?;
    if args.detach {
        let r = client.exec(&args.sandbox, &req).await?;
        if ctx.json() {
            return output::print_json(&r);
        }
        println!("pid: {}", r.pid.unwrap_or_default());
        println!("output: {}", r.output_file.unwrap_or_default());
        return Ok(());
    }
    let stream = !ctx.json()
        && (std::io::IsTerminal::is_terminal(&std::io::stdout())
            || std::env::var("BHATTI_FORCE_STREAM").as_deref() == Ok("1"));
    let code = if stream {
        let mut s = client.exec_stream(&args.sandbox, &req).await?;
        let mut code = None;
        while let Some(ev) = s.next_event().await? {
            match ev {
                ExecEvent::Stdout { data, data_b64 } => {
                    emit(&mut std::io::stdout(), &data, data_b64)?
                }
                ExecEvent::Stderr { data, data_b64 } => {
                    emit(&mut std::io::stderr(), &data, data_b64)?
                }
                ExecEvent::Exit { exit_code, .. } => {
                    code = Some(exit_code);
                    break;
                }
                ExecEvent::Error { data } => {
                    eprintln!("exec error: {data}");
                    code = Some(1);
                    break;
                }
            }
        }
        code.unwrap_or_else(|| {
            eprintln!("exec error: the stream ended without an exit status");
            1
        })
    } else {
        let r = client.exec(&args.sandbox, &req).await?;
        if ctx.json() {
            output::print_json(&r)?;
        } else {
            emit(&mut std::io::stdout(), &r.stdout, r.stdout_b64.clone())?;
            emit(&mut std::io::stderr(), &r.stderr, r.stderr_b64.clone())?;
        }
        r.exit_code
    };
    if code != 0 {
        return Err(Exit(code).into());
    }
    Ok(())
}

/// Writes output: the exact bytes when the server sent them (non-UTF-8), else the text.
fn emit(w: &mut dyn Write, text: &str, b64: Option<String>) -> Result<()> {
    let res = match b64.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()) {
        Some(bytes) => w.write_all(&bytes),
        None => w.write_all(text.as_bytes()),
    };
    match res.and_then(|_| w.flush()) {
        // `bhatti exec … | head`: the reader went away; not our error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// All of stdin when it is a pipe or a regular file (not a terminal, not /dev/null).
fn piped_stdin() -> Result<Option<Vec<u8>>> {
    let stdin = std::io::stdin();
    use std::os::unix::fs::FileTypeExt;
    let kind = stdin
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .map(|m| m.file_type());
    match kind {
        Ok(t) if t.is_fifo() || t.is_file() => {}
        _ => return Ok(None),
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    if buf.len() > MAX_STDIN {
        bail!(
            "stdin is larger than {} KiB, the most exec forwards; copy it with `bhatti file write` and redirect inside the sandbox, or pass -n",
            MAX_STDIN / 1024
        );
    }
    Ok(Some(buf))
}
