#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Profile `tacit-v2` through the relay: new clients publish KEM prekeys
//! and start `tacit-v2` sessions, the relay's KEM stock is refilled, an
//! old store is upgraded at start, and a relay that strips the KEM prekey
//! from a bundle gets the first message refused.

mod common;

use std::path::Path;

use common::*;
use tacit::store::{Changes, PreKeyStore as _, Store as _};
use tacit::wire::WireMessage as _;
use tacit::Account;
use tacit_client::{register, Client, ClientConfig, Event, SessionProfile};
use tacit_relay_proto::{Bundles, FetchBundles, Reply, Request};

/// Bob's bundle, fetched from the relay (this claims one-time keys).
async fn bundle(relay: std::net::SocketAddr, bob: &tacit::Address) -> Vec<u8> {
    match raw_request(relay, Request::FetchBundles(FetchBundles::device(bob))).await {
        Ok(Reply::Bundles(Bundles { mut bundles, .. })) => bundles.pop().unwrap().bundle.to_wire(),
        other => panic!("{other:?}"),
    }
}

/// `(one-time prekeys, one-time KEM prekeys, has a last-resort KEM prekey)`
/// the relay stores for `user`'s device 1.
fn relay_stock(relay_db: &Path, user: &str) -> (u32, u32, bool) {
    let db = rusqlite::Connection::open(relay_db).unwrap();
    let count = |table: &str| -> u32 {
        db.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?1"),
            [user],
            |r| r.get(0),
        )
        .unwrap()
    };
    let last_resort: bool = db
        .query_row(
            "SELECT kem_prekey IS NOT NULL FROM devices WHERE user_id = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap();
    (
        count("one_time_prekeys"),
        count("one_time_kem_prekeys"),
        last_resort,
    )
}

/// Makes the relay forget `user`'s KEM prekeys: a relay from before
/// `tacit-v2`, or one that lies.
fn strip_kem_prekeys(relay_db: &Path, user: &str) {
    let db = rusqlite::Connection::open(relay_db).unwrap();
    db.execute(
        "UPDATE devices SET kem_prekey_id = NULL, kem_prekey = NULL, kem_prekey_signature = NULL WHERE user_id = ?1",
        [user],
    )
    .unwrap();
    db.execute(
        "DELETE FROM one_time_kem_prekeys WHERE user_id = ?1",
        [user],
    )
    .unwrap();
}

/// Rewrites the account in `config`'s store as an account from before
/// `tacit-v2` would be: the same keys, no KEM prekeys. The record is the
/// version-1 form of the account (its version-2 record without the KEM
/// section), which the core reads as an account without KEM prekeys.
fn downgrade_store(config: &ClientConfig) {
    let mut store =
        tacit_sqlite::SqliteStore::open(&config.store_path, config.store_key.as_bytes()).unwrap();
    let account = store.load_account().unwrap().unwrap();
    let v2 = account.to_bytes();
    // The KEM section ends the record: `Some` (1), the last-resort key's id
    // (1, a one-byte varint), its 64-byte seed, then its signature.
    let signature = account
        .kem_last_resort_prekey()
        .unwrap()
        .signature()
        .to_bytes();
    let at = v2
        .windows(64)
        .position(|w| w == signature)
        .expect("the signature is in the record");
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&v2[1..at - 64 - 2]);
    let old = Account::from_bytes(&v1).expect("a version-1 account record");
    assert!(!old.has_kem_prekeys());
    assert_eq!(old.identity().public_key(), account.identity().public_key());
    store.commit(Changes::new().with_account(old)).unwrap();
}

#[tokio::test]
async fn two_clients_start_a_tacit_v2_session_through_the_relay() {
    let dir = TempDir::new("pq-session");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = client_config(&dir, "bob", at);
    let registration = register(&bob_config, addr("bob", 1)).await.unwrap();
    // Registration published the KEM prekeys.
    assert_eq!(registration.one_time_kem_prekeys, 50);
    assert_eq!(relay_stock(&relay_db, "bob"), (100, 50, true));

    let alice = Client::start(alice_config).await.unwrap();
    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut bob).await;
    alice.send_text("bob", "post-quantum hello").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "post-quantum hello");
    bob.send_text("alice", "and back").await.unwrap();

    let sessions = alice.sessions("bob").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].address, addr("bob", 1));
    assert_eq!(sessions[0].profile, SessionProfile::V2);
    let sessions = bob.sessions("alice").await.unwrap();
    assert_eq!(sessions[0].profile, SessionProfile::V2);
    // Alice's bundle fetch claimed one one-time KEM prekey with the
    // one-time prekey.
    assert_eq!(relay_stock(&relay_db, "bob"), (99, 49, true));
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_time_kem_prekeys_are_refilled_when_the_relay_says_they_are_low() {
    let dir = TempDir::new("pq-refill");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let mut bob_config = client_config(&dir, "bob", at);
    bob_config.one_time_kem_prekeys = 12;
    bob_config.prekeys_low = 5;
    register(&bob_config, addr("bob", 1)).await.unwrap();
    assert_eq!(relay_stock(&relay_db, "bob"), (100, 12, true));
    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut bob).await;
    // Three claims leave 9 one-time KEM prekeys, under the relay's mark of
    // 10 (the 97 one-time prekeys are not low).
    for _ in 0..3 {
        let wire = bundle(at, &addr("bob", 1)).await;
        assert_eq!(
            tacit::wire::PreKeyBundleMessage::from_wire(&wire)
                .unwrap()
                .version(),
            2
        );
    }
    let ((kem_uploaded, kem_stored), _) = wait_for(&mut bob, |e| match e {
        Event::PreKeysPublished {
            kem_uploaded,
            kem_stored,
            ..
        } => Some((*kem_uploaded, *kem_stored)),
        _ => None,
    })
    .await;
    assert_eq!((kem_uploaded, kem_stored), (3, 12));
    assert_eq!(relay_stock(&relay_db, "bob").1, 12);
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_store_from_before_tacit_v2_is_upgraded_at_start() {
    let dir = TempDir::new("pq-upgrade");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    // Bob's store and the relay as they were before tacit-v2.
    downgrade_store(&bob_config);
    strip_kem_prekeys(&relay_db, "bob");
    let v1 = bundle(at, &addr("bob", 1)).await;
    assert_eq!(
        tacit::wire::PreKeyBundleMessage::from_wire(&v1)
            .unwrap()
            .version(),
        1
    );

    // At start, Bob's account gets KEM prekeys, and at login they are
    // published.
    let mut bob = Client::start(bob_config.clone()).await.unwrap();
    let ((kem_uploaded, kem_stored), _) = wait_for(&mut bob, |e| match e {
        Event::PreKeysPublished {
            kem_uploaded,
            kem_stored,
            ..
        } => Some((*kem_uploaded, *kem_stored)),
        _ => None,
    })
    .await;
    assert_eq!((kem_uploaded, kem_stored), (50, 50));
    let (_, kem, last_resort) = relay_stock(&relay_db, "bob");
    assert_eq!((kem, last_resort), (50, true));

    // Alice now starts a tacit-v2 session.
    let alice = Client::start(alice_config).await.unwrap();
    alice.send_text("bob", "upgraded").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "upgraded");
    assert_eq!(
        alice.sessions("bob").await.unwrap()[0].profile,
        SessionProfile::V2
    );
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_relay_that_strips_the_kem_prekey_gets_the_first_message_refused() {
    let dir = TempDir::new("pq-downgrade");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    // The relay serves Bob's bundle without its KEM prekey (version 1),
    // although Bob published KEM prekeys.
    strip_kem_prekeys(&relay_db, "bob");
    let alice = Client::start(alice_config).await.unwrap();
    alice.send_text("bob", "downgraded").await.unwrap();
    // Alice, given a version-1 bundle, made a tacit-v1 session.
    assert_eq!(
        alice.sessions("bob").await.unwrap()[0].profile,
        SessionProfile::V1
    );
    // Bob refuses the classical first message: dropped, never shown.
    let mut bob = Client::start(bob_config).await.unwrap();
    let (reason, before) = wait_for(&mut bob, |e| match e {
        Event::Dropped { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("classical"), "{reason}");
    assert!(!before.iter().any(|e| matches!(e, Event::Message(_))));
    assert!(bob.sessions("alice").await.unwrap().is_empty());
    assert!(bob.history().await.unwrap().is_empty());
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}
