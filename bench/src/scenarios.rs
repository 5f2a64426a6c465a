//! The scenarios and their floors.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bhatti_api::CreateSandboxRequest;

use crate::daemon::Daemon;
use crate::stats::{summarize, Summary};
use crate::Row;

/// Times `n` runs of `f` after `warmup` unmeasured ones.
async fn time_n<F, Fut>(warmup: usize, n: usize, mut f: F) -> Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for i in 0..warmup {
        f(i).await?;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(warmup + i).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

fn sync_n(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Summary> {
    let _ = f();
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed());
    }
    Ok(summarize(&v))
}

fn req(name: &str) -> CreateSandboxRequest {
    CreateSandboxRequest {
        name: Some(name.into()),
        image: Some("tiny".into()),
        memory_mb: Some(256),
        ..Default::default()
    }
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

/// Runs every scenario; those that cannot run yet are listed with the reason.
pub async fn run_all(
    d: &Daemon,
    quick: bool,
    rows: &mut Vec<Row>,
    figures: &mut Vec<(String, String)>,
    not_run: &mut Vec<(String, String)>,
) -> Result<()> {
    let (n_fast, n_slow) = if quick { (10, 3) } else { (100, 15) };
    let c = &d.client;

    // Floors.
    let fork_exec = sync_n(n_fast, || {
        Command::new("/bin/true").status()?;
        Ok(())
    })?;
    let tiny = d.images.join("tiny/rootfs");
    let bwrap = sync_n(n_slow.max(10), || {
        let st = Command::new("bwrap")
            .arg("--ro-bind")
            .arg(&tiny)
            .args([
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--unshare-all",
                "--die-with-parent",
                "/bin/true",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("bwrap (Debian package bubblewrap)")?;
        anyhow::ensure!(st.success(), "bwrap failed");
        Ok(())
    });
    let health = summarize(
        &time_n(5, n_fast, |_| async {
            c.health().await.map(|_| ()).map_err(Into::into)
        })
        .await?,
    );
    rows.push(Row {
        name: "loopback HTTP round trip (GET /health)".into(),
        bhatti: health.clone(),
        floor: None,
        original_p50: Some(0.43),
    });
    rows.push(Row {
        name: "host fork+exec of true".into(),
        bhatti: fork_exec.clone(),
        floor: None,
        original_p50: None,
    });

    // Create and destroy, one at a time.
    let mut creates = Vec::new();
    let mut destroys = Vec::new();
    for i in 0..n_slow + 1 {
        let name = format!("bench-{i}");
        let t = Instant::now();
        c.create_sandbox(&req(&name)).await.context("create")?;
        let created = t.elapsed();
        let t = Instant::now();
        c.destroy_sandbox(&name).await.context("destroy")?;
        let destroyed = t.elapsed();
        if i > 0 {
            creates.push(created);
            destroys.push(destroyed);
        }
    }
    let bwrap_floor = match bwrap {
        Ok(s) => Some(("bwrap run of true".to_string(), s)),
        Err(e) => {
            not_run.push(("floor: bwrap run of true".into(), e.to_string()));
            None
        }
    };
    rows.push(Row {
        name: "create (API, to lohar ready)".into(),
        bhatti: summarize(&creates),
        floor: bwrap_floor.clone(),
        original_p50: Some(265.7),
    });
    rows.push(Row {
        name: "destroy".into(),
        bhatti: summarize(&destroys),
        floor: bwrap_floor,
        original_p50: Some(87.4),
    });

    // Metadata reads against one sandbox.
    c.create_sandbox(&req("bench-meta")).await?;
    let list = summarize(
        &time_n(5, n_fast, |_| async {
            c.list_sandboxes(&[]).await.map(|_| ()).map_err(Into::into)
        })
        .await?,
    );
    let inspect = summarize(
        &time_n(5, n_fast, |_| async {
            c.get_sandbox("bench-meta")
                .await
                .map(|_| ())
                .map_err(Into::into)
        })
        .await?,
    );
    rows.push(Row {
        name: "list (API)".into(),
        bhatti: list,
        floor: Some(("GET /health".into(), health.clone())),
        original_p50: Some(11.0),
    });
    rows.push(Row {
        name: "inspect (API)".into(),
        bhatti: inspect,
        floor: Some(("GET /health".into(), health.clone())),
        original_p50: Some(10.7),
    });
    // The CLI process on top of the API.
    let cli = sync_n(n_slow.max(10), || {
        let st = Command::new(&d.bin)
            .args([
                "--url",
                &d.url,
                "--token",
                &d.token,
                "inspect",
                "bench-meta",
            ])
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "bhatti inspect failed");
        Ok(())
    })?;
    rows.push(Row {
        name: "inspect via the CLI process".into(),
        bhatti: cli,
        floor: Some(("host fork+exec of true".into(), fork_exec)),
        original_p50: Some(10.7),
    });
    c.destroy_sandbox("bench-meta").await?;

    // Concurrent creates: throughput.
    let burst = if quick { 5 } else { 50 };
    let t = Instant::now();
    let futs =
        (0..burst).map(|i| async move { c.create_sandbox(&req(&format!("burst-{i}"))).await });
    let results = futures_util::future::join_all(futs).await;
    let elapsed = t.elapsed();
    for r in &results {
        r.as_ref()
            .map_err(|e| anyhow::anyhow!("concurrent create: {e}"))?;
    }
    let per_sec = burst as f64 / elapsed.as_secs_f64();
    figures.push((
        format!("{burst} creates at once"),
        format!(
            "{per_sec:.1} sandboxes/s ({:.0} ms in all)",
            elapsed.as_secs_f64() * 1000.0
        ),
    ));

    // Idle host memory per sandbox (these sandboxes are idle now).
    let before_destroy = mem_available_kib();
    for i in 0..burst {
        c.destroy_sandbox(&format!("burst-{i}")).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_destroy = mem_available_kib();
    let per_sandbox_mib =
        after_destroy.saturating_sub(before_destroy) as f64 / 1024.0 / burst as f64;
    figures.push((
        format!("idle sandbox host memory (MemAvailable delta / {burst})"),
        format!("{per_sandbox_mib:.2} MiB per sandbox (target ≤ 3 MB)"),
    ));

    for (name, why) in [
        (
            "exec true/echo/cat via the API and the CLI, parallel execs",
            "exec API lands with issue 5",
        ),
        (
            "file write/read 1 KB–100 MB, ls",
            "file API lands with issue 5",
        ),
        (
            "NDJSON time-to-first-byte, shell round trip",
            "streaming exec and shell land with issue 5",
        ),
        (
            "proxy (authenticated, public), warm wake, stop/start",
            "issues 6 and 7",
        ),
    ] {
        not_run.push((name.into(), why.into()));
    }
    Ok(())
}
