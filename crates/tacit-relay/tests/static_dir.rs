#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `--static-dir`: files under the directory are served at `/`; nothing
//! outside it, no listing, whatever the path's encoding. Requests are
//! written raw, so that no client normalizes the path first.

mod common;

use common::*;
use tacit_relay::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status line and body of `GET path`.
async fn get(relay: &Relay, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(relay.local_addr())
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn serves_files_and_refuses_traversal_and_listing() {
    let dir = TempDir::new("static");
    let site = dir.path("site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("index.html"), "<!doctype html>index").unwrap();
    std::fs::write(site.join("pkg/app.js"), "export const x = 1;").unwrap();
    std::fs::write(site.join(".hidden"), "hidden").unwrap();
    // A secret beside the served directory, and a link out of it.
    std::fs::write(dir.path("secret.txt"), "SECRET").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path("secret.txt"), site.join("link.txt")).unwrap();
    let mut config = config(&dir.db());
    config.static_dir = Some(site.clone());
    let relay = Relay::bind(config).await.unwrap();

    let (status, body) = get(&relay, "/").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "<!doctype html>index");
    let (status, body) = get(&relay, "/pkg/app.js").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "export const x = 1;");

    for path in [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/pkg/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/%252e%252e/secret.txt",
        "/link.txt",
        "/.hidden",
        "/pkg",
        "/pkg/",
        "//secret.txt",
        "/missing.js",
    ] {
        let (status, body) = get(&relay, path).await;
        assert!(
            status.contains("404") || status.contains("400"),
            "{path}: {status}"
        );
        assert!(
            !body.contains("SECRET") && !body.contains("hidden"),
            "{path}"
        );
        assert!(!body.contains("app.js"), "{path}: a listing");
    }
    // The metrics live on a listener of their own, never beside the files.
    let (status, _) = get(&relay, "/metrics").await;
    assert!(status.contains("404"), "{status}");
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_static_dir_nothing_is_served() {
    let dir = TempDir::new("no-static");
    std::fs::write(dir.path("index.html"), "index").unwrap();
    let relay = start(&dir.db()).await;
    let (status, _) = get(&relay, "/").await;
    assert!(status.contains("404"), "{status}");
    relay.shutdown().await.unwrap();
}

/// A large file read slowly, past the upgrade deadline, still arrives
/// whole: a file's connection gets the deadline an attachment of its size
/// would.
#[tokio::test]
async fn a_large_file_read_slowly_outlasts_the_upgrade_deadline() {
    let dir = TempDir::new("static-slow");
    let site = dir.path("site");
    std::fs::create_dir_all(&site).unwrap();
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.join("big.wasm"), &big).unwrap();
    let mut config = config(&dir.db());
    config.static_dir = Some(site);
    config.upgrade_timeout = std::time::Duration::from_millis(300);
    let relay = Relay::bind(config).await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(relay.local_addr()).await.unwrap();
    s.write_all(b"GET /big.wasm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Read a little at a time, pausing well past the upgrade deadline in
    // all.
    let mut raw = Vec::new();
    let mut piece = vec![0u8; 256 * 1024];
    for _ in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let n = s.read(&mut piece).await.unwrap();
        raw.extend_from_slice(&piece[..n]);
    }
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    assert!(raw[split..] == big[..], "the file was cut");
    relay.shutdown().await.unwrap();
}
