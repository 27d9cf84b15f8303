#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Envelopes under another user key than the trusted one: held sealed in
//! the store and acknowledged, bounded per claimed user, released by
//! accepting the key or deleted by rejecting it.

mod common;

use common::*;
use rand_core::OsRng;
use tacit::envelope::ContentKind;
use tacit::identity::UserKeyPair;
use tacit_client::{Client, Event};

#[tokio::test]
async fn a_flood_as_a_known_user_is_held_bounded_and_leaves_the_mailbox_open() {
    let dir = TempDir::new("held-flood");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice = Client::start(registered(&dir, "alice", at).await)
        .await
        .unwrap();
    let mut bob_config = registered(&dir, "bob", at).await;
    // Mallory's device is not on the relay: it can only reach a mailbox
    // open to anonymous submissions without a token.
    bob_config.delivery_token = false;
    let mut bob = Client::start(bob_config.clone()).await.unwrap();
    drained(&mut bob).await;
    alice.send_text("bob", "hi, it's alice").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "hi, it's alice");

    // Mallory claims to be alice.7 under her own user key, with a valid
    // certificate from that key, and writes to bob through the relay as
    // anyone can.
    let mut mallory = sender(at, addr("alice", 7), UserKeyPair::generate(&mut OsRng));
    mallory.reach(&addr("bob", 1)).await;
    let flood = 40;
    for i in 0..flood {
        let text = format!("it's alice, really ({i})");
        mallory
            .send(&addr("bob", 1), ContentKind::Text, text.into_bytes())
            .await;
    }

    // Bob shows none of it, holds them (each reported), and acknowledges
    // them all: the mailbox is empty again.
    let mut held = 0;
    while held < flood {
        let (user_id, _) = wait_for(&mut bob, |e| match e {
            Event::Held { user_id, .. } => Some(user_id.clone()),
            Event::Message(m) => panic!("shown: {m:?}"),
            _ => None,
        })
        .await;
        assert_eq!(user_id, "alice");
        held += 1;
    }
    eventually(|| queued(&relay_db, "bob") == 0).await;
    assert_eq!(bob.history().await.unwrap().len(), 1);

    // Held across a restart, at most 16 of them: rejecting deletes those.
    bob.shutdown().await;
    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut bob).await;
    assert_eq!(bob.reject_user_key("alice").await.unwrap(), 16);
    assert_eq!(bob.reject_user_key("alice").await.unwrap(), 0);

    // The real alice is still trusted and read.
    alice.send_text("bob", "still me").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "still me");
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}
