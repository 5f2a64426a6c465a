//! Feeds arbitrary frame streams to lohar's control-connection handler (`serve_control`) in test
//! mode, over an in-memory stream.
//!
//! Input layout: byte 0 bit 0 = present the right token first; the rest is split into frames by
//! the real frame decoder (so the fuzzer mutates well-formed frames); a tail that does not decode
//! is sent raw, to exercise the agent's own decode errors.
//!
//! Safety: requests the agent would act on are confined before sending: every exec runs
//! `/bin/true` (never fuzzer-chosen programs), and every file path or output file is mapped into
//! a private temporary directory. Everything else (JSON shape, frame types, order, sizes, stdin,
//! resizes, kill/attach of session ids) is the fuzzer's.
//! Invariants: no panic, and the connection always finishes (a hang is a finding: the per-input
//! deadline panics).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bhatti_proto::msg::{ExecRequest, FileReadRequest, FileWriteRequest, PathRequest};
use bhatti_proto::{encode_frame, Frame, FrameDecoder, FrameType};
use libfuzzer_sys::fuzz_target;
use lohar::config::SandboxConfig;
use lohar::{Agent, Mode};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "fuzz-token";

struct Harness {
    rt: tokio::runtime::Runtime,
    agent: Arc<Agent>,
    dir: std::path::PathBuf,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        // Rust's `main` ignores SIGPIPE before lohar starts; libFuzzer's `main` does not, and a
        // write to a child that already exited would kill the fuzzer instead of giving EPIPE.
        // SAFETY: setting a signal disposition to SIG_IGN at start-up, before any thread.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let dir = std::env::temp_dir().join(format!("bhatti-fuzz-lohar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = SandboxConfig {
            token: TOKEN.into(),
            ..Default::default()
        };
        let mode = Mode::Test {
            control: dir.join("control.sock"),
            forward: dir.join("forward.sock"),
        };
        let agent = rt
            .block_on(async { Agent::new(&config, &mode) })
            .expect("agent");
        Harness { rt, agent, dir }
    })
}

/// Maps any path into `dir` (keeps only the file name's safe characters).
fn confine(dir: &std::path::Path, p: &str) -> String {
    let name: String = p
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
        .take(32)
        .collect();
    let name = name.trim_start_matches('.');
    let name = if name.is_empty() { "f" } else { name };
    dir.join(name).to_string_lossy().into_owned()
}

/// Re-encodes one frame with anything the agent would act on outside the sandbox confined.
fn sanitize(dir: &std::path::Path, f: Frame) -> Vec<u8> {
    let json = |v: serde_json::Result<Vec<u8>>| v.expect("serialize");
    let payload: Vec<u8> = match f.ty {
        FrameType::ExecReq => match serde_json::from_slice::<ExecRequest>(&f.payload) {
            Ok(mut r) => {
                if !r.argv.is_empty() {
                    r.argv = vec!["/bin/true".into()];
                }
                r.output_file = r.output_file.map(|p| confine(dir, &p));
                // Keep sessions short-lived: the agent would otherwise keep them for an hour.
                r.max_idle_sec = r.max_idle_sec.map(|s| s.min(1));
                json(serde_json::to_vec(&r))
            }
            Err(_) => f.payload.to_vec(),
        },
        FrameType::FileReadReq => match serde_json::from_slice::<FileReadRequest>(&f.payload) {
            Ok(mut r) => {
                r.path = confine(dir, &r.path);
                json(serde_json::to_vec(&r))
            }
            Err(_) => f.payload.to_vec(),
        },
        FrameType::FileWriteReq => match serde_json::from_slice::<FileWriteRequest>(&f.payload) {
            Ok(mut r) => {
                r.path = confine(dir, &r.path);
                json(serde_json::to_vec(&r))
            }
            Err(_) => f.payload.to_vec(),
        },
        FrameType::FileStatReq | FrameType::FileLsReq => {
            match serde_json::from_slice::<PathRequest>(&f.payload) {
                Ok(mut r) => {
                    r.path = confine(dir, &r.path);
                    json(serde_json::to_vec(&r))
                }
                Err(_) => f.payload.to_vec(),
            }
        }
        _ => f.payload.to_vec(),
    };
    encode_frame(f.ty, &payload)
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let h = harness();
    let mut wire = Vec::new();
    if data[0] & 1 == 1 {
        wire.extend_from_slice(&encode_frame(FrameType::Auth, TOKEN.as_bytes()).unwrap());
    }
    let mut d = FrameDecoder::new();
    d.feed(&data[1..]);
    let mut consumed = 0usize;
    while let Ok(Some(f)) = d.next_frame() {
        consumed += encode_frame(f.ty, &f.payload).map_or(0, |b| b.len());
        wire.extend_from_slice(&sanitize(&h.dir, f));
    }
    wire.extend_from_slice(&data[1 + consumed.min(data.len() - 1)..]);

    h.rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(lohar::server::conn::serve_control(
            h.agent.clone(),
            Box::new(server),
        ));
        let (mut rd, mut wr) = tokio::io::split(client);
        // Write and drain at once: the agent may answer before it has read everything.
        let io = async {
            let send = async {
                let _ = wr.write_all(&wire).await;
                let _ = wr.shutdown().await;
            };
            let drain = async {
                let _ = tokio::io::copy(&mut rd, &mut tokio::io::sink()).await;
            };
            tokio::join!(send, drain);
        };
        let deadline = Duration::from_secs(20);
        tokio::time::timeout(deadline, io)
            .await
            .expect("lohar answered and closed within the deadline");
        tokio::time::timeout(deadline, task)
            .await
            .expect("serve_control finished within the deadline")
            .expect("serve_control did not panic");
    });
});
