#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Delivery tokens end to end (`docs/client.md`, "Delivery tokens"): each
//! client sets one at login and sends it in its texts; correspondents
//! present it on anonymous submissions; first contact, and a token gone
//! stale, take the logged-in path within the account's tokenless quota,
//! and past the quota the send fails with a typed error.

mod common;

use common::*;
use tacit_client::{Client, ClientError};
use tacit_relay::{Rate, Relay};
use tacit_relay_proto::{ErrorCode, Request, Submit};

/// The tokenless quota the relay runs with: three units per account, no
/// refill, so that every unit a test spends is counted.
const QUOTA: Rate = Rate::new(0.0, 3);

async fn relay(dir: &TempDir) -> Relay {
    let mut config = relay_config(&dir.path("relay.db"), "127.0.0.1:0".parse().unwrap());
    config.tokenless_rate_per_account = QUOTA;
    Relay::bind(config).await.unwrap()
}

async fn started(dir: &TempDir, name: &str, at: std::net::SocketAddr) -> Client {
    let mut client = Client::start(registered(dir, name, at).await)
        .await
        .unwrap();
    drained(&mut client).await;
    client
}

async fn logged_in_submits(relay: &Relay) -> u64 {
    requests(&metrics(relay).await, "submit", true)
}

#[tokio::test]
async fn correspondents_present_tokens_and_strangers_meet_the_quota() {
    let dir = TempDir::new("tokens");
    let relay = relay(&dir).await;
    let at = relay.local_addr();
    let mut alice = started(&dir, "alice", at).await;
    let mut bob = started(&dir, "bob", at).await;

    // First contact: Alice holds no token for Bob; her text is refused
    // anonymously and stored from her logged-in connection (one unit).
    alice.send_text("bob", "hi bob").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "hi bob");
    assert_eq!(logged_in_submits(&relay).await, 1);
    // Bob's reply carries his token, and presents Alice's (her text
    // carried it): anonymous.
    bob.send_text("alice", "hi alice").await.unwrap();
    assert_eq!(next_text(&mut alice).await, "hi alice");
    // From now on Alice presents Bob's token: more texts than her quota
    // holds are all stored, none of them logged in.
    for i in 0..5 {
        let sent = alice.send_text("bob", &format!("{i}")).await.unwrap();
        assert_eq!(sent.stored_for, vec![addr("bob", 1)]);
        assert_eq!(next_text(&mut bob).await, format!("{i}"));
    }
    bob.send_text("alice", "ok").await.unwrap();
    assert_eq!(next_text(&mut alice).await, "ok");
    assert_eq!(logged_in_submits(&relay).await, 1);

    // A stranger without the token: refused anonymously...
    let raw = raw_request(
        at,
        Request::Submit(Submit::new(addr("bob", 1), b"spam".to_vec(), None).unwrap()),
    )
    .await;
    assert_eq!(raw.unwrap_err().code, ErrorCode::DeliveryTokenRefused);
    // ...and, logged in, held to the quota: Bob never answers, so Mallory
    // never learns his token (his delivery receipts do not carry it).
    let mut mallory = started(&dir, "mallory", at).await;
    for i in 0..3 {
        mallory.send_text("bob", &format!("buy {i}")).await.unwrap();
        assert_eq!(next_text(&mut bob).await, format!("buy {i}"));
    }
    let refused = mallory.send_text("bob", "buy more").await.unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::DeliveryTokenRefused {
                retry_after_ms: Some(_)
            }
        ),
        "{refused:?}"
    );
    // The other direction is open to Bob through Mallory's token.
    bob.send_text("mallory", "stop").await.unwrap();
    assert_eq!(next_text(&mut mallory).await, "stop");
    // Now Mallory holds Bob's token: anonymous, no quota needed.
    mallory.send_text("bob", "sorry").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "sorry");

    for c in [alice, bob, mallory] {
        c.shutdown().await;
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stale_token_is_retried_within_the_quota_then_a_typed_error() {
    let dir = TempDir::new("stale-token");
    let relay = relay(&dir).await;
    let at = relay.local_addr();
    let mut alice = started(&dir, "alice", at).await;
    let mut bob = started(&dir, "bob", at).await;
    // Tokens exchanged both ways (Alice's first contact: one unit).
    alice.send_text("bob", "hi").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "hi");
    bob.send_text("alice", "hello").await.unwrap();
    assert_eq!(next_text(&mut alice).await, "hello");

    // Bob rotates: the token Alice holds is now wrong. Her texts are
    // refused anonymously and stored logged in, within her quota (the
    // two units left).
    bob.rotate_delivery_token().await.unwrap();
    for text in ["after rotation 1", "after rotation 2"] {
        let sent = alice.send_text("bob", text).await.unwrap();
        assert_eq!(sent.stored_for, vec![addr("bob", 1)]);
        assert_eq!(next_text(&mut bob).await, text);
    }
    assert_eq!(logged_in_submits(&relay).await, 3);
    // Past the quota: a typed error, nothing stored, nothing lost
    // silently.
    let refused = alice.send_text("bob", "lost?").await.unwrap_err();
    assert!(
        matches!(refused, ClientError::DeliveryTokenRefused { .. }),
        "{refused:?}"
    );
    assert!(!alice
        .history()
        .await
        .unwrap()
        .iter()
        .any(|e| e.text == "lost?"));
    // Bob's next text carries his new token; Alice's send goes through
    // anonymously again.
    bob.send_text("alice", "new token").await.unwrap();
    assert_eq!(next_text(&mut alice).await, "new token");
    alice.send_text("bob", "resent").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "resent");
    // Three stored logged in, and the refused attempt.
    assert_eq!(logged_in_submits(&relay).await, 4);

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}
