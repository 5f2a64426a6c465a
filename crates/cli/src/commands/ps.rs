//! `bhatti ps`, `bhatti kill`, `bhatti ports`.

use anyhow::Result;
use bhatti_api::{Port, Session};
use serde::Serialize;

use super::Ctx;
use crate::args::{KillArgs, SandboxArg};
use crate::output::{self, Table};

/// `ps NAME` → `GET …/sessions`.
pub async fn run(ctx: &Ctx, args: SandboxArg) -> Result<()> {
    let sessions = ctx.client()?.list_sessions(&args.sandbox).await?;
    if ctx.json() {
        #[derive(Serialize)]
        struct Row<'a> {
            session_id: &'a str,
            argv: &'a str,
            running: bool,
            attached: bool,
        }
        let rows: Vec<Row<'_>> = sessions
            .iter()
            .map(|s| Row {
                session_id: &s.session_id,
                argv: &s.argv,
                running: s.running,
                attached: s.attached,
            })
            .collect();
        return output::print_json(&rows);
    }
    print!("{}", sessions_table(&sessions));
    Ok(())
}

/// `ID(10) COMMAND(40) RUNNING ATTACHED`.
pub fn sessions_table(sessions: &[Session]) -> String {
    let mut t = Table::new(&[("ID", 10), ("COMMAND", 40), ("RUNNING", 0), ("ATTACHED", 0)]);
    for s in sessions {
        t.row(vec![
            s.session_id.clone(),
            s.argv.clone(),
            s.running.to_string(),
            s.attached.to_string(),
        ]);
    }
    t.render()
}

/// `kill NAME SID` → `DELETE …/sessions/:sid`.
pub async fn kill(ctx: &Ctx, args: KillArgs) -> Result<()> {
    let status = ctx
        .client()?
        .kill_session(&args.sandbox, &args.session)
        .await?;
    if ctx.json() {
        output::print_json(&status)
    } else {
        println!("session {} killed", args.session);
        Ok(())
    }
}

/// `ports NAME` → `GET …/ports`.
pub async fn ports(ctx: &Ctx, args: SandboxArg) -> Result<()> {
    let client = ctx.client()?;
    let ports = client.list_ports(&args.sandbox).await?;
    if ctx.json() {
        return output::print_json(&ports);
    }
    print!("{}", ports_table(&ports, client.base_url()));
    Ok(())
}

/// `PORT URL`, or a sentence when there are none.
pub fn ports_table(ports: &[Port], base: &str) -> String {
    if ports.is_empty() {
        return "No listening ports detected.\n".into();
    }
    let mut t = Table::new(&[("PORT", 6), ("URL", 0)]);
    for p in ports {
        t.row(vec![
            p.container_port.to_string(),
            format!("{base}{}", p.proxy_url),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let s = Session {
            session_id: "s1".into(),
            argv: "/bin/bash -li".into(),
            tty: true,
            running: true,
            exit_code: None,
            attached: false,
            created_at: 0,
        };
        let t = sessions_table(&[s]);
        assert!(t.starts_with("ID         COMMAND"), "{t}");
        assert!(t.contains("s1         /bin/bash -li"), "{t}");
        assert!(t.lines().nth(1).unwrap().ends_with("true    false"), "{t}");
        assert_eq!(
            ports_table(&[], "http://x"),
            "No listening ports detected.\n"
        );
        let p = Port {
            container_port: 8000,
            proxy_url: "/sandboxes/ab/proxy/8000/".into(),
        };
        assert_eq!(
            ports_table(&[p], "http://h:1"),
            "PORT   URL\n8000   http://h:1/sandboxes/ab/proxy/8000/\n"
        );
    }
}
