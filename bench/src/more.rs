//! Scenarios over the shell, stop/start, the proxies and many idle sandboxes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bhatti_client::ShellEvent;

use crate::daemon::{Daemon, PUBLIC_PORT};
use crate::scenarios::{cmd, req};
use crate::stats::summarize;
use crate::Row;

/// Keystroke → echo on a TTY shell over the WebSocket.
pub async fn shell_round_trip(d: &Daemon, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    let c = &d.client;
    c.create_sandbox(&req("bench-shell")).await?;
    let (_sid, mut wr, mut rd) = c.shell("bench-shell", None, true).await?;
    // Let the prompt settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut samples = Vec::new();
    for i in 0..(if quick { 5 } else { 100 }) {
        let key = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        wr.input(&key).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rd.next()).await {
                Ok(Ok(Some(ShellEvent::Output(b)))) if b.contains(&key[0]) => break,
                Ok(Ok(Some(_))) => continue,
                other => anyhow::bail!("shell: no echo ({other:?})"),
            }
        }
        samples.push(t.elapsed());
    }
    wr.close().await;
    let mut health = Vec::new();
    for _ in 0..samples.len() {
        let t = Instant::now();
        c.health().await?;
        health.push(t.elapsed());
    }
    rows.push(Row {
        name: "shell keystroke → echo".into(),
        bhatti: summarize(&samples),
        floor: Some(("GET /health".into(), summarize(&health))),
        original_p50: None,
    });
    c.destroy_sandbox("bench-shell").await?;
    Ok(())
}

/// stop (processes and memory released) and start (back over the kept filesystem).
pub async fn stop_start(d: &Daemon, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    let c = &d.client;
    c.create_sandbox(&req("bench-ss")).await?;
    let (mut stops, mut starts) = (Vec::new(), Vec::new());
    for _ in 0..(if quick { 2 } else { 15 }) {
        let t = Instant::now();
        c.stop_sandbox("bench-ss").await?;
        stops.push(t.elapsed());
        let t = Instant::now();
        c.start_sandbox("bench-ss").await?;
        starts.push(t.elapsed());
        anyhow::ensure!(c.exec("bench-ss", &cmd(&["true"])).await?.exit_code == 0);
    }
    let bwrap = Some((
        "bwrap run of true".to_string(),
        crate::scenarios::bwrap_floor(d, 10)?,
    ));
    rows.push(Row {
        name: "stop".into(),
        bhatti: summarize(&stops),
        floor: bwrap.clone(),
        original_p50: Some(484.8),
    });
    rows.push(Row {
        name: "start (to lohar ready)".into(),
        bhatti: summarize(&starts),
        floor: bwrap,
        original_p50: Some(58.7),
    });
    c.destroy_sandbox("bench-ss").await?;
    Ok(())
}

async fn get_ok(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<()> {
    let mut r = http.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.bytes().await?;
    Ok(())
}

/// One HTTP request through the authenticated and the public proxy to a server in the
/// sandbox, hot and after the sandbox went warm (the request wakes it).
pub async fn proxies(d: &Daemon, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    let c = &d.client;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let warm_req = bhatti_api::CreateSandboxRequest {
        keep_hot: None,
        ..req("bench-web")
    };
    let ip = c.create_sandbox(&warm_req).await?.0.ip;
    let serve = bhatti_api::ExecRequest {
        detach: true,
        ..cmd(&[
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ])
    };
    c.exec("bench-web", &serve).await?;
    let rule = c.publish("bench-web", 8080, Some("bench-web")).await?;
    let authed = format!("{}/sandboxes/bench-web/proxy/8080/index.html", d.url);
    let public = format!("http://127.0.0.1:{PUBLIC_PORT}/{}/index.html", rule.alias);
    // The floor: the same request straight to the sandbox's IP (host → sandbox is allowed).
    let direct = format!("http://{ip}:8080/index.html");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_ok(&http, &authed, Some(&d.token)).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "httpd in the sandbox did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = if quick { 5 } else { 100 };
    let time = |url: String, token: Option<String>| {
        let http = http.clone();
        async move {
            let mut v = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                get_ok(&http, &url, token.as_deref()).await?;
                v.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(summarize(&v))
        }
    };
    let floor = Some((
        "GET straight to the sandbox IP".to_string(),
        time(direct.clone(), None).await?,
    ));
    for (name, url, token) in [
        (
            "authenticated proxy GET (hot)",
            &authed,
            Some(d.token.clone()),
        ),
        ("public proxy GET (hot)", &public, None),
    ] {
        rows.push(Row {
            name: name.into(),
            bhatti: time(url.clone(), token).await?,
            floor: floor.clone(),
            original_p50: Some(2.2),
        });
    }
    // Warm target: wait until the idle timer froze it; then one request wakes it.
    for (name, url, token) in [
        (
            "authenticated proxy GET (warm target, wakes it)",
            &authed,
            Some(d.token.as_str()),
        ),
        ("public proxy GET (warm target, wakes it)", &public, None),
    ] {
        let mut v = Vec::new();
        for _ in 0..(if quick { 2 } else { 10 }) {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let list = c.list_sandboxes(&[]).await?;
                if list
                    .iter()
                    .any(|s| s.name == "bench-web" && s.thermal.as_deref() == Some("warm"))
                {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "bench-web never went warm");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let t = Instant::now();
            get_ok(&http, url, token).await?;
            v.push(t.elapsed());
        }
        rows.push(Row {
            name: name.into(),
            bhatti: summarize(&v),
            floor: floor.clone(),
            original_p50: Some(3.7),
        });
    }
    c.destroy_sandbox("bench-web").await?;
    Ok(())
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Host memory per idle sandbox: MemAvailable before and after N sandboxes exist.
pub async fn idle_memory(
    d: &Daemon,
    quick: bool,
    figures: &mut Vec<(String, String)>,
) -> Result<()> {
    let c = &d.client;
    let n = if quick { 5 } else { 100 };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = mem_available_kib();
    for i in 0..n {
        c.create_sandbox(&req(&format!("idle-{i}"))).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = mem_available_kib();
    for i in 0..n {
        c.destroy_sandbox(&format!("idle-{i}")).await?;
    }
    let per = before.saturating_sub(after) as f64 / 1024.0 / n as f64;
    figures.push((
        format!("idle sandbox host memory (MemAvailable delta / {n})"),
        format!("{per:.2} MiB per sandbox (target ≤ 3 MB)"),
    ));
    Ok(())
}
