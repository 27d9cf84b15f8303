#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Tests against the built `tacit-relay` binary.

mod common;

use common::*;
use tacit_relay_proto::Reply;

#[tokio::test]
async fn acknowledged_messages_survive_sigkill() {
    let dir = TempDir::new("bin-kill");
    let bob = Device::new("bob", 1, 2);
    let (mut child, at) = spawn(&dir.db()).await;
    drop(registered(at, &bob).await);
    let mut a = connect(at).await;
    let mut ids = Vec::new();
    for i in 0..50u8 {
        match a.submit(&bob.address, &[i; 10]).await {
            Ok(Reply::Submitted { message_id }) => ids.push(message_id),
            other => panic!("{other:?}"),
        }
    }
    // No goodbye: SIGKILL right after the last acknowledgement.
    child.kill().await.unwrap();
    let (mut child, at) = spawn(&dir.db()).await;
    let mut b = connect(at).await;
    b.login(&bob).await.unwrap();
    let got = b.drain_ids().await;
    assert_eq!(got, ids);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let dir = TempDir::new("bin-term");
    let (mut child, at) = spawn(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(at, &bob).await;
    assert!(b.drain().await.is_empty());
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    // The connection is closed by the relay, which then exits cleanly.
    b.expect_closed().await;
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn help_lists_the_flags() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--db",
        "--queue-cap",
        "--message-ttl-secs",
        "--max-frame-size",
        "--max-db-bytes",
        "--rate-unauthenticated",
        "--rate-per-ip",
        "--rate-authenticated",
        "--tls-cert",
        "--tls-key",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}
