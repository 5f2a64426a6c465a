//! The vm engine's scenarios (when the daemon could enable it: QEMU and a guest kernel on this
//! host), labelled with the accelerator — `tcg` emulation is orders of magnitude slower than
//! `kvm`, so the two are never comparable.

use std::time::{Duration, Instant};

use anyhow::Result;
use bhatti_api::CreateSandboxRequest;

use crate::daemon::Daemon;
use crate::scenarios::{cmd, req};
use crate::stats::summarize;
use crate::Row;

fn vm_req(name: &str, keep_hot: bool) -> CreateSandboxRequest {
    CreateSandboxRequest {
        engine: Some("vm".into()),
        keep_hot: keep_hot.then_some(true),
        ..req(name)
    }
}

/// Waits until `name` is listed with thermal state `want`.
pub(crate) async fn wait_thermal(
    d: &Daemon,
    name: &str,
    want: &str,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let list = d.client.list_sandboxes(&[]).await?;
        if list
            .iter()
            .any(|s| s.name == name && s.thermal.as_deref() == Some(want))
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} never went {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// create (to lohar ready), exec `true`, warm wake + exec, cold wake + exec on vm sandboxes.
pub async fn scenarios(d: &Daemon, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    let c = &d.client;
    let (n_create, n_exec, n_warm, n_cold) = if quick { (1, 5, 1, 1) } else { (3, 50, 5, 5) };

    let mut creates = Vec::new();
    let mut accel = String::from("?");
    for i in 0..n_create {
        let name = format!("bench-vm-{i}");
        let t = Instant::now();
        let created = c.create_sandbox(&vm_req(&name, true)).await?.0;
        creates.push(t.elapsed());
        accel = created.engine_meta["accel"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        if i > 0 {
            c.destroy_sandbox(&name).await?;
        }
    }
    let label = |what: &str| format!("vm ({accel}): {what}");
    rows.push(Row {
        name: label("create (API, to lohar ready)"),
        bhatti: summarize(&creates),
        floor: None,
        original_p50: Some(265.7),
    });

    let mut execs = Vec::new();
    for _ in 0..n_exec {
        let t = Instant::now();
        let out = c.exec("bench-vm-0", &cmd(&["true"])).await?;
        anyhow::ensure!(out.exit_code == 0, "vm exec failed");
        execs.push(t.elapsed());
    }
    rows.push(Row {
        name: label("exec `true` (API)"),
        bhatti: summarize(&execs),
        floor: None,
        original_p50: None,
    });
    c.destroy_sandbox("bench-vm-0").await?;

    // Warm and cold wakes on one sandbox that the daemon's short timers cool.
    c.create_sandbox(&vm_req("bench-vm-thermal", false)).await?;
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for i in 0..n_warm.max(n_cold) {
        if i < n_warm {
            wait_thermal(d, "bench-vm-thermal", "warm", Duration::from_secs(60)).await?;
            let t = Instant::now();
            let out = c.exec("bench-vm-thermal", &cmd(&["true"])).await?;
            anyhow::ensure!(out.exit_code == 0, "exec after warm wake failed");
            warm.push(t.elapsed());
        }
        if i < n_cold {
            wait_thermal(d, "bench-vm-thermal", "cold", Duration::from_secs(60)).await?;
            let t = Instant::now();
            let out = c.exec("bench-vm-thermal", &cmd(&["true"])).await?;
            anyhow::ensure!(out.exit_code == 0, "exec after cold wake failed");
            cold.push(t.elapsed());
        }
    }
    rows.push(Row {
        name: label("warm wake + exec `true`"),
        bhatti: summarize(&warm),
        floor: None,
        original_p50: Some(13.7),
    });
    rows.push(Row {
        name: label("cold wake + exec `true`"),
        bhatti: summarize(&cold),
        floor: None,
        original_p50: None,
    });
    c.destroy_sandbox("bench-vm-thermal").await?;
    Ok(())
}
