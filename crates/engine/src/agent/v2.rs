//! Protocol v2 operations (frames 0x70–0x75): execs that report their pid and take signals,
//! filesystem operations and directory watches. Used by the E2B facade.

use bhatti_proto::msg::{
    encode_signal, json_frame, parse_json, ExecRequest, FsRequest, FsResponse, ProcStarted,
    WatchEvent, WatchRequest,
};
use bhatti_proto::FrameType;

use super::{AgentChannel, AgentClient, AgentError, ChannelReader, ChannelWriter};

impl AgentClient {
    /// Starts an exec or a new session with `report_pid` and waits for its PROC_STARTED:
    /// returns the pid and the channel (whose events follow as usual).
    pub async fn exec_started(&self, req: &ExecRequest) -> Result<(i32, AgentChannel), AgentError> {
        let req = ExecRequest {
            report_pid: true,
            ..req.clone()
        };
        let mut ch = self.exec_stream(&req).await?;
        match ch.next_frame().await? {
            Some(f) if f.ty == FrameType::ProcStarted => {
                let p: ProcStarted = parse_json(&f)?;
                Ok((p.pid, ch))
            }
            Some(f) if f.ty == FrameType::Error => Err(AgentError::Remote(f.text())),
            Some(f) => Err(AgentError::Unexpected(format!(
                "{} before PROC_STARTED (lohar too old for protocol v2?)",
                f.ty
            ))),
            None => Err(AgentError::Unexpected("end of stream".into())),
        }
    }

    /// One filesystem operation.
    pub async fn fs(&self, req: &FsRequest) -> Result<FsResponse, AgentError> {
        let mut ch = self.request(&json_frame(FrameType::FsReq, req)).await?;
        let f = tokio::time::timeout(std::time::Duration::from_secs(60), ch.next_frame())
            .await
            .map_err(|_| AgentError::Timeout(std::time::Duration::from_secs(60)))??;
        match f {
            Some(f) if f.ty == FrameType::FsResp => Ok(parse_json(&f)?),
            Some(f) if f.ty == FrameType::Error => Err(AgentError::Remote(f.text())),
            Some(f) => Err(AgentError::Unexpected(f.ty.to_string())),
            None => Err(AgentError::Unexpected("end of stream".into())),
        }
    }

    /// Starts watching a directory; returns once the watch is in place.
    pub async fn watch(&self, req: &WatchRequest) -> Result<WatchStream, AgentError> {
        let ch = self.request(&json_frame(FrameType::WatchReq, req)).await?;
        let (rd, wr) = ch.into_split();
        let mut w = WatchStream { rd, _wr: wr };
        match w.next().await? {
            Some(ev) if ev.op == "start" => Ok(w),
            Some(ev) => Err(AgentError::Unexpected(format!(
                "watch event {} before start",
                ev.op
            ))),
            None => Err(AgentError::Unexpected("end of stream".into())),
        }
    }
}

/// The events of a directory watch; dropping it ends the watch.
pub struct WatchStream {
    rd: ChannelReader,
    // Kept open: lohar ends the watch when the host's side closes.
    _wr: ChannelWriter,
}

impl WatchStream {
    /// The next change; `Ok(None)` when the watch ended (directory gone).
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, AgentError> {
        match self.rd.next_frame().await? {
            Some(f) if f.ty == FrameType::WatchEvent => Ok(Some(parse_json(&f)?)),
            Some(f) if f.ty == FrameType::Error => Err(AgentError::Remote(f.text())),
            Some(f) => Err(AgentError::Unexpected(f.ty.to_string())),
            None => Ok(None),
        }
    }
}

impl ChannelWriter {
    /// v2: sends `sig` to the exec's or session's process group.
    pub async fn signal(&mut self, sig: i32) -> Result<(), AgentError> {
        self.frame(FrameType::Signal, &encode_signal(sig)).await
    }
}
