//! `bhatti shell` driven through tmux: type, resize, Ctrl+\ detach, reattach with scrollback.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Daemon, Tmux, BHATTI};
use crate::require_e2e;

#[test]
fn shell_detach_reattach_resize_in_tmux() {
    require_e2e!();
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIP: tmux not installed");
        return;
    }
    let mut d = Daemon::start();
    d.ok(&[
        "create", "--name", "dev", "--image", "tiny", "--memory", "256",
    ]);
    let dir = d.dir.path().display().to_string();
    let shell_cmd = |tag: &str| {
        format!(
            "stty -g > {dir}/{tag}.before; env BHATTI_URL={url} BHATTI_TOKEN={tok} HOME={dir}/nohome nsenter --net=/proc/{pid}/ns/net {bin} shell dev; echo BHATTI-EXIT-$?; stty -g > {dir}/{tag}.after; sleep 600",
            url = d.url(),
            tok = d.token,
            pid = d.netns_pid(),
            bin = BHATTI,
        )
    };
    let t = Tmux::new(
        format!("bhatti-e2e-{}", std::process::id()),
        Duration::from_secs(20),
    );
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "a",
        "-x",
        "100",
        "-y",
        "30",
        &shell_cmd("a"),
    ]);
    t.run(&[
        "send-keys",
        "-t",
        "a",
        "echo hello-$((40+2)); stty size",
        "Enter",
    ]);
    t.wait_for("a", "hello-42");
    t.wait_for("a", "30 100");
    // Resize reaches the PTY.
    t.run(&["resize-window", "-t", "a", "-x", "90", "-y", "25"]);
    std::thread::sleep(Duration::from_millis(300));
    t.run(&["send-keys", "-t", "a", "stty size", "Enter"]);
    t.wait_for("a", "25 90");
    // Ctrl+\ detaches; the shell keeps running, unattached; the terminal is restored.
    t.run(&["send-keys", "-t", "a", "C-\\"]);
    let screen = t.wait_for("a", "BHATTI-EXIT-0");
    assert!(screen.contains("detached"), "{screen}");
    let before = std::fs::read_to_string(format!("{dir}/a.before")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::path::Path::new(&format!("{dir}/a.after")).exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = std::fs::read_to_string(format!("{dir}/a.after")).unwrap();
    assert_eq!(before, after, "terminal settings not restored");
    let v: Vec<serde_json::Value> = serde_json::from_str(&d.ok(&["--json", "ps", "dev"])).unwrap();
    let s = v
        .iter()
        .find(|s| s["session_id"] != "init")
        .expect("shell session");
    assert_eq!(s["running"], true, "{v:?}");
    assert_eq!(s["attached"], false, "{v:?}");

    // Reattach: the scrollback comes back and the same shell answers.
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "b",
        "-x",
        "100",
        "-y",
        "30",
        &shell_cmd("b"),
    ]);
    t.wait_for("b", "hello-42");
    t.run(&["send-keys", "-t", "b", "echo again-$((1+1))", "Enter"]);
    t.wait_for("b", "again-2");
    // Exiting the shell ends the CLI silently with 0.
    t.run(&["send-keys", "-t", "b", "exit", "Enter"]);
    let screen = t.wait_for("b", "BHATTI-EXIT-0");
    assert!(!screen.contains("connection lost"), "{screen}");

    // A lost connection says so, tells how to reconnect, and restores the terminal.
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "c",
        "-x",
        "100",
        "-y",
        "30",
        &shell_cmd("c"),
    ]);
    t.run(&["send-keys", "-t", "c", "echo ready-$((2+3))", "Enter"]);
    t.wait_for("c", "ready-5");
    d.kill9();
    let screen = t.wait_for("c", "BHATTI-EXIT-0");
    assert!(screen.contains("connection lost (session s"), "{screen}");
    assert!(screen.contains("reconnect: bhatti shell dev"), "{screen}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::path::Path::new(&format!("{dir}/c.after")).exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/c.before")).unwrap(),
        std::fs::read_to_string(format!("{dir}/c.after")).unwrap(),
        "terminal settings not restored after a lost connection"
    );
}
