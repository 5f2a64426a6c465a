//! One connection: token check, then exactly one request frame dispatched by type.

use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::io::read_frame;
use bhatti_proto::msg::{
    parse_json, ExecKillRequest, ExecRequest, FileReadRequest, FileWriteRequest, FsRequest,
    PathRequest, ProcStarted, WatchRequest,
};
use bhatti_proto::{Frame, FrameType};
use futures_util::StreamExt;

use super::auth;
use crate::exec::{detached, piped, session};
use crate::wire::{split, BoxStream, FrameReader, FrameWriter};
use crate::{files, forward, fsops, Agent};

/// How long a connection may sit idle before sending its request frame.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves a control connection (port 1024 / the control socket).
pub async fn serve_control(agent: Arc<Agent>, stream: BoxStream) {
    let (mut rd, wr) = split(stream);
    if let Some(token) = agent.token.as_deref() {
        let ok = matches!(
            tokio::time::timeout(auth::AUTH_TIMEOUT, rd.next()).await,
            Ok(Some(Ok(f))) if auth::check(&f, token)
        );
        if !ok {
            let _ = wr.error("auth required").await;
            wr.shutdown().await;
            return;
        }
    }
    let frame = match tokio::time::timeout(REQUEST_TIMEOUT, rd.next()).await {
        Ok(Some(Ok(f))) => f,
        Ok(Some(Err(e))) => {
            let _ = wr.error(format!("bad frame: {e}")).await;
            wr.shutdown().await;
            return;
        }
        _ => return,
    };
    dispatch(agent, frame, rd, wr.clone()).await;
    wr.shutdown().await;
}

async fn dispatch(agent: Arc<Agent>, frame: Frame, mut rd: FrameReader, wr: FrameWriter) {
    match frame.ty {
        FrameType::ExecReq => match parse_json::<ExecRequest>(&frame) {
            Ok(req) => exec(agent, req, rd, wr).await,
            Err(e) => {
                let _ = wr.error(e.to_string()).await;
            }
        },
        FrameType::ExecListReq => {
            let _ = wr
                .send_json(FrameType::ExecListResp, &agent.sessions.list())
                .await;
        }
        FrameType::ExecKill => {
            let res = parse_json::<ExecKillRequest>(&frame)
                .map_err(|e| e.to_string())
                .and_then(|r| session::kill(&agent, &r.session_id).map_err(|e| e.to_string()));
            let _ = match res {
                Ok(()) => wr.exit(0).await,
                Err(e) => wr.error(e).await,
            };
        }
        FrameType::ActivityReq => {
            let (active, attached) = agent.sessions.counts();
            let _ = wr
                .send_json(
                    FrameType::ActivityResp,
                    &agent.activity.report(active, attached),
                )
                .await;
        }
        FrameType::FileReadReq => match parse_json::<FileReadRequest>(&frame) {
            Ok(req) => files::read(&agent, req, &wr).await,
            Err(e) => {
                let _ = wr.error(e.to_string()).await;
            }
        },
        FrameType::FileWriteReq => match parse_json::<FileWriteRequest>(&frame) {
            Ok(req) => files::write(&agent, req, &mut rd, &wr).await,
            Err(e) => {
                let _ = wr.error(e.to_string()).await;
            }
        },
        FrameType::FileStatReq => {
            let res = match parse_json::<PathRequest>(&frame) {
                Ok(r) => files::stat(&r.path).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = match res {
                Ok(info) => wr.send_json(FrameType::FileStatResp, &info).await,
                Err(e) => wr.error(e).await,
            };
        }
        FrameType::FileLsReq => {
            let res = match parse_json::<PathRequest>(&frame) {
                Ok(r) => files::ls(&r.path).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = match res {
                Ok(list) => wr.send_json(FrameType::FileLsResp, &list).await,
                Err(e) => wr.error(e).await,
            };
        }
        FrameType::FsReq | FrameType::WatchReq if !agent.fs_ops => {
            let _ = wr
                .error("filesystem operations are disabled (test mode without LOHAR_FS_OPS=1)")
                .await;
        }
        FrameType::FsReq => {
            let res = match parse_json::<FsRequest>(&frame) {
                Ok(r) => fsops::handle(&agent, r).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = match res {
                Ok(resp) => wr.send_json(FrameType::FsResp, &resp).await,
                Err(e) => wr.error(e).await,
            };
        }
        FrameType::WatchReq => match parse_json::<WatchRequest>(&frame) {
            Ok(req) => fsops::watch(req, rd, &wr).await,
            Err(e) => {
                let _ = wr.error(e.to_string()).await;
            }
        },
        other => {
            let _ = wr
                .error(format!("unexpected frame type 0x{:02x}", other.code()))
                .await;
        }
    }
}

async fn exec(agent: Arc<Agent>, req: ExecRequest, rd: FrameReader, wr: FrameWriter) {
    if let Some(id) = req.session_id.as_deref() {
        match agent.sessions.get(id) {
            Some(s) => session::relay(agent.clone(), s, req.if_detached, rd, wr).await,
            None => {
                let _ = wr.error(session::SessionError::NotFound.to_string()).await;
            }
        }
        return;
    }
    if req.argv.is_empty() || req.argv[0].is_empty() {
        let _ = wr.error("argv required").await;
        return;
    }
    agent.activity.touch();
    if req.detach {
        detached::run(agent, req, wr).await;
    } else if req.tty || req.session {
        match session::start(&agent, &req, None) {
            Ok(s) => {
                if req.report_pid {
                    let _ = wr
                        .send_json(FrameType::ProcStarted, &ProcStarted { pid: s.pid() })
                        .await;
                }
                session::relay(agent.clone(), s, false, rd, wr).await
            }
            Err(e) => {
                let _ = wr.error(e.to_string()).await;
            }
        }
    } else {
        piped::run(agent, req, rd, wr).await;
    }
}

/// Serves a forward connection (port 1025 / the forward socket).
pub async fn serve_forward(agent: Arc<Agent>, mut stream: BoxStream) {
    if let Some(token) = agent.token.as_deref() {
        let ok = matches!(
            tokio::time::timeout(auth::AUTH_TIMEOUT, read_frame(&mut stream)).await,
            Ok(Ok(Some(f))) if auth::check(&f, token)
        );
        if !ok {
            let _ = bhatti_proto::io::write_frame(&mut stream, FrameType::Error, b"auth required")
                .await;
            return;
        }
    }
    forward::serve(stream).await;
}
