//! bhatti's benchmark harness: starts its own daemon (in the network namespace `bench/run`
//! creates), measures each scenario with warm-up, and reports p50/p95/p99 beside a floor
//! measured in the same run. `--quick` runs every scenario with few samples (CI uses it to keep
//! the harness from rotting; it checks that every scenario ran, never how fast).

mod daemon;
mod gvisor;
mod more;
mod scenarios;
mod stats;
mod vm;

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

use stats::Summary;

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name.
    pub name: String,
    /// bhatti's numbers.
    pub bhatti: Summary,
    /// The floor's name and numbers, when the scenario has one.
    pub floor: Option<(String, Summary)>,
    /// The original bhatti's published p50 (ms), for comparison.
    pub original_p50: Option<f64>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.floor.as_ref().map(|(_, f)| self.bhatti.p50 / f.p50)
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
struct Report {
    date: String,
    machine: String,
    quick: bool,
    rows: Vec<Row>,
    figures: Vec<(String, String)>,
    not_run: Vec<(String, String)>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
                    / 1024
                    / 1024
            })
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} GiB, Linux {}", kernel.trim())
}

fn markdown(r: &Report) -> String {
    let mut s = format!(
        "Run: {} — {}{}\n\n| scenario | n | p50 ms | p95 ms | p99 ms | floor | floor p50 ms | ratio | original p50 ms |\n|---|---|---|---|---|---|---|---|---|\n",
        r.date,
        r.machine,
        if r.quick { " (quick mode: few samples)" } else { "" }
    );
    for row in &r.rows {
        let (fname, fp50) = match &row.floor {
            Some((n, f)) => (n.clone(), format!("{:.2}", f.p50)),
            None => ("—".into(), "—".into()),
        };
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
            row.name,
            row.bhatti.n,
            row.bhatti.p50,
            row.bhatti.p95,
            row.bhatti.p99,
            fname,
            fp50,
            row.ratio()
                .map(|x| format!("{x:.1}×"))
                .unwrap_or_else(|| "—".into()),
            row.original_p50
                .map(|x| format!("{x}"))
                .unwrap_or_else(|| "—".into()),
        ));
    }
    if !r.figures.is_empty() {
        s.push_str("\n| figure | value |\n|---|---|\n");
        for (name, value) in &r.figures {
            s.push_str(&format!("| {name} | {value} |\n"));
        }
    }
    if !r.not_run.is_empty() {
        s.push_str("\nNot measured yet:\n\n");
        for (name, why) in &r.not_run {
            s.push_str(&format!("- {name}: {why}\n"));
        }
    }
    s
}

/// The top of bench/RESULTS.md, above the table.
const RESULTS_HEADER: &str = "# bhatti benchmark results\n\nProduced by `bench/run --write-results`; floors are measured in the same run. The raw numbers of this run are in `bench/RESULTS.json` (every run writes one to `bench/results/`).\n\n";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let write = args.iter().any(|a| a == "--write-results");
    // The daemon creates bridges and firewall rules: only inside the namespace bench/run made.
    if std::env::var_os("BENCH_IN_NETNS").is_none() {
        bail!("run the harness through bench/run (it needs a network namespace of its own)");
    }
    let d = daemon::Daemon::start().await?;
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    let mut not_run = Vec::new();
    scenarios::run_all(&d, quick, &mut rows, &mut figures, &mut not_run).await?;
    let report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: machine(),
        quick,
        rows,
        figures,
        not_run,
    };
    let md = markdown(&report);
    println!("{md}");
    let out_dir =
        PathBuf::from(std::env::var("BENCH_OUT").unwrap_or_else(|_| "bench/results".into()));
    std::fs::create_dir_all(&out_dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    std::fs::write(
        out_dir.join(format!("run-{stamp}.json")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    if write {
        // The hand-written notes (from `## Notes` on) are kept; the table is replaced.
        let notes = std::fs::read_to_string("bench/RESULTS.md")
            .ok()
            .and_then(|old| old.find("\n## Notes").map(|i| old[i..].to_string()))
            .unwrap_or_default();
        std::fs::write("bench/RESULTS.md", format!("{RESULTS_HEADER}{md}{notes}"))?;
        std::fs::write(
            "bench/RESULTS.json",
            format!("{}\n", serde_json::to_string_pretty(&report)?),
        )?;
    }
    if report.rows.is_empty() {
        bail!("no scenario ran");
    }
    Ok(())
}
