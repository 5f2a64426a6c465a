//! Auth, bad frames and connection limits: rejected cleanly, agent keeps serving.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

async fn expect_error_and_close(s: &mut tokio::net::UnixStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(7), s.read_to_end(&mut buf))
        .await
        .expect("agent did not close")
        .ok();
    let mut d = bhatti_proto::FrameDecoder::new();
    d.feed(&buf);
    match d.next_frame() {
        Ok(Some(f)) if f.ty == bhatti_proto::FrameType::Error => f.text(),
        other => panic!("expected ERROR frame, got {other:?} from {buf:?}"),
    }
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let mut l = Lohar::start_with(Some(serde_json::json!({"token": "s3cret-token"}))).await;
    // The right token works (the harness client carries it).
    assert_eq!(
        l.client
            .exec(&sh("echo ok"), None, None)
            .await
            .unwrap()
            .stdout,
        b"ok\n"
    );
    // No token, wrong token, token of another length.
    for tok in [None, Some("s3cret-tokex"), Some("s3cret")] {
        let err = l
            .client_with_token(tok)
            .exec(&sh("echo no"), None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("auth required"), "{tok:?}: {err}");
        let err = match l.client_with_token(tok).forward(1).await {
            Err(e) => e,
            Ok(_) => panic!("forward without the token succeeded"),
        };
        assert!(err.to_string().contains("auth required"), "{tok:?}: {err}");
    }
    // Silence: the 5 s auth deadline closes the connection.
    let mut s = tokio::net::UnixStream::connect(l.control_path())
        .await
        .unwrap();
    assert_eq!(expect_error_and_close(&mut s).await, "auth required");
    assert!(l.alive());
}

#[tokio::test]
async fn bad_frames_do_not_crash_the_agent() {
    let mut l = Lohar::start().await;
    let cases: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 0, 1, 2, 3],                      // zero length
        vec![0xff, 0xff, 0xff, 0xff, 0x10],             // oversize length
        vec![0, 0, 0, 5, 0x10, b'{', b'x', b'y', b'}'], // bad ExecRequest JSON
        vec![0, 0, 0, 1, 0x99],                         // unknown type
        vec![0, 0, 0, 1, 0x02],                         // a guest→host type sent to the guest
    ];
    for bytes in cases {
        let mut s = tokio::net::UnixStream::connect(l.control_path())
            .await
            .unwrap();
        s.write_all(&bytes).await.unwrap();
        let msg = expect_error_and_close(&mut s).await;
        assert!(!msg.is_empty());
    }
    // Random garbage, then an abrupt close mid-frame.
    let mut s = tokio::net::UnixStream::connect(l.control_path())
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 50, 0x10, 1, 2]).await.unwrap();
    drop(s);
    assert!(l.alive());
    assert_eq!(
        l.client
            .exec(&sh("echo still-here"), None, None)
            .await
            .unwrap()
            .stdout,
        b"still-here\n"
    );
}

#[tokio::test]
async fn control_connection_limit() {
    let l = Lohar::start().await;
    // 50 idle connections hold every slot while they wait to send a request.
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(
            tokio::net::UnixStream::connect(l.control_path())
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = tokio::net::UnixStream::connect(l.control_path())
        .await
        .unwrap();
    assert_eq!(
        expect_error_and_close(&mut s).await,
        "connection limit exceeded"
    );
    drop(held);
    // Slots free up once the held connections close.
    assert!(eventually(5, || async { l.client.activity().await.is_ok() }).await);
}

#[tokio::test]
async fn config_file_is_deleted_and_files_written() {
    let target = tempfile::tempdir().unwrap();
    let f = target.path().join("sub/hello.txt");
    let content = base64_encode(b"from-config");
    let l = Lohar::start_with(Some(serde_json::json!({
        "files": { f.display().to_string(): {"content": content, "mode": "0640"} }
    })))
    .await;
    assert!(
        !l.path("config.json").exists(),
        "config file must be deleted after reading"
    );
    assert_eq!(std::fs::read(&f).unwrap(), b"from-config");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
