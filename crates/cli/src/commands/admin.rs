//! `bhatti admin events|status`: DB-direct, like `bhatti user` (no daemon needed).

use anyhow::{bail, Result};
use bhatti_server::admin::{self, EventFilter, EventRecord};

use super::Ctx;
use crate::args::{AdminCommand, AdminEventsArgs};
use crate::output;

pub fn run(ctx: &Ctx, cmd: AdminCommand) -> Result<()> {
    let (data_dir, _) = super::user::data_dir(ctx)?;
    match cmd {
        AdminCommand::Events(args) => events(ctx, &data_dir, args),
        AdminCommand::Status => {
            let st = admin::status(&data_dir)?;
            if ctx.json() {
                return output::print_json(&st);
            }
            let t = &st.totals;
            println!("bhatti {}", bhatti_api::VERSION);
            println!(
                "Sandboxes  {} total ({} hot, {} warm, {} cold), {} stopped",
                t["sandboxes"], t["hot"], t["warm"], t["cold"], t["stopped"]
            );
            println!("Users      {}", t["users"]);
            println!("Auth       {} failures (24h)", t["auth_failures_24h"]);
            println!();
            println!("{:<20} {:<10} STATUS", "USER", "SANDBOXES");
            for u in &st.users {
                println!("{:<20} {:<10} {}", u.name, u.sandboxes, u.status);
            }
            println!();
            println!("Recent events:");
            print!("{}", event_table(&st.recent_events));
            Ok(())
        }
    }
}

fn events(ctx: &Ctx, data_dir: &std::path::Path, args: AdminEventsArgs) -> Result<()> {
    let since = match &args.since {
        Some(s) => Some(parse_since(s, chrono::Utc::now())?),
        None => None,
    };
    let f = EventFilter {
        kind: args.r#type.clone(),
        user: args.user.clone(),
        sandbox: args.sandbox.clone(),
        since,
        limit: if args.count { u32::MAX } else { args.limit },
    };
    let evs = admin::events(data_dir, &f)?;
    if args.count {
        if ctx.json() {
            return output::print_json(&serde_json::json!({"count": evs.len()}));
        }
        println!("{}", evs.len());
        return Ok(());
    }
    if ctx.json() {
        return output::print_json(&evs);
    }
    print!("{}", event_table(&evs));
    Ok(())
}

/// `24h`, `7d`, `30m`, `45s`, `2026-04-01` or RFC 3339 → an RFC 3339 lower bound.
pub fn parse_since(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<i64>() {
            let secs = n * match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86400,
            };
            return Ok(fmt(now - chrono::Duration::seconds(secs)));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(fmt(d.and_hms_opt(0, 0, 0).unwrap().and_utc()));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(fmt(t.with_timezone(&chrono::Utc)));
    }
    bail!("invalid --since {s:?}: use 24h, 7d, 30m, 45s, 2026-04-01 or an RFC 3339 time")
}

fn details(e: &EventRecord) -> String {
    let m = &e.meta;
    let s = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    match e.kind.as_str() {
        "thermal.pause" => format!("{} → warm (idle {}s)", s("name"), m["idle_s"]),
        "thermal.cool" => format!("{} → cold (warm {}s)", s("name"), m["warm_s"]),
        "thermal.wake" => format!("{} → hot (from {})", s("name"), s("from")),
        "sandbox.destroyed" => format!("{} (lived {}s)", s("name"), m["lifetime_s"]),
        "auth.failed" => format!("from {}", s("ip")),
        k if k.starts_with("sandbox.") => s("name"),
        _ => {
            let t = m.to_string();
            if t == "{}" {
                String::new()
            } else {
                t
            }
        }
    }
}

fn event_table(evs: &[EventRecord]) -> String {
    let mut out = format!(
        "{:<24} {:<20} {:<12} {:<16} DETAILS\n",
        "TS", "TYPE", "USER", "SANDBOX"
    );
    for e in evs {
        let user = if e.user.is_empty() {
            &e.user_id
        } else {
            &e.user
        };
        out.push_str(&format!(
            "{:<24} {:<20} {:<12} {:<16} {}\n",
            e.ts,
            e.kind,
            if user.is_empty() { "-" } else { user },
            if e.sandbox_id.is_empty() {
                "-"
            } else {
                &e.sandbox_id
            },
            details(e)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-05-02T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_since("24h", now).unwrap(), "2026-05-01T12:00:00.000Z");
        assert_eq!(parse_since("7d", now).unwrap(), "2026-04-25T12:00:00.000Z");
        assert_eq!(parse_since("30m", now).unwrap(), "2026-05-02T11:30:00.000Z");
        assert_eq!(parse_since("45s", now).unwrap(), "2026-05-02T11:59:15.000Z");
        assert_eq!(
            parse_since("2026-04-01", now).unwrap(),
            "2026-04-01T00:00:00.000Z"
        );
        assert_eq!(
            parse_since("2026-04-01T10:00:00+02:00", now).unwrap(),
            "2026-04-01T08:00:00.000Z"
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
