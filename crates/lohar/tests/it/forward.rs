//! Port forwarding to a local TCP server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test]
async fn forward_relays_with_half_close() {
    let l = Lohar::start().await;
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = server.accept().await.unwrap();
            tokio::spawn(async move {
                // Echo everything, then answer once the client half-closes.
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.unwrap();
                s.write_all(&all).await.unwrap();
                s.write_all(b"|eof-seen").await.unwrap();
            });
        }
    });
    for _ in 0..3 {
        let mut t = l.client.forward(port).await.unwrap();
        let payload = vec![b'z'; 200_000];
        t.write_all(&payload).await.unwrap();
        t.shutdown().await.unwrap();
        let mut back = Vec::new();
        t.read_to_end(&mut back).await.unwrap();
        assert_eq!(back.len(), payload.len() + 9);
        assert!(back.ends_with(b"|eof-seen"));
    }
}

#[tokio::test]
async fn forward_to_closed_port_is_an_error() {
    let l = Lohar::start().await;
    let port = {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let err = match l.client.forward(port).await {
        Err(e) => e,
        Ok(_) => panic!("forward to a closed port succeeded"),
    };
    assert!(err.to_string().contains("dial"), "{err}");
}
