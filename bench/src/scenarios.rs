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

/// A bench sandbox. Kept hot: the daemon runs with a short idle timer for the warm-wake
/// scenario, which must not cool the sandboxes other scenarios measure.
pub fn req(name: &str) -> CreateSandboxRequest {
    CreateSandboxRequest {
        name: Some(name.into()),
        image: Some("tiny".into()),
        memory_mb: Some(256),
        keep_hot: Some(true),
        ..Default::default()
    }
}

/// The create floor: a bubblewrap run of `true` on the same image.
pub fn bwrap_floor(d: &Daemon, n: usize) -> Result<Summary> {
    let tiny = d.images.join("tiny/rootfs");
    sync_n(n, || {
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
    })
}

/// `n` host fork+execs of `true` at once, until all finished.
fn parallel_fork_exec(n: usize) -> Result<std::time::Duration> {
    let t = Instant::now();
    let children: Vec<_> = (0..n)
        .map(|_| Command::new("/bin/true").spawn())
        .collect::<Result<_, _>>()?;
    for mut c in children {
        c.wait()?;
    }
    Ok(t.elapsed())
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
    let bwrap = bwrap_floor(d, n_slow.max(10));
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
        floor: Some(("host fork+exec of true".into(), fork_exec.clone())),
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

    for i in 0..burst {
        c.destroy_sandbox(&format!("burst-{i}")).await?;
    }

    exec_and_files(d, quick, rows, &fork_exec, &health).await?;
    create_to_first_output(d, n_slow, rows).await?;
    warm_wake(d, quick, rows).await?;
    crate::more::shell_round_trip(d, quick, rows).await?;
    crate::more::stop_start(d, quick, rows).await?;
    crate::more::proxies(d, quick, rows).await?;
    crate::more::idle_memory(d, quick, figures).await?;
    match &d.gvisor_skip {
        None => crate::gvisor::scenarios(d, quick, &fork_exec, rows, figures).await?,
        Some(why) => {
            println!("gvisor rows skipped: {why}");
            not_run.push((
                "gvisor engine (create, exec, warm and cold wake)".into(),
                why.clone(),
            ));
        }
    }
    if d.vm {
        crate::vm::scenarios(d, quick, rows).await?;
    } else {
        not_run.push((
            "vm engine (create, exec, warm and cold wake)".into(),
            "no QEMU or guest kernel on this host (apt install qemu-system-x86; scripts/vm-kernel)"
                .into(),
        ));
    }
    Ok(())
}

pub fn cmd(argv: &[&str]) -> bhatti_api::ExecRequest {
    bhatti_api::ExecRequest {
        cmd: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Exec and file scenarios against one sandbox.
async fn exec_and_files(
    d: &Daemon,
    quick: bool,
    rows: &mut Vec<Row>,
    fork_exec: &Summary,
    health: &Summary,
) -> Result<()> {
    let (n_fast, n_slow) = if quick { (10, 3) } else { (100, 15) };
    let c = &d.client;
    c.create_sandbox(&req("bench-ops")).await?;
    let fork_floor = Some(("host fork+exec of true".to_string(), fork_exec.clone()));
    for (name, argv, orig) in [
        ("exec `true` (API)", vec!["true"], None),
        ("exec `echo hi` (API)", vec!["echo", "hi"], Some(12.7)),
        (
            "exec `cat /etc/hostname` (API)",
            vec!["cat", "/etc/hostname"],
            Some(12.5),
        ),
    ] {
        let r = cmd(&argv);
        let s = summarize(
            &time_n(5, n_fast, |_| {
                let r = r.clone();
                async move {
                    let out = c.exec("bench-ops", &r).await?;
                    anyhow::ensure!(out.exit_code == 0, "exit {}", out.exit_code);
                    Ok(())
                }
            })
            .await?,
        );
        rows.push(Row {
            name: name.into(),
            bhatti: s,
            floor: fork_floor.clone(),
            original_p50: orig,
        });
    }
    // The CLI process: what a user typing `bhatti exec` waits for.
    for (name, argv) in [
        ("exec `true` via the CLI process", vec!["true"]),
        ("exec `echo hi` via the CLI process", vec!["echo", "hi"]),
        (
            "exec `cat /etc/hostname` via the CLI process",
            vec!["cat", "/etc/hostname"],
        ),
    ] {
        let cli = sync_n(n_slow.max(10), || {
            let st = Command::new(&d.bin)
                .args([
                    "--url",
                    &d.url,
                    "--token",
                    &d.token,
                    "exec",
                    "bench-ops",
                    "--",
                ])
                .args(&argv)
                .stdout(Stdio::null())
                .status()?;
            anyhow::ensure!(st.success(), "bhatti exec failed");
            Ok(())
        })?;
        rows.push(Row {
            name: name.into(),
            bhatti: cli,
            floor: fork_floor.clone(),
            original_p50: Some(12.5),
        });
    }
    // Parallel execs: the time until all of N finished.
    for n in [5usize, 10, 20, 50] {
        let mut samples = Vec::new();
        for _ in 0..(if quick { 2 } else { 30 }) {
            let t = Instant::now();
            let futs = (0..n).map(|_| async { c.exec("bench-ops", &cmd(&["true"])).await });
            for r in futures_util::future::join_all(futs).await {
                anyhow::ensure!(r?.exit_code == 0, "parallel exec failed");
            }
            samples.push(t.elapsed());
        }
        let orig = match n {
            5 => Some(13.2),
            10 => Some(18.1),
            20 => Some(31.9),
            _ => None,
        };
        let floor = (0..samples.len().max(5))
            .map(|_| parallel_fork_exec(n))
            .collect::<Result<Vec<_>>>()?;
        rows.push(Row {
            name: format!("{n} execs in parallel (all done)"),
            bhatti: summarize(&samples),
            floor: Some((format!("{n} host fork+execs at once"), summarize(&floor))),
            original_p50: orig,
        });
    }
    // NDJSON time to first byte: the first stdout event of a command that keeps running.
    let mut ttfb = Vec::new();
    for _ in 0..n_slow.max(5) {
        let t = Instant::now();
        let mut st = c
            .exec_stream("bench-ops", &cmd(&["sh", "-c", "echo first; sleep 0.2"]))
            .await?;
        loop {
            match st.next_event().await? {
                Some(bhatti_api::ExecEvent::Stdout { .. }) => break,
                Some(_) => continue,
                None => anyhow::bail!("stream ended before output"),
            }
        }
        ttfb.push(t.elapsed());
        while st.next_event().await?.is_some() {}
    }
    rows.push(Row {
        name: "NDJSON exec: time to first stdout event".into(),
        bhatti: summarize(&ttfb),
        floor: Some(("GET /health".into(), health.clone())),
        original_p50: None,
    });

    // Files: write then read back; the floor is a host copy + read of the same bytes.
    let tmp = tempfile::tempdir()?;
    for (label, size, orig_w, orig_r) in [
        ("1 KB", 1024usize, Some(12.4), Some(12.4)),
        ("100 KB", 100 * 1024, Some(13.7), Some(12.7)),
        ("1 MB", 1 << 20, None, Some(14.9)),
        ("100 MB", 100 << 20, None, None),
    ] {
        let n = if size >= (100 << 20) {
            if quick {
                1
            } else {
                5
            }
        } else if quick {
            3
        } else {
            n_slow.max(30)
        };
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let src = tmp.path().join("src");
        std::fs::write(&src, &data)?;
        let floor = sync_n(n, || {
            std::fs::copy(&src, tmp.path().join("dst"))?;
            std::fs::read(tmp.path().join("dst"))?;
            Ok(())
        })?;
        let path = format!("/tmp/bench-{size}");
        let w = summarize(
            &time_n(1, n, |_| {
                let body = data.clone();
                let path = path.clone();
                async move {
                    c.write_file("bench-ops", &path, None, body, size as u64)
                        .await?;
                    Ok(())
                }
            })
            .await?,
        );
        let r = summarize(
            &time_n(1, n, |_| {
                let path = path.clone();
                async move {
                    let mut dl = c.read_file("bench-ops", &path).await?;
                    let mut got = 0usize;
                    while let Some(chunk) = dl.chunk().await? {
                        got += chunk.len();
                    }
                    anyhow::ensure!(got == size, "read {got} of {size} bytes");
                    Ok(())
                }
            })
            .await?,
        );
        let f = Some(("host cp + read of the same bytes".to_string(), floor));
        rows.push(Row {
            name: format!("file write {label}"),
            bhatti: w,
            floor: f.clone(),
            original_p50: orig_w,
        });
        rows.push(Row {
            name: format!("file read {label}"),
            bhatti: r,
            floor: f,
            original_p50: orig_r,
        });
        c.exec("bench-ops", &cmd(&["rm", "-f", &path])).await?;
    }
    let ls = summarize(
        &time_n(3, n_fast, |_| async {
            c.list_dir("bench-ops", "/bin")
                .await
                .map(|_| ())
                .map_err(Into::into)
        })
        .await?,
    );
    rows.push(Row {
        name: "file ls (/bin)".into(),
        bhatti: ls,
        floor: Some(("GET /health".into(), health.clone())),
        original_p50: Some(14.7),
    });
    c.destroy_sandbox("bench-ops").await?;
    Ok(())
}

/// Create and the first exec's output, back to back (what an agent waits for).
async fn create_to_first_output(d: &Daemon, n: usize, rows: &mut Vec<Row>) -> Result<()> {
    let c = &d.client;
    let mut samples = Vec::new();
    for i in 0..=n {
        let name = format!("first-{i}");
        let t = Instant::now();
        c.create_sandbox(&req(&name)).await?;
        let out = c.exec(&name, &cmd(&["echo", "ready"])).await?;
        anyhow::ensure!(
            out.stdout == "ready\n",
            "unexpected output {:?}",
            out.stdout
        );
        if i > 0 {
            samples.push(t.elapsed());
        }
        c.destroy_sandbox(&name).await?;
    }
    rows.push(Row {
        name: "create → first exec output".into(),
        bhatti: summarize(&samples),
        floor: Some(("bwrap run of true".into(), bwrap_floor(d, n.max(10))?)),
        original_p50: None,
    });
    Ok(())
}

/// The freezer file of a sandbox's cgroup and the values that freeze/thaw it (v1 or v2).
fn freezer(parent: &str, id: &str) -> Option<(std::path::PathBuf, &'static str, &'static str)> {
    let v1 = std::path::Path::new("/sys/fs/cgroup/freezer")
        .join(parent)
        .join(id)
        .join("freezer.state");
    if v1.exists() {
        return Some((v1, "FROZEN", "THAWED"));
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup")
        .join(parent)
        .join(id)
        .join("cgroup.freeze");
    v2.exists().then_some((v2, "1", "0"))
}

/// Warm wake: a sandbox left idle is frozen by the daemon; the next exec wakes it. The floor
/// is thawing the same cgroup directly.
async fn warm_wake(d: &Daemon, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    let c = &d.client;
    let warm = CreateSandboxRequest {
        keep_hot: None,
        ..req("bench-warm")
    };
    let created = c.create_sandbox(&warm).await?.0;
    let n = if quick { 2 } else { 15 };
    let mut samples = Vec::new();
    for _ in 0..n {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = c.list_sandboxes(&[]).await?;
            if list
                .iter()
                .any(|s| s.name == "bench-warm" && s.thermal.as_deref() == Some("warm"))
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "bench-warm never went warm");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = Instant::now();
        let out = c.exec("bench-warm", &cmd(&["true"])).await?;
        anyhow::ensure!(out.exit_code == 0, "exec after wake failed");
        samples.push(t.elapsed());
    }
    let floor = match freezer(&d.cgroup_parent, &created.id) {
        Some((file, frozen, thawed)) => {
            let mut v = Vec::new();
            for _ in 0..n.max(10) {
                std::fs::write(&file, frozen)?;
                std::thread::sleep(Duration::from_millis(20));
                let t = Instant::now();
                std::fs::write(&file, thawed)?;
                v.push(t.elapsed());
            }
            Some(("cgroup thaw of the same sandbox".to_string(), summarize(&v)))
        }
        None => None,
    };
    rows.push(Row {
        name: "warm wake + exec `true`".into(),
        bhatti: summarize(&samples),
        floor,
        original_p50: Some(13.7),
    });
    c.destroy_sandbox("bench-warm").await?;
    Ok(())
}
