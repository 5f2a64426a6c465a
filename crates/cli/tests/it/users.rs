//! `bhatti user …` on a temp data dir (DB-direct, no daemon).

use crate::harness::{json, stderr, stdout, Env};

fn is_key(s: &str) -> bool {
    s.len() == 68
        && s.starts_with("bht_")
        && s[4..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[test]
fn user_lifecycle_on_a_temp_data_dir() {
    let env = Env::new();
    let data = env.data_dir();
    let data = data.to_str().unwrap();

    // create (human output): the key once, with a quick start.
    let out = env
        .bhatti()
        .args(["user", "create", "--name", "alice", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let key_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("API key:"))
        .expect("API key line");
    let alice_key = key_line.split_whitespace().last().unwrap().to_string();
    assert!(is_key(&alice_key), "{alice_key}");
    assert!(text.contains("will not be shown again"));
    assert!(text.contains(&format!("export BHATTI_TOKEN={alice_key}")));
    assert!(text.contains("ID:       usr_"));

    // create --json: the user object plus api_key.
    let out = env
        .bhatti()
        .args([
            "user",
            "create",
            "--name",
            "bob",
            "--max-sandboxes",
            "2",
            "--max-cpus",
            "1",
        ])
        .args(["--max-memory", "512", "--json", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = json(&out);
    assert_eq!(bob["name"], "bob");
    assert_eq!(bob["max_sandboxes"], 2);
    assert_eq!(bob["max_cpus_per_sandbox"], 1);
    assert_eq!(bob["max_memory_mb_per_sandbox"], 512);
    assert_eq!(bob["subnet_index"], 2);
    assert!(is_key(bob["api_key"].as_str().unwrap()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"name\": \"bob\""));

    // Duplicate name → exit 1 with the reference message.
    let out = env
        .bhatti()
        .args(["user", "create", "--name", "alice", "--data-dir", data])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Error: user \"alice\" already exists"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    // list --json: full user objects, creation order.
    let out = env
        .bhatti()
        .args(["user", "list", "--json", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = json(&out);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let mut keys: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "id",
            "max_cpus_per_sandbox",
            "max_memory_mb_per_sandbox",
            "max_sandboxes",
            "name",
            "sandbox_count",
            "subnet_index"
        ]
    );
    assert_eq!(list[0]["name"], "alice");
    assert_eq!(list[0]["sandbox_count"], 0);
    assert!(list[0].get("api_key").is_none());

    // list table.
    let out = env
        .bhatti()
        .args(["user", "ls", "--data-dir", data])
        .output()
        .unwrap();
    let text = stdout(&out);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "NAME", "SANDBOXES", "CPUS", "MEM", "SUBNET"]);
    let alice_row = text.lines().find(|l| l.contains(" alice ")).unwrap();
    assert!(alice_row.contains("0/5"), "{alice_row}");
    assert!(alice_row.contains("4096MB"), "{alice_row}");

    // rotate-key: a new key, printed once.
    let out = env
        .bhatti()
        .args(["user", "rotate-key", "alice", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let new_key = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("New key: "))
        .expect("New key line")
        .to_string();
    assert!(is_key(&new_key));
    assert_ne!(new_key, alice_key);
    let out = env
        .bhatti()
        .args(["user", "rotate-key", "nobody", "--data-dir", data])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("user \"nobody\" not found"));

    // delete without -y and without a TTY does nothing.
    let out = env
        .bhatti()
        .args(["user", "delete", "bob", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stderr(&out).contains("Use --yes to confirm in non-interactive mode"));
    let out = env
        .bhatti()
        .args(["user", "list", "--json", "--data-dir", data])
        .output()
        .unwrap();
    assert_eq!(json(&out).as_array().unwrap().len(), 2);

    // delete -y.
    let out = env
        .bhatti()
        .args(["user", "delete", "bob", "-y", "--json", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out), serde_json::json!({"status": "deleted"}));
    let out = env
        .bhatti()
        .args(["user", "list", "--json", "--data-dir", data])
        .output()
        .unwrap();
    assert_eq!(json(&out).as_array().unwrap().len(), 1);
    let out = env
        .bhatti()
        .args(["user", "delete", "bob", "-y", "--data-dir", data])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"));
}

#[test]
fn user_data_dir_defaults_to_server_config() {
    let env = Env::new();
    std::fs::write(
        env.server_config(),
        format!("data_dir: {}\n", env.data_dir().display()),
    )
    .unwrap();
    env.bhatti()
        .args(["user", "create", "--name", "carol"])
        .assert()
        .success();
    assert!(env.data_dir().join("state.db").exists());
    let out = env
        .bhatti()
        .args(["user", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out)[0]["name"], "carol");
}

#[test]
fn invalid_user_input_is_rejected() {
    let env = Env::new();
    let data = env.data_dir();
    let out = env
        .bhatti()
        .args(["user", "create", "--name", "bad name", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid user name"));
    // Missing --name is a usage error: exit 1, not clap's 2.
    let out = env.bhatti().args(["user", "create"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--name"));
}
