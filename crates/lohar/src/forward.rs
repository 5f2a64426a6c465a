//! Port forwarding: FWD_REQ → dial `127.0.0.1:<port>` → raw relay with half-close.

use bhatti_proto::io::{read_frame, write_frame};
use bhatti_proto::msg::{json_frame, parse_json, FwdRequest, FwdResponse};
use bhatti_proto::FrameType;

use crate::wire::BoxStream;

/// Serves one forward connection whose AUTH (if any) has been checked; `stream` is positioned
/// at the FWD_REQ frame. Frames are read exactly (no read-ahead), so bytes the host sends right
/// after FWD_REQ reach the target untouched.
pub async fn serve(mut stream: BoxStream) {
    let req = match read_frame(&mut stream).await {
        Ok(Some(f)) if f.ty == FrameType::FwdReq => parse_json::<FwdRequest>(&f),
        Ok(Some(f)) => {
            let msg = format!("unexpected frame type 0x{:02x}", f.ty.code());
            let _ = write_frame(&mut stream, FrameType::Error, msg.as_bytes()).await;
            return;
        }
        _ => return,
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            reply(&mut stream, FwdResponse::error(e.to_string())).await;
            return;
        }
    };
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], req.port));
    let dialed: std::io::Result<BoxStream> = if crate::io_mode::epoll_free() {
        // Served by threads like lohar's own connections (see `tcp_threads`).
        crate::tcp_threads::connect(target)
            .await
            .map(|s| Box::new(s) as BoxStream)
    } else {
        tokio::net::TcpStream::connect(target).await.map(|s| {
            let _ = s.set_nodelay(true);
            Box::new(s) as BoxStream
        })
    };
    let mut target = match dialed {
        Ok(t) => t,
        Err(e) => {
            reply(
                &mut stream,
                FwdResponse::error(format!("dial 127.0.0.1:{}: {e}", req.port)),
            )
            .await;
            return;
        }
    };
    reply(&mut stream, FwdResponse::ok()).await;
    // copy_bidirectional shuts each write side down when the other side reaches EOF.
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut target).await;
}

async fn reply(stream: &mut BoxStream, resp: FwdResponse) {
    let f = json_frame(FrameType::FwdResp, &resp);
    let _ = write_frame(stream, f.ty, &f.payload).await;
}
