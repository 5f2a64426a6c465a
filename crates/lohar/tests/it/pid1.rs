//! As root: lohar as PID 1 of a new PID/mount/UTS namespace, reached over TCP.

use std::process::{Command, Stdio};
use std::time::Duration;

use bhatti_engine::agent::AgentClient;
use bhatti_engine::AgentEndpoint;

use crate::harness::sh;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn refuses_to_run_outside_pid1_without_test_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_lohar"))
        .env_remove("LOHAR_TEST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not PID 1"));
}

#[tokio::test]
async fn pid1_in_namespaces_runs_commands_as_uid_1000() {
    if !is_root() {
        eprintln!("SKIP pid1 test: needs root");
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        serde_json::to_vec(&serde_json::json!({
            "hostname": "pid1-test",
            "token": "tok-1",
            "control_port": port,
            "forward_port": free_port(),
            "env": {"FROM_CFG": "yes"}
        }))
        .unwrap(),
    )
    .unwrap();
    let mut child = Command::new("unshare")
        .args(["--pid", "--mount", "--uts", "--fork", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_lohar"))
        .arg(&cfg)
        .env_remove("LOHAR_TEST")
        .env("LOHAR_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare");
    let client = AgentClient::new(AgentEndpoint::Tcp {
        control: ([127, 0, 0, 1], port).into(),
        forward: ([127, 0, 0, 1], 1).into(),
        token: Some("tok-1".into()),
    });
    let ready = client.wait_ready(Duration::from_secs(10)).await;
    let result = async {
        ready?;
        let id = client
            .exec(
                &sh("id -u; id -g; hostname; echo $FROM_CFG; echo $$"),
                None,
                None,
            )
            .await?;
        let sudo_free = client.exec(&sh("cat /proc/1/comm"), None, None).await?;
        Ok::<_, bhatti_engine::agent::AgentError>((id, sudo_free))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (id, comm) = result.expect("exec over TCP");
    let out = String::from_utf8(id.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "commands must run as uid 1000");
    assert_eq!(lines[1], "1000");
    assert_eq!(lines[2], "pid1-test");
    assert_eq!(lines[3], "yes");
    assert_eq!(String::from_utf8(comm.stdout).unwrap().trim(), "lohar");
    assert!(!cfg.exists(), "config must be deleted");
    // The host's hostname is untouched.
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "pid1-test"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
