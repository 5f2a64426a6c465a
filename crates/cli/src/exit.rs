//! Errors → what the user sees on stderr, and the process exit code.
//!
//! Every failed command prints `Error: <message>` on stderr and exits 1. API errors render as
//! `<HTTP status text>: <server message>` and may be followed by recovery hints chosen from the
//! message (as the original CLI does). A command that wants a specific exit code without an
//! error message (e.g. `exec` forwarding the remote exit code) returns [`Exit`].

use std::fmt;

use bhatti_client::ClientError;

/// Exit code for any failure.
pub const FAILURE: i32 = 1;

/// A silent exit with a given code (nothing more is printed).
#[derive(Debug)]
pub struct Exit(pub i32);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// What to print for an error and which code to exit with.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Full stderr text (`Error: …` plus hint lines), or empty for a silent exit.
    pub text: String,
    pub code: i32,
}

/// Renders an error for stderr and picks the exit code.
pub fn report(err: &anyhow::Error) -> Report {
    if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
        return Report {
            text: String::new(),
            code: *code,
        };
    }
    let mut text = format!("Error: {}", render(err));
    for hint in hints(err) {
        text.push('\n');
        text.push_str(&hint);
    }
    Report {
        text,
        code: FAILURE,
    }
}

/// The error message: the outermost context, then causes the outer message does not already
/// include (`a: b: c`). A client error's own message is complete, so the chain stops there.
fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let c = cause.to_string();
        if out.is_empty() {
            out = c;
        } else if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
        if cause.downcast_ref::<ClientError>().is_some() {
            break;
        }
    }
    out
}

/// Recovery hints for an error, by its kind and message.
pub fn hints(err: &anyhow::Error) -> Vec<String> {
    let Some(client_err) = err.chain().find_map(|c| c.downcast_ref::<ClientError>()) else {
        return local_hints(err);
    };
    match client_err {
        ClientError::Api {
            status,
            message,
            request_id,
        } => {
            let mut out = api_hints(*status, message);
            if let Some(id) = request_id {
                out.push(format!(
                    "  The server logged the cause under request id {id}."
                ));
            }
            out
        }
        ClientError::Transport { .. } => vec![
            "  Is the daemon running (`bhatti serve`)? Check the endpoint with `bhatti version`,"
                .into(),
            "  or set it with `bhatti setup` / --url.".into(),
        ],
        ClientError::InvalidUrl { .. } => {
            vec!["  Set the endpoint with `bhatti setup` or --url http://host:port.".into()]
        }
        ClientError::Decode { .. } => {
            vec!["  Is the URL a bhatti daemon? Check it with `bhatti version`.".into()]
        }
        ClientError::WebSocket { .. } => Vec::new(),
    }
}

/// Hints for errors that did not come from the API (database, files).
fn local_hints(err: &anyhow::Error) -> Vec<String> {
    let text = err
        .chain()
        .map(|c| c.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join(": ");
    let mut out = Vec::new();
    if text.contains("permission denied") || text.contains("unable to open database") {
        out.push("  The data directory belongs to root: run with sudo, or pass --data-dir.".into());
    }
    if text.contains("user \"") && text.contains("not found") {
        out.push("  See users with: bhatti user list".into());
    }
    out
}

/// Hints chosen by substring of the server's message.
pub fn api_hints(status: u16, message: &str) -> Vec<String> {
    let m = message.to_lowercase();
    let mut out = Vec::new();
    if status == 401 || m.contains("authorization required") || m.contains("invalid api key") {
        out.push(
            "  Check your API key: run `bhatti setup`, or pass --token / set BHATTI_TOKEN.".into(),
        );
    }
    if m.contains("not running") {
        out.push("  Start it with: bhatti start <sandbox>".into());
    }
    if m.contains("use 'bhatti start --force'") {
        out.push("  Retry with: bhatti start --force <sandbox>".into());
    }
    if m.contains("not found") {
        if m.contains("secret") {
            out.push("  See your secrets with: bhatti secret list".into());
        } else if m.contains("user") {
            out.push("  See users with: bhatti user list".into());
        } else if m.contains("image") {
            out.push("  See images with: bhatti image list".into());
        } else {
            out.push("  See your sandboxes with: bhatti ls".into());
        }
    }
    if m.contains("already exists") || m.contains("already in use") {
        out.push("  Use another name, or destroy the existing one first.".into());
    }
    if m.contains("limit") || m.contains("max sandbox") {
        if m.contains("rate limit") {
            out.push("  Too many requests: wait a moment and retry.".into());
        } else {
            out.push(
                "  Destroy sandboxes you no longer need: bhatti ls, then bhatti destroy <name>"
                    .into(),
            );
        }
    }
    if m.contains("engine") && (m.contains("unavailable") || m.contains("not built")) {
        out.push(
            "  The daemon cannot run sandboxes on this host yet; see its log for details.".into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn api(status: u16, msg: &str) -> anyhow::Error {
        ClientError::Api {
            status,
            message: msg.into(),
            request_id: None,
        }
        .into()
    }

    #[test]
    fn api_error_rendering() {
        let r = report(&api(404, "not found"));
        assert_eq!(r.code, 1);
        assert_eq!(
            r.text,
            "Error: Not Found: not found\n  See your sandboxes with: bhatti ls"
        );
    }

    #[test]
    fn hints_by_message() {
        assert!(api_hints(500, "sandbox is not running")[0].contains("bhatti start"));
        assert!(api_hints(409, "sandbox \"x\" already exists")[0].contains("another name"));
        assert!(api_hints(429, "sandbox limit reached (5/5)")[0].contains("bhatti destroy"));
        assert!(api_hints(429, "rate limit exceeded")[0].contains("retry"));
        assert!(api_hints(401, "invalid api key")[0].contains("bhatti setup"));
        assert!(api_hints(404, "secret \"X\" not found")[0].contains("secret list"));
        assert!(api_hints(400, "invalid name").is_empty());
    }

    #[test]
    fn request_id_is_shown() {
        let e: anyhow::Error = ClientError::Api {
            status: 500,
            message: "internal error".into(),
            request_id: Some("req_0123456789abcdef".into()),
        }
        .into();
        let r = report(&e);
        assert!(r
            .text
            .starts_with("Error: Internal Server Error: internal error"));
        assert!(r.text.contains("req_0123456789abcdef"));
    }

    #[test]
    fn context_chain_is_rendered_once() {
        let e = Err::<(), _>(std::io::Error::other("disk full"))
            .context("write /x")
            .unwrap_err();
        assert_eq!(report(&e).text, "Error: write /x: disk full");
    }

    #[test]
    fn local_error_hints() {
        let e = anyhow::anyhow!("user \"bob\" not found");
        assert_eq!(
            report(&e).text,
            "Error: user \"bob\" not found\n  See users with: bhatti user list"
        );
        let e = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            .context("open /var/lib/bhatti/state.db")
            .unwrap_err();
        assert!(report(&e).text.contains("sudo"));
    }

    #[test]
    fn silent_exit_code() {
        let e: anyhow::Error = Exit(42).into();
        assert_eq!(
            report(&e),
            Report {
                text: String::new(),
                code: 42
            }
        );
    }
}
