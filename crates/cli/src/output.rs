//! Everything the CLI prints to stdout: `--json` (pretty, 2-space indent), tables, and the
//! describe format of `inspect`. Formatting functions return strings so they are unit-tested.

use std::collections::BTreeMap;

use anyhow::Result;
use std::time::Duration;

use bhatti_api::{Sandbox, User};
use bhatti_client::Timing;
use serde::Serialize;

/// Prints a value as pretty JSON (2-space indent) on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", to_json(value)?);
    Ok(())
}

/// Pretty JSON with 2-space indent.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// A text table: left-aligned columns, each at least its minimum width, separated by one
/// space; the last column is not padded.
pub struct Table {
    headers: Vec<String>,
    min_widths: Vec<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and minimum column widths (0 = fit the content).
    pub fn new(columns: &[(&str, usize)]) -> Self {
        Self {
            headers: columns.iter().map(|(h, _)| h.to_string()).collect(),
            min_widths: columns.iter().map(|(_, w)| *w).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders header + rows, each line ending in `\n`.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = (0..n)
            .map(|i| self.min_widths[i].max(self.headers[i].chars().count()))
            .collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(n) {
                if i + 1 == n {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    let pad = widths[i].saturating_sub(cell.chars().count()) + 1;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `--json` shape of `list`: a reduced sandbox.
#[derive(Debug, Serialize, PartialEq)]
pub struct SandboxSummary<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermal: Option<&'a str>,
    pub ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<&'a [String]>,
    pub cpus: f64,
    pub memory_mb: u64,
    pub disk_size_mb: u64,
    pub image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> From<&'a Sandbox> for SandboxSummary<'a> {
    fn from(s: &'a Sandbox) -> Self {
        Self {
            id: &s.id,
            name: &s.name,
            status: &s.status,
            thermal: s.thermal.as_deref().filter(|t| !t.is_empty()),
            ip: &s.ip,
            urls: s.urls.as_deref().filter(|u| !u.is_empty()),
            cpus: s.cpus,
            memory_mb: s.memory_mb,
            disk_size_mb: s.disk_size_mb,
            image: &s.image,
            labels: s.labels.as_ref().filter(|l| !l.is_empty()),
        }
    }
}

/// CPUs as the user typed them: `1`, `0.5`, `2`.
pub fn fmt_cpus(cpus: f64) -> String {
    let c = if cpus <= 0.0 { 1.0 } else { cpus };
    format!("{c}")
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn fmt_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    match labels {
        Some(l) if !l.is_empty() => l
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

/// The `list` table; `wide` adds resources, image and labels. A `URL` column (first
/// published URL) appears only when some sandbox has one.
pub fn sandbox_table(sandboxes: &[Sandbox], wide: bool) -> String {
    let with_urls = sandboxes
        .iter()
        .any(|s| s.urls.as_ref().is_some_and(|u| !u.is_empty()));
    let mut cols: Vec<(&str, usize)> =
        vec![("NAME", 20), ("STATUS", 10), ("THERMAL", 8), ("IP", 16)];
    if wide {
        cols.extend([
            ("CPUS", 5),
            ("MEMORY", 8),
            ("DISK", 8),
            ("IMAGE", 10),
            ("LABELS", 0),
        ]);
    }
    if with_urls {
        cols.push(("URL", 0));
    }
    let mut t = Table::new(&cols);
    for s in sandboxes {
        let mut row = vec![
            s.name.clone(),
            or_dash(&s.status),
            or_dash(s.thermal.as_deref().unwrap_or("")),
            or_dash(&s.ip),
        ];
        if wide {
            let mem = if s.memory_mb == 0 { 1024 } else { s.memory_mb };
            row.extend([
                fmt_cpus(s.cpus),
                format!("{mem}MB"),
                if s.disk_size_mb == 0 {
                    "-".into()
                } else {
                    format!("{}MB", s.disk_size_mb)
                },
                if s.image.is_empty() {
                    "minimal".into()
                } else {
                    s.image.clone()
                },
                fmt_labels(s.labels.as_ref()),
            ]);
        }
        if with_urls {
            row.push(or_dash(
                s.urls
                    .as_ref()
                    .and_then(|u| u.first())
                    .map(String::as_str)
                    .unwrap_or(""),
            ));
        }
        t.row(row);
    }
    t.render()
}

/// `create`'s human output.
pub fn created(s: &Sandbox, existing: bool) -> String {
    if existing {
        return format!("sandbox/{} unchanged (already exists)\n", s.name);
    }
    let mut out = format!(
        "sandbox/{} created ({} vCPU, {} MB",
        s.name,
        fmt_cpus(s.cpus),
        s.memory_mb
    );
    if s.disk_size_mb > 0 {
        out.push_str(&format!(", {} MB disk", s.disk_size_mb));
    }
    out.push_str(")\n");
    if !s.ip.is_empty() {
        out.push_str(&format!("  IP:    {}\n", s.ip));
    }
    out.push_str(&format!("  Shell: bhatti shell {}\n", s.name));
    out
}

/// `inspect`: kubectl-describe style.
pub fn describe(s: &Sandbox) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{:<10}{v}\n", format!("{k}:")));
    line("Name", &s.name);
    line("ID", &s.id);
    line("Status", &s.status);
    if let Some(t) = s.thermal.as_deref().filter(|t| !t.is_empty()) {
        line("Thermal", t);
    }
    line(
        "Image",
        if s.image.is_empty() {
            "minimal"
        } else {
            &s.image
        },
    );
    if let Some(e) = s.engine_meta.get("engine").and_then(|v| v.as_str()) {
        // The vm engine records its accelerator: KVM and TCG differ by orders of magnitude.
        match s.engine_meta.get("accel").and_then(|v| v.as_str()) {
            Some(a) => line("Engine", &format!("{e} ({a})")),
            None => line("Engine", e),
        }
    }
    line("Created", &s.created_at);
    if let Some(t) = s.stopped_at.as_deref().filter(|t| !t.is_empty()) {
        line("Stopped", t);
    }
    if !s.template_id.is_empty() {
        line("Template", &s.template_id);
    }
    if let Some(l) = s.labels.as_ref().filter(|l| !l.is_empty()) {
        line("Labels", &fmt_labels(Some(l)));
    }
    out.push_str("\nResources:\n");
    let mem = if s.memory_mb == 0 { 1024 } else { s.memory_mb };
    let disk = if s.disk_size_mb > 0 {
        format!("{} MB", s.disk_size_mb)
    } else if s.status == "running" {
        "image default".to_string()
    } else {
        "— (stopped)".to_string()
    };
    out.push_str(&format!("  CPUs:    {}\n", fmt_cpus(s.cpus)));
    out.push_str(&format!("  Memory:  {mem} MB\n"));
    out.push_str(&format!("  Disk:    {disk}\n"));
    out.push_str("\nNetwork:\n");
    out.push_str(&format!("  IP:      {}\n", or_dash(&s.ip)));
    if s.keep_hot {
        out.push_str("\nkeep_hot: true\n");
    }
    out
}

/// `user list`'s table. `subnet` renders a user's subnet index.
pub fn user_table(users: &[User], subnet: impl Fn(u32) -> String) -> String {
    let mut t = Table::new(&[
        ("ID", 14),
        ("NAME", 16),
        ("SANDBOXES", 10),
        ("CPUS", 5),
        ("MEM", 8),
        ("SUBNET", 0),
    ]);
    for u in users {
        t.row(vec![
            u.id.clone(),
            u.name.clone(),
            format!("{}/{}", u.sandbox_count, u.max_sandboxes),
            u.max_cpus_per_sandbox.to_string(),
            format!("{}MB", u.max_memory_mb_per_sandbox),
            subnet(u.subnet_index),
        ]);
    }
    t.render()
}

/// `--timing` block (stderr): `server` is request start (connection setup included) to the
/// response headers, `transfer` the body.
pub fn timing(t: &Timing) -> String {
    format!(
        "---\nserver:   {}\ntransfer: {}\ntotal:    {}\n",
        fmt_duration(t.server),
        fmt_duration(t.transfer),
        fmt_duration(t.total)
    )
}

/// `<1ms` → `NNNµs`, `<10ms` → `N.NNms`, `<1s` → `N.Nms`, else `N.NNs`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 10_000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sandbox(name: &str) -> Sandbox {
        Sandbox {
            id: "0123456789abcdef".into(),
            name: name.into(),
            template_id: String::new(),
            engine_id: "fedcba9876543210".into(),
            status: "running".into(),
            ip: "10.0.1.2".into(),
            engine_meta: serde_json::json!({}),
            created_by: "usr_01234567".into(),
            created_at: "2026-11-29T01:00:00Z".into(),
            stopped_at: None,
            keep_hot: false,
            cpus: 2.0,
            memory_mb: 1024,
            disk_size_mb: 0,
            image: "minimal".into(),
            labels: None,
            thermal: Some("hot".into()),
            urls: None,
        }
    }

    #[test]
    fn table_pads_to_min_width_and_grows() {
        let mut t = Table::new(&[("A", 4), ("B", 0)]);
        t.row(vec!["x".into(), "y".into()]);
        t.row(vec!["longer".into(), "z".into()]);
        assert_eq!(t.render(), "A      B\nx      y\nlonger z\n");
        let mut t = Table::new(&[("A", 4), ("B", 0)]);
        t.row(vec!["x".into(), "y".into()]);
        assert_eq!(t.render(), "A    B\nx    y\n");
    }

    #[test]
    fn list_table() {
        let mut b = sandbox("worker");
        b.status = "stopped".into();
        b.thermal = None;
        b.ip = String::new();
        let out = sandbox_table(&[sandbox("dev"), b], false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NAME                 STATUS     THERMAL  IP");
        assert_eq!(
            lines[1],
            "dev                  running    hot      10.0.1.2"
        );
        assert_eq!(lines[2], "worker               stopped    -        -");
    }

    #[test]
    fn list_table_wide_and_urls() {
        let mut s = sandbox("dev");
        s.labels = Some(BTreeMap::from([
            ("team".to_string(), "a".to_string()),
            ("env".to_string(), "prod".to_string()),
        ]));
        s.urls = Some(vec!["https://dev-x.example".into()]);
        s.memory_mb = 0;
        s.image = String::new();
        let out = sandbox_table(&[s], true);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[0].contains("CPUS  MEMORY   DISK     IMAGE      LABELS"));
        assert!(lines[0].ends_with("URL"));
        assert!(lines[1].contains(" 2     1024MB   -        minimal    env=prod,team=a"));
        assert!(lines[1].ends_with("https://dev-x.example"));
    }

    #[test]
    fn list_json_is_reduced() {
        let s = sandbox("dev");
        let v = serde_json::to_value(SandboxSummary::from(&s)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cpus",
                "disk_size_mb",
                "id",
                "image",
                "ip",
                "memory_mb",
                "name",
                "status",
                "thermal"
            ]
        );
    }

    #[test]
    fn json_is_two_space_indented() {
        let out = to_json(&serde_json::json!({"status": "destroyed"})).unwrap();
        assert_eq!(out, "{\n  \"status\": \"destroyed\"\n}");
    }

    #[test]
    fn created_lines() {
        let mut s = sandbox("dev");
        assert_eq!(
            created(&s, false),
            "sandbox/dev created (2 vCPU, 1024 MB)\n  IP:    10.0.1.2\n  Shell: bhatti shell dev\n"
        );
        s.cpus = 0.5;
        s.disk_size_mb = 2048;
        assert!(
            created(&s, false).starts_with("sandbox/dev created (0.5 vCPU, 1024 MB, 2048 MB disk)")
        );
        assert_eq!(
            created(&s, true),
            "sandbox/dev unchanged (already exists)\n"
        );
    }

    #[test]
    fn describe_format() {
        let mut s = sandbox("dev");
        s.keep_hot = true;
        let out = describe(&s);
        assert!(out.starts_with("Name:     dev\nID:       0123456789abcdef\nStatus:   running\nThermal:  hot\nImage:    minimal\n"), "{out}");
        assert!(out.contains(
            "\nResources:\n  CPUs:    2\n  Memory:  1024 MB\n  Disk:    image default\n"
        ));
        assert!(out.contains("\nNetwork:\n  IP:      10.0.1.2\n"));
        assert!(out.ends_with("keep_hot: true\n"));
        s.status = "stopped".into();
        s.stopped_at = Some("2026-11-29T02:00:00Z".into());
        let out = describe(&s);
        assert!(out.contains("Stopped:  2026-11-29T02:00:00Z\n"));
        assert!(out.contains("Disk:    — (stopped)"));
        s.engine_meta = serde_json::json!({"engine": "vm", "accel": "tcg"});
        assert!(describe(&s).contains("\nImage:    minimal\nEngine:   vm (tcg)\n"));
        s.engine_meta = serde_json::json!({"engine": "namespace"});
        assert!(describe(&s).contains("\nEngine:   namespace\n"));
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_micros(412)), "412µs");
        assert_eq!(fmt_duration(Duration::from_micros(2_345)), "2.35ms");
        assert_eq!(fmt_duration(Duration::from_micros(123_456)), "123.5ms");
        assert_eq!(fmt_duration(Duration::from_millis(2_500)), "2.50s");
        let t = Timing {
            server: Duration::from_micros(900),
            transfer: Duration::from_micros(100),
            total: Duration::from_micros(1000),
        };
        assert_eq!(
            timing(&t),
            "---\nserver:   900µs\ntransfer: 100µs\ntotal:    1.00ms\n"
        );
    }

    #[test]
    fn user_table_format() {
        let u = User {
            id: "usr_0a1b2c3d".into(),
            name: "alice".into(),
            max_sandboxes: 5,
            max_cpus_per_sandbox: 4,
            max_memory_mb_per_sandbox: 4096,
            subnet_index: 1,
            created_at: "2026-11-29T01:00:00Z".into(),
            sandbox_count: 2,
        };
        let out = user_table(&[u], |i| format!("#{i}"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "ID             NAME             SANDBOXES  CPUS  MEM      SUBNET"
        );
        assert_eq!(
            lines[1],
            "usr_0a1b2c3d   alice            2/5        4     4096MB   #1"
        );
    }
}
