//! Talking to the person at the terminal: confirmations, prompts, masked input.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{Context, Result};

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Confirmation for destructive commands (reference §1.1):
/// `--yes` → proceed; stdin a TTY → ask `<msg> [y/N]: ` on stderr, only `y`/`Y` proceeds;
/// otherwise print `Use --yes to confirm in non-interactive mode` and do nothing.
pub fn confirm(msg: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !stdin_is_tty() {
        eprintln!("Use --yes to confirm in non-interactive mode");
        return Ok(false);
    }
    eprint!("{msg} [y/N]: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let ok = matches!(answer.trim(), "y" | "Y");
    if !ok {
        eprintln!("Cancelled.");
    }
    Ok(ok)
}

/// Reads a line from the terminal after printing `prompt` on stderr; trimmed.
pub fn line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut s = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut s)
        .context("read from terminal")?;
    Ok(s.trim().to_string())
}

/// Reads a secret without echo.
pub fn masked(prompt: &str) -> Result<String> {
    rpassword::prompt_password(prompt).context("read from terminal")
}

/// Reads all of stdin as UTF-8, dropping one trailing newline (`echo v | …` gives `v`).
pub fn stdin_value() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("read stdin")?;
    Ok(strip_one_newline(s))
}

/// Drops one trailing `\n` or `\r\n`.
pub fn strip_one_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_newline_dropped() {
        assert_eq!(strip_one_newline("v\n".into()), "v");
        assert_eq!(strip_one_newline("v\r\n".into()), "v");
        assert_eq!(strip_one_newline("v\n\n".into()), "v\n");
        assert_eq!(strip_one_newline("v".into()), "v");
    }
}
