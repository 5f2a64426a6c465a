//! Commands that need no daemon: help, usage errors, completion, config precedence failures.

use crate::harness::{stderr, stdout, Env};

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let env = Env::new();
    let out = env.bhatti().args(["destroy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("<SANDBOX>"), "{}", stderr(&out));
    let out = env.bhatti().args(["--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("create"));
    let out = env.bhatti().args(["nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // Bare `bhatti` and `bhatti secret` show help and succeed.
    for args in [&[][..], &["secret"][..]] {
        let out = env.bhatti().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr(&out).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn completion_scripts() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.bhatti().args(["completion", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = stdout(&out);
        assert!(
            text.contains("bhatti") && text.contains("secret"),
            "{shell}"
        );
    }
}

#[test]
fn unreachable_daemon_is_a_clear_error() {
    let env = Env::new();
    // A port nothing listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = env
        .bhatti()
        .args(["ls", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: cannot reach http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("bhatti serve"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn setup_without_a_terminal_needs_both_flags() {
    let env = Env::new();
    let out = env
        .bhatti()
        .args(["setup", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--token"));
    assert!(!env.cli_config().exists());
    // A non-http endpoint is refused before anything is written.
    let out = env
        .bhatti()
        .args(["setup", "--url", "localhost:8080", "--token", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!env.cli_config().exists());
}

#[test]
fn version_without_a_daemon_still_prints_the_cli_version() {
    let env = Env::new();
    let out = env
        .bhatti()
        .args(["version", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!(
            "bhatti v{}\napi: http://127.0.0.1:1\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}
