//! The gvisor engine's scenarios (when runsc is installed): create, exec, warm wake (`runsc
//! pause`) and cold wake (`runsc checkpoint` → `restore`, the first exec pays for paging the
//! memory image back in), each beside a floor measured in the same run with bare runsc on the
//! same image and platform. Cold wakes that fail are counted, not fatal: restores with runsc
//! 0.0~20221219 intermittently leave lohar unreachable (docs/ARCHITECTURE.md, the gvisor engine).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bhatti_api::CreateSandboxRequest;

use crate::daemon::{Daemon, GVISOR_PLATFORM};
use crate::scenarios::{cmd, req};
use crate::stats::{summarize, Summary};
use crate::vm::wait_thermal;
use crate::Row;

fn gvisor_req(name: &str, keep_hot: bool) -> CreateSandboxRequest {
    CreateSandboxRequest {
        engine: Some("gvisor".into()),
        keep_hot: keep_hot.then_some(true),
        ..req(name)
    }
}

/// Bare runsc (no bhatti) over the `tiny` image: the floors. Its containers are removed on drop.
struct BareRunsc {
    root: tempfile::TempDir,
    bundle: tempfile::TempDir,
    images: tempfile::TempDir,
}

impl BareRunsc {
    /// A bundle from `runsc spec` running `argv` on the read-only `tiny` rootfs, no network.
    fn new(tiny_rootfs: &Path) -> Result<BareRunsc> {
        let (root, bundle, images) = (
            tempfile::tempdir()?,
            tempfile::tempdir()?,
            tempfile::tempdir()?,
        );
        let st = Command::new("runsc")
            .arg("spec")
            .arg("-bundle")
            .arg(bundle.path())
            .stdout(Stdio::null())
            .status()
            .context("runsc spec")?;
        anyhow::ensure!(st.success(), "runsc spec failed");
        let b = BareRunsc {
            root,
            bundle,
            images,
        };
        b.set_spec(tiny_rootfs, &["/bin/true"])?;
        Ok(b)
    }

    /// Rewrites the bundle's config.json to run `argv` on `rootfs`.
    fn set_spec(&self, rootfs: &Path, argv: &[&str]) -> Result<()> {
        let path = self.bundle.path().join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = argv.iter().map(|a| a.to_string()).collect();
        spec["root"]["path"] = rootfs.to_string_lossy().into_owned().into();
        spec["root"]["readonly"] = true.into();
        // runsc's own netstack is off (`--network=none`); no network namespace either.
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(())
    }

    fn runsc(&self, args: &[&str]) -> Result<()> {
        let st = Command::new("runsc")
            .arg("--root")
            .arg(self.root.path())
            .arg(format!("--platform={GVISOR_PLATFORM}"))
            .arg("--network=none")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("runsc {}", args.join(" ")))?;
        anyhow::ensure!(st.success(), "runsc {} failed", args.join(" "));
        Ok(())
    }

    fn bundle(&self) -> String {
        self.bundle.path().to_string_lossy().into_owned()
    }

    fn image(&self) -> PathBuf {
        self.images.path().join("img")
    }
}

impl Drop for BareRunsc {
    fn drop(&mut self) {
        let _ = self.runsc(&["kill", "floor", "KILL"]);
        let _ = self.runsc(&["delete", "-force", "floor"]);
    }
}

/// The floors: `runsc run` of `true` (create); `runsc resume` of a paused `sleep` container
/// (warm wake); `runsc restore` of a checkpointed one (cold wake). Sample counts: create,
/// resume, restore.
fn floors(d: &Daemon, n: (usize, usize, usize)) -> Result<(Summary, Summary, Summary)> {
    let tiny = d.images.join("tiny/rootfs");
    let b = BareRunsc::new(&tiny)?;
    let mut run = Vec::new();
    for i in 0..=n.0 {
        let t = Instant::now();
        b.runsc(&["run", "-bundle", &b.bundle(), &format!("true-{i}")])?;
        if i > 0 {
            run.push(t.elapsed());
        }
    }
    b.set_spec(&tiny, &["/bin/sleep", "100000"])?;
    b.runsc(&["run", "-detach", "-bundle", &b.bundle(), "floor"])?;
    let mut resume = Vec::new();
    for _ in 0..n.1 {
        b.runsc(&["pause", "floor"])?;
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        b.runsc(&["resume", "floor"])?;
        resume.push(t.elapsed());
    }
    let mut restore = Vec::new();
    let image = b.image();
    let image = image.to_string_lossy();
    for _ in 0..n.2 {
        let _ = std::fs::remove_dir_all(&*image);
        std::fs::create_dir_all(&*image)?;
        b.runsc(&["checkpoint", "--image-path", &image, "floor"])?;
        b.runsc(&["delete", "floor"])?;
        let t = Instant::now();
        b.runsc(&[
            "restore",
            "--image-path",
            &image,
            "-bundle",
            &b.bundle(),
            "-detach",
            "floor",
        ])?;
        restore.push(t.elapsed());
    }
    Ok((summarize(&run), summarize(&resume), summarize(&restore)))
}

/// create (to lohar ready), exec `true`, warm wake + exec and cold wake + exec on gvisor
/// sandboxes; the count of failed cold wakes goes into `figures`.
pub async fn scenarios(
    d: &Daemon,
    quick: bool,
    fork_exec: &Summary,
    rows: &mut Vec<Row>,
    figures: &mut Vec<(String, String)>,
) -> Result<()> {
    let c = &d.client;
    let (n_create, n_exec, n_warm, n_cold) = if quick {
        (1, 5, 1, 1)
    } else {
        (10, 50, 10, 10)
    };
    let label = |what: &str| format!("gvisor ({GVISOR_PLATFORM}): {what}");
    let (run_floor, resume_floor, restore_floor) = {
        let n = if quick { (2, 3, 1) } else { (10, 10, 5) };
        tokio::task::block_in_place(|| floors(d, n)).context("bare runsc floors")?
    };

    // Creates, one at a time; the first (unmeasured) one stays for the execs.
    let mut creates = Vec::new();
    for i in 0..=n_create {
        let name = format!("bench-gv-{i}");
        let t = Instant::now();
        c.create_sandbox(&gvisor_req(&name, true))
            .await
            .context("gvisor create")?;
        if i > 0 {
            creates.push(t.elapsed());
            c.destroy_sandbox(&name).await?;
        }
    }
    rows.push(Row {
        name: label("create (API, to lohar ready)"),
        bhatti: summarize(&creates),
        floor: Some(("runsc run of true".into(), run_floor)),
        original_p50: Some(265.7),
    });

    let mut execs = Vec::new();
    for i in 0..n_exec + 2 {
        let t = Instant::now();
        let out = c.exec("bench-gv-0", &cmd(&["true"])).await?;
        anyhow::ensure!(out.exit_code == 0, "gvisor exec failed");
        if i >= 2 {
            execs.push(t.elapsed());
        }
    }
    rows.push(Row {
        name: label("exec `true` (API)"),
        bhatti: summarize(&execs),
        floor: Some(("host fork+exec of true".into(), fork_exec.clone())),
        original_p50: None,
    });
    c.destroy_sandbox("bench-gv-0").await?;

    // Warm and cold wakes on one sandbox that the daemon's short timers cool. A cold wake that
    // fails is counted; the sandbox is replaced and the cycles go on.
    let mut name = "bench-gv-thermal-0".to_string();
    c.create_sandbox(&gvisor_req(&name, false)).await?;
    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    let mut failed: Vec<String> = Vec::new();
    for i in 0..n_warm.max(n_cold) {
        if i < n_warm {
            wait_thermal(d, &name, "warm", Duration::from_secs(60)).await?;
            let t = Instant::now();
            let out = c.exec(&name, &cmd(&["true"])).await?;
            anyhow::ensure!(out.exit_code == 0, "exec after warm wake failed");
            warm.push(t.elapsed());
        }
        if i < n_cold {
            let t = Instant::now();
            let woke = async {
                wait_thermal(d, &name, "cold", Duration::from_secs(60)).await?;
                let t = Instant::now();
                let out = c.exec(&name, &cmd(&["true"])).await?;
                anyhow::ensure!(out.exit_code == 0, "exit {}", out.exit_code);
                Ok::<_, anyhow::Error>(t.elapsed())
            }
            .await;
            match woke {
                Ok(e) => cold.push(e),
                Err(e) => {
                    eprintln!(
                        "gvisor cold wake {} of {n_cold} failed after {:.1} s: {e:#}",
                        i + 1,
                        t.elapsed().as_secs_f64()
                    );
                    failed.push(format!("{e:#}"));
                    c.destroy_sandbox(&name)
                        .await
                        .context("destroy after a failed cold wake")?;
                    name = format!("bench-gv-thermal-{}", i + 1);
                    c.create_sandbox(&gvisor_req(&name, false)).await?;
                }
            }
        }
    }
    c.destroy_sandbox(&name).await?;
    rows.push(Row {
        name: label("warm wake + exec `true`"),
        bhatti: summarize(&warm),
        floor: Some(("runsc resume of a bare container".into(), resume_floor)),
        original_p50: Some(13.7),
    });
    rows.push(Row {
        name: label("cold wake (restore, page-in) + exec `true`"),
        bhatti: summarize(&cold),
        floor: Some(("runsc restore of a bare container".into(), restore_floor)),
        original_p50: None,
    });
    figures.push((
        label("cold wakes that failed"),
        match failed.first() {
            None => format!("0 of {n_cold}"),
            Some(first) => format!("{} of {n_cold} (first: {first})", failed.len()),
        },
    ));
    Ok(())
}
