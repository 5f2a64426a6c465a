//! The shareable web shell through the real daemon: `bhatti share`, the page and its headers,
//! token authentication on the WebSocket, the per-sandbox cap, revoke ending live shells, and a
//! real headless Chromium typing into the xterm.js page.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::require_e2e;

const CLIENT: &str = include_str!("webshell_client.py");

/// `(sandbox id, token)` from `Shell: http://…/_shell/<id>#token=<token>`.
fn parse_share(out: &str) -> (String, String) {
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("Shell: "))
        .unwrap_or_else(|| panic!("no link in {out:?}"))
        .trim();
    let (path, token) = url.split_once("#token=").expect("token in the fragment");
    let id = path.rsplit('/').next().unwrap().to_string();
    assert_eq!(token.len(), 64, "{url}");
    assert!(
        url.starts_with("http://127.0.0.1:18080/_shell/"),
        "link on the API address: {url}"
    );
    (id, token.to_string())
}

fn client(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["-c", CLIENT];
    a.extend_from_slice(args);
    let o = d.in_netns("python3", &a);
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A client kept running in the background (inside the daemon's namespace).
fn spawn_client(d: &Daemon, args: &[&str]) -> std::process::Child {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", d.netns_pid()))
        .args(["python3", "-c", CLIENT])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn client")
}

fn first_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

fn session_count(d: &Daemon, name: &str) -> usize {
    let v: Vec<serde_json::Value> = serde_json::from_str(&d.ok(&["--json", "ps", name])).unwrap();
    v.iter().filter(|s| s["running"] == true).count()
}

#[test]
fn share_page_auth_cap_and_revoke() {
    require_e2e!();
    let d = Daemon::start();
    d.ok(&[
        "create", "--name", "web", "--image", "minimal", "--memory", "256",
    ]);
    let (id, token) = parse_share(&d.ok(&["share", "web"]));
    let ws = format!("ws://127.0.0.1:18080/_shell/{id}/ws");

    // The page: no key needed, strict headers, xterm.js inline, a fresh nonce per request.
    let page = |extra: &str| {
        let o = d.in_netns(
            "curl",
            &["-s", "-i", &format!("{}/_shell/{id}{extra}", d.url())],
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let p1 = page("");
    let head = p1.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    for h in [
        "content-security-policy: default-src 'none'; script-src 'nonce-",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
        "cache-control: no-store",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(h), "missing {h:?} in {head}");
    }
    assert!(
        p1.contains("FitAddon") && p1.len() > 200_000,
        "xterm.js embedded"
    );
    let nonce = |p: &str| {
        p.split("'nonce-")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(nonce(&p1), nonce(&page("")));

    // The right token runs a command; wrong tokens and unknown sandboxes look the same.
    assert!(client(&d, &["shell", &ws, &token]).contains("OK"));
    let unauthorized = r#""error": "unauthorized""#;
    assert!(client(&d, &["hold", &ws, &"0".repeat(64)]).contains(unauthorized));
    let other = format!("ws://127.0.0.1:18080/_shell/{}/ws", "f".repeat(16));
    assert!(client(&d, &["hold", &other, &token]).contains(unauthorized));
    // The API itself still needs a key under /_shell's neighbour paths.
    let o = d.in_netns(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/_shell/../sandboxes", d.url()),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "401");

    // At most 5 at once; the sixth is refused.
    let mut holders: Vec<_> = (0..5)
        .map(|_| spawn_client(&d, &["hold", &ws, &token]))
        .collect();
    for h in holders.iter_mut() {
        let l = first_line(h);
        assert!(l.contains("\"connected\"") && l.contains("\"web\""), "{l}");
    }
    assert!(
        client(&d, &["hold", &ws, &token]).contains(r#""error": "too many sessions""#),
        "sixth web shell"
    );
    assert_eq!(session_count(&d, "web"), 5);

    // Revoke ends every live web shell, their shells included, and the token stops working.
    assert_eq!(
        d.ok(&["share", "web", "--revoke"]).trim(),
        "Shell access revoked."
    );
    for h in holders.iter_mut() {
        let l = first_line(h);
        assert_eq!(l, "CLOSE 1008");
        h.wait().unwrap();
    }
    let t0 = Instant::now();
    while session_count(&d, "web") > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "web shells left running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(client(&d, &["hold", &ws, &token]).contains(unauthorized));

    // A new link works and replaces the previous one.
    let (_, t1) = parse_share(&d.ok(&["share", "web"]));
    let (_, t2) = parse_share(&d.ok(&["share", "web"]));
    assert!(client(&d, &["hold", &ws, &t1]).contains(unauthorized));
    assert!(client(&d, &["shell", &ws, &t2]).contains("OK"));

    // Another user can neither share nor revoke this sandbox.
    let key = d.create_user("mallory");
    for method in ["POST", "DELETE"] {
        let o = d.in_netns(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
                "-H",
                &format!("Authorization: Bearer {key}"),
                &format!("{}/sandboxes/{id}/shell-token", d.url()),
            ],
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "404", "{method}");
    }
    assert!(
        client(&d, &["shell", &ws, &t2]).contains("OK"),
        "still shared"
    );

    d.ok(&["destroy", "web", "-y"]);
    assert!(client(&d, &["hold", &ws, &t2]).contains(unauthorized));
}

#[test]
fn web_shell_in_chromium() {
    require_e2e!();
    let d = Daemon::start();
    d.ok(&[
        "create", "--name", "br", "--image", "minimal", "--memory", "256",
    ]);
    let out = d.ok(&["share", "br"]);
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("Shell: "))
        .unwrap()
        .trim()
        .to_string();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("webshell-chromium.png");
    let _ = std::fs::remove_file(&shot);
    let mut b = spawn_client(&d, &["browser", &url, shot.to_str().unwrap()]);
    let mut lines = BufReader::new(b.stdout.take().unwrap()).lines();
    let mut next = || lines.next().map(|l| l.unwrap()).unwrap_or_default();
    let location = next();
    assert!(
        location.starts_with("LOCATION http://127.0.0.1:18080/_shell/"),
        "{location}"
    );
    assert!(
        !location.contains("token"),
        "the page removes the token from the address bar: {location}"
    );
    assert_eq!(
        next(),
        "READY",
        "the command's output appeared in the browser terminal"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "screenshot at {}",
        shot.display()
    );
    eprintln!("web shell screenshot: {}", shot.display());
    d.ok(&["share", "br", "--revoke"]);
    assert_eq!(next(), "REVOKED", "revoke disconnected the browser");
    assert!(b.wait().unwrap().success());
}
