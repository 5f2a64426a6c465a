//! File read/write/stat/ls.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bhatti_proto::msg::FileReadRequest;

use crate::harness::*;

#[tokio::test]
async fn write_then_read_round_trip_with_mode_and_parents() {
    let l = Lohar::start().await;
    let p = l.path("a/b/c.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    l.client
        .write_file_bytes(p.to_str().unwrap(), 0o600, &data)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), data);
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let r = l
        .client
        .read_file(&FileReadRequest {
            path: p.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.header.size, data.len() as u64);
    assert_eq!(r.header.mode, "0600");
    assert_eq!(r.read_all().await.unwrap(), data);
    // No temp files left behind.
    let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("c.bin")]);
}

#[tokio::test]
async fn errors_are_clear() {
    let l = Lohar::start().await;
    let missing = l.path("missing");
    let err = l
        .client
        .read_file_all(missing.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = l
        .client
        .read_file_all(l.dir.path().to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    let err = l.client.read_file_all("relative/path").await.unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
    let err = l.client.stat(missing.to_str().unwrap()).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = l
        .client
        .write_file_bytes(l.dir.path().to_str().unwrap(), 0o644, b"x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    let err = l.client.ls(missing.to_str().unwrap()).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn write_cap_is_100_mib() {
    let l = Lohar::start().await;
    let p = l.path("big");
    let max = 100 * 1024 * 1024u64;
    let err = l
        .client
        .write_file(p.to_str().unwrap(), 0o644, max + 1, tokio::io::repeat(b'x'))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(!p.exists());
    use tokio::io::AsyncReadExt;
    l.client
        .write_file(
            p.to_str().unwrap(),
            0o644,
            max,
            tokio::io::repeat(b'y').take(max),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), max);
}

#[tokio::test]
async fn concurrent_readers_never_see_partial_writes() {
    let l = Lohar::start().await;
    let p = l.path("atomic.txt");
    let size = 512 * 1024;
    let a = vec![b'a'; size];
    let b = vec![b'b'; size];
    l.client
        .write_file_bytes(p.to_str().unwrap(), 0o644, &a)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let p = p.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let content = std::fs::read(&p).unwrap();
                assert_eq!(content.len(), size, "partial content seen");
                assert!(
                    content.iter().all(|&c| c == content[0]),
                    "mixed content seen"
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..20 {
        let data = if i % 2 == 0 { &b } else { &a };
        l.client
            .write_file_bytes(p.to_str().unwrap(), 0o644, data)
            .await
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[tokio::test]
async fn line_mode_reads() {
    let l = Lohar::start().await;
    let p = l.path("lines.txt");
    let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&p, &text).unwrap();
    let path = p.display().to_string();
    let read = |offset, limit, max_bytes| {
        let req = FileReadRequest {
            path: path.clone(),
            offset,
            limit,
            max_bytes,
        };
        let c = l.client.clone();
        async move {
            String::from_utf8(c.read_file(&req).await.unwrap().read_all().await.unwrap()).unwrap()
        }
    };
    assert_eq!(
        read(Some(10), Some(3), None).await,
        "line 10\nline 11\nline 12\n"
    );
    assert_eq!(read(None, Some(2), None).await, "line 1\nline 2\n");
    assert_eq!(read(Some(99), Some(10), None).await, "line 99\nline 100\n");
    assert_eq!(read(Some(1), None, Some(10)).await, "line 1\nlin");
    assert_eq!(read(Some(5), Some(100), Some(14)).await, "line 5\nline 6\n");
    // Offset alone does not switch to line mode (whole file).
    assert_eq!(read(Some(50), None, None).await, text);
    // A last line without newline is re-terminated.
    std::fs::write(&p, "a\nb").unwrap();
    assert_eq!(read(None, Some(5), None).await, "a\nb\n");
}

#[tokio::test]
async fn stat_and_ls() {
    let l = Lohar::start().await;
    std::fs::create_dir(l.path("d")).unwrap();
    std::fs::write(l.path("d/f"), b"12345").unwrap();
    std::os::unix::fs::symlink("f", l.path("d/link")).unwrap();
    let st = l
        .client
        .stat(l.path("d/link").to_str().unwrap())
        .await
        .unwrap();
    assert_eq!((st.size, st.is_dir), (5, false));
    let ls = l.client.ls(l.path("d").to_str().unwrap()).await.unwrap();
    let names: Vec<_> = ls.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["f", "link"]);
    assert_eq!(ls[0].size, 5);
    let err = l
        .client
        .ls(l.path("d/f").to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[tokio::test]
async fn ls_is_capped_with_a_true_total() {
    let l = Lohar::start().await;
    let d = l.path("many");
    std::fs::create_dir(&d).unwrap();
    for i in 0..10_001 {
        std::fs::File::create(d.join(format!("f{i:05}"))).unwrap();
    }
    let ls = l.client.ls(d.to_str().unwrap()).await.unwrap();
    assert_eq!(ls.len(), 10_001);
    assert_eq!(
        ls[10_000].name,
        "... truncated at 10000 entries (10001 total)"
    );
}
