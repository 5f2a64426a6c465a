//! `bhatti file read|write|ls` → `/sandboxes/:id/files`.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use bhatti_api::{FileEntry, MAX_FILE_WRITE_BYTES};

use super::Ctx;
use crate::args::FileCommand;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: FileCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        FileCommand::Read { sandbox, path } => {
            let mut dl = client.read_file(&sandbox, &path).await?;
            let mut out = std::io::stdout().lock();
            while let Some(c) = dl.chunk().await? {
                if let Err(e) = out.write_all(&c) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(e.into());
                }
            }
            let _ = out.flush();
            Ok(())
        }
        FileCommand::Write {
            sandbox,
            path,
            mode,
        } => {
            let status = match stdin_file()? {
                // `< file`: stream it with its exact length.
                Some((file, len)) => {
                    check_size(len)?;
                    client
                        .write_file(
                            &sandbox,
                            &path,
                            Some(&mode),
                            tokio::fs::File::from_std(file),
                            len,
                        )
                        .await?
                }
                None => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .lock()
                        .take(MAX_FILE_WRITE_BYTES + 1)
                        .read_to_end(&mut buf)
                        .context("reading stdin")?;
                    check_size(buf.len() as u64)?;
                    let len = buf.len() as u64;
                    client
                        .write_file(&sandbox, &path, Some(&mode), buf, len)
                        .await?
                }
            };
            if ctx.json() {
                output::print_json(&status)
            } else {
                println!("ok");
                Ok(())
            }
        }
        FileCommand::Ls { sandbox, path } => {
            let entries = client.list_dir(&sandbox, &path).await?;
            if ctx.json() {
                #[derive(serde::Serialize)]
                struct Entry<'a> {
                    name: &'a str,
                    size: u64,
                    is_dir: bool,
                    mode: &'a str,
                }
                let v: Vec<Entry<'_>> = entries
                    .iter()
                    .map(|e| Entry {
                        name: &e.name,
                        size: e.size,
                        is_dir: e.is_dir,
                        mode: &e.mode,
                    })
                    .collect();
                return output::print_json(&v);
            }
            print!("{}", ls_lines(&entries));
            Ok(())
        }
    }
}

/// `<d|-><mode> <size %8d> <name>` per entry.
pub fn ls_lines(entries: &[FileEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}{} {:>8} {}\n",
                if e.is_dir { 'd' } else { '-' },
                e.mode,
                e.size,
                e.name
            )
        })
        .collect()
}

fn check_size(len: u64) -> Result<()> {
    if len > MAX_FILE_WRITE_BYTES {
        bail!("file too large: more than {MAX_FILE_WRITE_BYTES} bytes (the limit is 100 MiB per write)");
    }
    Ok(())
}

/// Stdin as a file with its length, when it is a regular file.
fn stdin_file() -> Result<Option<(std::fs::File, u64)>> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let file = std::fs::File::from(fd);
    let md = file.metadata()?;
    let len = md.len();
    Ok(md.is_file().then_some((file, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_format() {
        let e = |name: &str, size, is_dir| FileEntry {
            name: name.into(),
            size,
            mode: if is_dir { "0755".into() } else { "0644".into() },
            is_dir,
            mtime: 0,
        };
        assert_eq!(
            ls_lines(&[e("src", 4096, true), e("app.js", 12, false)]),
            "d0755     4096 src\n-0644       12 app.js\n"
        );
    }
}
