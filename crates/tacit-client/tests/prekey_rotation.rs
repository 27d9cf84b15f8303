#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The rotation of a device's medium-term prekeys: past
//! `signed_prekey_max_age`, a login replaces the signed prekey and the
//! fallback prekey at the relay.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tacit_client::{Client, Event};

/// The ids of the signed and fallback prekeys the relay holds for `user`.
fn relay_prekey_ids(relay_db: &Path, user: &str) -> (Option<u32>, Option<u32>) {
    let conn = rusqlite::Connection::open(relay_db).unwrap();
    conn.query_row(
        "SELECT signed_prekey_id, fallback_prekey_id FROM devices WHERE user_id = ?1",
        [user],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test]
async fn a_rotation_replaces_the_fallback_prekey_at_the_relay() {
    let dir = TempDir::new("rotation");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let mut config = registered(&dir, "alice", relay.local_addr()).await;
    let (signed, fallback) = relay_prekey_ids(&relay_db, "alice");
    assert!(signed.is_some() && fallback.is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    config.signed_prekey_max_age = Duration::ZERO;
    let mut alice = Client::start(config).await.unwrap();
    let (rotated, _) = wait_for(&mut alice, |e| match e {
        Event::PreKeysPublished {
            signed_prekey_rotated,
            ..
        } => Some(*signed_prekey_rotated),
        _ => None,
    })
    .await;
    assert!(rotated);
    let (signed_now, fallback_now) = relay_prekey_ids(&relay_db, "alice");
    assert_ne!(signed_now, signed);
    assert!(fallback_now.is_some());
    assert_ne!(fallback_now, fallback);
    alice.shutdown().await;
    relay.shutdown().await.unwrap();
}
