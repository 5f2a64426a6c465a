//! The CLI against a live `bhatti serve` (loopback, temp data dir, engine unavailable).

use crate::harness::{json, mode, stderr, stdout, Env};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Admin's user id, via `user list --json`.
fn user_id(env: &Env, name: &str) -> String {
    let out = env
        .bhatti()
        .args(["user", "list", "--json", "--data-dir"])
        .arg(env.data_dir())
        .output()
        .unwrap();
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .expect("user")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn first_start_makes_the_cli_work_without_setup() {
    let env = Env::new();
    let d = env.start_daemon();
    // First start wrote the admin key where this CLI reads it (BHATTI_HOME), 0600.
    assert!(d.admin_key.starts_with("bht_"));
    assert_eq!(mode(&env.cli_config()), 0o600);

    // version: CLI version, endpoint, server version from the header.
    let out = env.bhatti().arg("version").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("bhatti v{VERSION}\napi: {}\nserver: v{VERSION}\n", d.url)
    );
    let out = env.bhatti().args(["version", "--json"]).output().unwrap();
    assert_eq!(
        json(&out),
        serde_json::json!({"version": format!("v{VERSION}"), "api": d.url, "server_version": format!("v{VERSION}")})
    );

    // list: empty.
    let out = env.bhatti().args(["list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "[]\n");
    let out = env.bhatti().arg("ls").output().unwrap();
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["NAME", "STATUS", "THERMAL", "IP"]
    );

    // create: the engine cannot run sandboxes yet; the error says so, on stderr, exit 1.
    let out = env
        .bhatti()
        .args(["create", "--name", "dev", "--cpus", "1", "--memory", "512"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("Error: "), "{err}");
    assert!(err.contains("engine none is unavailable"), "{err}");
    assert!(stdout(&out).is_empty());
    let out = env.bhatti().args(["ls", "--json"]).output().unwrap();
    assert_eq!(json(&out), serde_json::json!([]));

    // Invalid create input is rejected by the server with a 400 message.
    let out = env
        .bhatti()
        .args(["create", "--name", "bad name!"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error: Bad Request: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn secret_set_list_delete_round_trip() {
    let env = Env::new();
    let _d = env.start_daemon();

    // Value from stdin with `-` (one trailing newline dropped).
    let out = env
        .bhatti()
        .args(["secret", "set", "API_KEY", "-"])
        .write_stdin("sk-abc123\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ok\n");

    let out = env
        .bhatti()
        .args(["secret", "set", "OTHER", "value2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["name"], "OTHER");
    assert!(!stdout(&out).contains("value2"));

    let out = env.bhatti().args(["secret", "list"]).output().unwrap();
    let mut names: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["API_KEY", "OTHER"]);
    let out = env
        .bhatti()
        .args(["secret", "list", "--json"])
        .output()
        .unwrap();
    let list = json(&out);
    for item in list.as_array().unwrap() {
        assert_eq!(item.as_object().unwrap().len(), 1, "only names: {item}");
    }
    assert!(!stdout(&out).contains("sk-abc123"));

    // The data dir never holds the plaintext (stored encrypted).
    let mut db = std::fs::read(env.data_dir().join("state.db")).unwrap();
    if let Ok(wal) = std::fs::read(env.data_dir().join("state.db-wal")) {
        db.extend(wal);
    }
    assert!(!db.windows(9).any(|w| w == b"sk-abc123"));

    // delete without -y and without a TTY does nothing.
    let out = env
        .bhatti()
        .args(["secret", "delete", "API_KEY"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("Use --yes to confirm in non-interactive mode"));
    let out = env.bhatti().args(["secret", "list"]).output().unwrap();
    assert!(stdout(&out).contains("API_KEY"));

    let out = env
        .bhatti()
        .args(["secret", "delete", "API_KEY", "-y"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "deleted\n");
    let out = env
        .bhatti()
        .args(["secret", "rm", "OTHER", "--yes", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out), serde_json::json!({"status": "deleted"}));

    // Deleting again: 404, rendered with a hint.
    let out = env
        .bhatti()
        .args(["secret", "delete", "API_KEY", "-y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("Error: Not Found: "), "{err}");
    assert!(err.contains("bhatti secret list"), "{err}");

    let out = env
        .bhatti()
        .args(["secret", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out), serde_json::json!([]));
}

#[test]
fn setup_writes_the_config_and_tests_the_key() {
    let env = Env::new();
    let d = env.start_daemon();
    let other = env.dir.path().join("other-home");

    // Good key: exit 0, file 0600 in a 0700 dir, authenticated.
    let out = env
        .bhatti()
        .env("BHATTI_HOME", &other)
        .args([
            "setup",
            "--url",
            &format!("{}/", d.url),
            "--token",
            &d.admin_key,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("✓ authenticated (0 sandboxes)"),
        "{}",
        stdout(&out)
    );
    let file = other.join("config.yaml");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&other), 0o700);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("api_url: {}\nauth_token: {}\n", d.url, d.admin_key)
    );
    // The saved config just works.
    let mut ls = env.bhatti();
    ls.env("BHATTI_HOME", &other)
        .env("BHATTI_URL", "http://127.0.0.1:1");
    ls.args(["ls", "--json"]).assert().success();

    // --json shape.
    let out = env
        .bhatti()
        .env("BHATTI_HOME", &other)
        .args(["setup", "--url", &d.url, "--token", &d.admin_key, "--json"])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["authenticated"], true);
    assert_eq!(v["sandboxes"], 0);
    assert_eq!(v["api_url"], d.url.as_str());

    // Bad key: exit 1, the failure on stderr.
    let out = env
        .bhatti()
        .env("BHATTI_HOME", &other)
        .args(["setup", "--url", &d.url, "--token", "bht_wrong"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("✗ Unauthorized: invalid api key"), "{err}");
}

#[test]
fn config_precedence_end_to_end() {
    let env = Env::new();
    let d = env.start_daemon();
    let dead = "http://127.0.0.1:1";

    // The file (written at first start) beats BHATTI_URL / BHATTI_TOKEN.
    env.bhatti()
        .env("BHATTI_URL", dead)
        .env("BHATTI_TOKEN", "bht_wrong")
        .args(["ls"])
        .assert()
        .success();
    // Flags beat the file.
    let out = env.bhatti().args(["ls", "--url", dead]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot reach http://127.0.0.1:1"));
    let out = env
        .bhatti()
        .args(["ls", "--token", "bht_wrong"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Error: Unauthorized: invalid api key"));
    // With no file, the environment is used.
    let empty = env.dir.path().join("empty-home");
    env.bhatti()
        .env("BHATTI_HOME", &empty)
        .env("BHATTI_URL", &d.url)
        .env("BHATTI_TOKEN", &d.admin_key)
        .args(["ls"])
        .assert()
        .success();
    // With nothing, no token is sent: the server asks for one.
    let out = env
        .bhatti()
        .env("BHATTI_HOME", &empty)
        .args(["ls", "--url", &d.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error: Unauthorized: authorization required"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn list_inspect_destroy_on_a_record() {
    let env = Env::new();
    let _d = env.start_daemon();
    let admin = user_id(&env, "admin");
    env.insert_sandbox(&admin, "web", "0123456789abcdef");

    // list --json: the reduced struct only.
    let out = env.bhatti().args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json(&out);
    let item = &list.as_array().unwrap()[0];
    let allowed = [
        "id",
        "name",
        "status",
        "thermal",
        "ip",
        "urls",
        "cpus",
        "memory_mb",
        "disk_size_mb",
        "image",
        "labels",
    ];
    for key in item.as_object().unwrap().keys() {
        assert!(allowed.contains(&key.as_str()), "unexpected key {key}");
    }
    for key in [
        "id",
        "name",
        "status",
        "ip",
        "cpus",
        "memory_mb",
        "disk_size_mb",
        "image",
    ] {
        assert!(item.get(key).is_some(), "missing {key}");
    }
    assert_eq!(item["name"], "web");
    assert_eq!(item["id"], "0123456789abcdef");
    assert_eq!(item["labels"], serde_json::json!({"team": "a"}));

    // Tables, label filters.
    let out = env.bhatti().args(["ls"]).output().unwrap();
    assert!(stdout(&out).lines().nth(1).unwrap().starts_with("web "));
    let out = env
        .bhatti()
        .args(["ls", "--label", "team=a"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).lines().count(), 2);
    let out = env
        .bhatti()
        .args(["ls", "--label", "team=b", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out), serde_json::json!([]));
    let out = env.bhatti().args(["ls", "-o", "wide"]).output().unwrap();
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().contains("LABELS"));
    assert!(text.lines().nth(1).unwrap().contains("team=a"));

    // inspect by name and by id.
    let out = env.bhatti().args(["inspect", "web"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("Name:     web\nID:       0123456789abcdef\n"),
        "{text}"
    );
    assert!(
        text.contains("\nResources:\n  CPUs:    2\n  Memory:  512 MB\n"),
        "{text}"
    );
    let out = env
        .bhatti()
        .args(["info", "0123456789abcdef", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out)["name"], "web");

    // destroy without -y and without a TTY does nothing.
    let out = env.bhatti().args(["destroy", "web"]).output().unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("Use --yes to confirm in non-interactive mode"));
    let out = env.bhatti().args(["ls", "--json"]).output().unwrap();
    assert_eq!(json(&out).as_array().unwrap().len(), 1);

    // destroy -y.
    let out = env.bhatti().args(["rm", "web", "-y"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sandbox/web destroyed\n");
    let out = env.bhatti().args(["ls", "--json"]).output().unwrap();
    assert_eq!(json(&out), serde_json::json!([]));

    // Gone: 404 with the `bhatti ls` hint.
    let out = env.bhatti().args(["inspect", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("Error: Not Found: "), "{err}");
    assert!(err.contains("bhatti ls"), "{err}");
}

#[test]
fn user_delete_is_refused_while_the_user_has_secrets_or_sandboxes() {
    let env = Env::new();
    let _d = env.start_daemon();
    let data = env.data_dir();
    let out = env
        .bhatti()
        .args(["user", "create", "--name", "alice", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let alice = json(&out);
    let key = alice["api_key"].as_str().unwrap().to_string();

    env.bhatti()
        .args(["secret", "set", "TOKEN", "v", "--token", &key])
        .assert()
        .success();
    let out = env
        .bhatti()
        .args(["user", "delete", "alice", "-y", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("secrets"), "{}", stderr(&out));

    // Secrets are per user: admin does not see alice's.
    let out = env.bhatti().args(["secret", "list"]).output().unwrap();
    assert!(stdout(&out).is_empty());

    env.bhatti()
        .args(["secret", "delete", "TOKEN", "-y", "--token", &key])
        .assert()
        .success();

    // A sandbox blocks deletion too.
    env.insert_sandbox(alice["id"].as_str().unwrap(), "box", "00000000000000aa");
    let out = env
        .bhatti()
        .args(["user", "delete", "alice", "-y", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("sandboxes"), "{}", stderr(&out));
    env.bhatti()
        .args(["destroy", "box", "-y", "--token", &key])
        .assert()
        .success();

    // Rotation kills the old key at once.
    let out = env
        .bhatti()
        .args(["user", "rotate-key", "alice", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let new_key = json(&out)["api_key"].as_str().unwrap().to_string();
    let out = env.bhatti().args(["ls", "--token", &key]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid api key"));
    env.bhatti()
        .args(["ls", "--token", &new_key])
        .assert()
        .success();

    env.bhatti()
        .args(["user", "delete", "alice", "-y", "--data-dir"])
        .arg(&data)
        .assert()
        .success();
}

#[test]
fn server_asking_for_a_newer_cli_warns_once() {
    let env = Env::new();
    let _d = env.start_daemon_with("min_cli_version: 99.0.0\n");
    let out = env.bhatti().args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("99.0.0 or newer").count(), 1, "{err}");
    assert_eq!(json(&out), serde_json::json!([]));

    // --timing goes to stderr, stdout stays clean JSON.
    let out = env
        .bhatti()
        .args(["ls", "--json", "--timing"])
        .output()
        .unwrap();
    assert_eq!(json(&out), serde_json::json!([]));
    let err = stderr(&out);
    assert!(err.contains("---\nserver:"), "{err}");
    assert!(err.contains("\ntotal:"), "{err}");
}
