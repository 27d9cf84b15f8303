#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! A user's devices through the client and a real relay: linking a second
//! device with a one-time code, removing it, and a relay that serves stale,
//! forged or foreign device lists.

mod common;

use std::time::Duration;

use common::*;
use rand_core::OsRng;
use tacit::identity::{DeviceList, LinkCode, UserKeyPair};
use tacit::keys::IdentityKeyPair;
use tacit_client::{link, recover, Client, ClientError, Event, RecoveryCode};
use tacit_relay_proto::ErrorCode;

/// The signed list the relay stores for `user`.
fn stored_list(relay_db: &std::path::Path, user: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(relay_db).unwrap();
    conn.query_row(
        "SELECT device_list FROM users WHERE user_id = ?1",
        [user],
        |r| r.get(0),
    )
    .unwrap()
}

/// Makes the relay serve `bytes` as `user`'s list (a relay that lies).
fn serve_list(relay_db: &std::path::Path, user: &str, bytes: &[u8]) {
    let conn = rusqlite::Connection::open(relay_db).unwrap();
    conn.execute(
        "UPDATE users SET device_list = ?2 WHERE user_id = ?1",
        rusqlite::params![user, bytes],
    )
    .unwrap();
}

fn rows_of(relay_db: &std::path::Path, table: &str, user: &str, device: u32) -> u32 {
    let conn = rusqlite::Connection::open(relay_db).unwrap();
    conn.query_row(
        &format!("SELECT count(*) FROM {table} WHERE user_id = ?1 AND device_id = ?2"),
        rusqlite::params![user, device],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_linked_device_receives_and_a_removed_one_does_not_even_from_a_lying_relay() {
    let dir = TempDir::new("devices");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice1_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let mut alice1 = Client::start(alice1_config).await.unwrap();
    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut alice1).await;
    drained(&mut bob).await;
    bob.send_text("alice", "one device").await.unwrap();
    assert_eq!(next_text(&mut alice1).await, "one device");
    let before = bob.safety_number("alice").await.unwrap();

    // A code that nobody shows links nothing.
    let nobody = LinkCode::generate(&mut OsRng);
    assert!(alice1.approve_link(&nobody).await.is_err());

    // alice.2 shows a code; alice.1 approves it.
    let code = LinkCode::generate(&mut OsRng);
    let alice2_config = client_config(&dir, "alice-2", at);
    let linking = {
        let (config, code) = (alice2_config.clone(), code.clone());
        tokio::spawn(async move {
            link(&config, addr("alice", 2), &code, Duration::from_secs(20)).await
        })
    };
    let linked = loop {
        // The new device puts its request first; retry until it is there.
        match alice1.approve_link(&code).await {
            Ok(address) => break address,
            Err(e) => {
                assert!(!linking.is_finished(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(linked, addr("alice", 2));
    let registration = linking.await.unwrap().unwrap();
    assert_eq!(registration.address, addr("alice", 2));
    let devices = alice1.devices().await.unwrap();
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.address.clone(), d.this_device))
            .collect::<Vec<_>>(),
        vec![(addr("alice", 1), true), (addr("alice", 2), false)]
    );
    // One safety number per pair of users: linking changed nothing.
    assert_eq!(bob.safety_number("alice").await.unwrap(), before);
    let v2 = stored_list(&relay_db, "alice");

    // Bob's message reaches both of Alice's devices.
    let mut alice2 = Client::start(alice2_config).await.unwrap();
    drained(&mut alice2).await;
    let sent = bob.send_text("alice", "to both").await.unwrap();
    assert_eq!(sent.stored_for, vec![addr("alice", 1), addr("alice", 2)]);
    assert_eq!(next_text(&mut alice1).await, "to both");
    assert_eq!(next_text(&mut alice2).await, "to both");
    // alice.2, which does not hold the user key, can link or remove nothing.
    assert!(matches!(
        alice2.remove_device(1).await,
        Err(ClientError::Invalid(_))
    ));

    // The relay's state with alice.2 registered, to roll back to later.
    relay.shutdown().await.unwrap();
    let snapshot = dir.path("relay-with-alice-2.db");
    std::fs::copy(&relay_db, &snapshot).unwrap();
    let relay = tacit_relay::Relay::bind(relay_config(&relay_db, at))
        .await
        .unwrap();
    drained(&mut alice1).await;
    drained(&mut alice2).await;

    // alice.1 removes alice.2: the relay drops it at once.
    alice1.remove_device(2).await.unwrap();
    let (error, _) = wait_for(&mut alice2, |e| match e {
        Event::Stopped { error } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("removed")),
        "{error:?}"
    );
    // Bob does not even try alice.2 (the relay would refuse it: `refused`
    // would name it).
    let sent = bob.send_text("alice", "after removal").await.unwrap();
    assert_eq!(sent.stored_for, vec![addr("alice", 1)]);
    assert!(sent.refused.is_empty(), "{:?}", sent.refused);
    assert_eq!(next_text(&mut alice1).await, "after removal");
    assert_eq!(rows_of(&relay_db, "devices", "alice", 2), 0);
    // Its mailbox went with it: no message or mailbox row of no device.
    let conn = rusqlite::Connection::open(&relay_db).unwrap();
    let orphans: u32 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM messages WHERE mailbox NOT IN (SELECT mailbox FROM devices))
                  + (SELECT count(*) FROM mailboxes WHERE mailbox NOT IN (SELECT mailbox FROM devices))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    drop(conn);

    // The relay lies: it rolls back to its state before the removal, so
    // it serves the older list and alice.2's bundles and mailbox again. Bob
    // keeps the newest list he verified and sends to alice.1 only.
    relay.shutdown().await.unwrap();
    std::fs::copy(&snapshot, &relay_db).unwrap();
    let relay = tacit_relay::Relay::bind(relay_config(&relay_db, at))
        .await
        .unwrap();
    assert_eq!(stored_list(&relay_db, "alice"), v2);
    assert_eq!(rows_of(&relay_db, "devices", "alice", 2), 1);
    let sent = bob.send_text("alice", "stale list served").await.unwrap();
    assert_eq!(sent.stored_for, vec![addr("alice", 1)]);
    assert!(sent.refused.is_empty(), "{:?}", sent.refused);
    let mut forged = v2.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    serve_list(&relay_db, "alice", &forged);
    let sent = bob.send_text("alice", "forged list served").await.unwrap();
    assert_eq!(sent.stored_for, vec![addr("alice", 1)]);
    assert!(sent.refused.is_empty(), "{:?}", sent.refused);
    // A list under another user key that names a device of the relay's:
    // refused as a changed user key, and nothing is sent.
    let mallory = UserKeyPair::generate(&mut OsRng);
    let ghost = IdentityKeyPair::generate(&mut OsRng).public_key();
    let foreign = DeviceList::sign(&mallory, "alice", 99, &[(1, ghost, 0)]).unwrap();
    serve_list(&relay_db, "alice", &foreign.to_wire());
    match bob.send_text("alice", "foreign list served").await {
        Err(ClientError::Session(tacit::error::SessionError::UserKeyChanged(c))) => {
            assert_eq!(c.received, mallory.public_key());
        }
        other => panic!("sent under a foreign list: {other:?}"),
    }
    assert_eq!(next_text(&mut alice1).await, "stale list served");
    assert_eq!(next_text(&mut alice1).await, "forged list served");

    alice1.shutdown().await;
    alice2.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn linking_with_a_wrong_or_reused_code_fails() {
    let dir = TempDir::new("link-codes");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice1 = Client::start(registered(&dir, "alice", at).await)
        .await
        .unwrap();
    // The new device waits for an answer that never comes.
    let code = LinkCode::generate(&mut OsRng);
    let config = client_config(&dir, "alice-2", at);
    let result = link(&config, addr("alice", 2), &code, Duration::from_millis(600)).await;
    assert!(matches!(result, Err(ClientError::Timeout(_))), "{result:?}");
    // The relay has no device 2; a stranger cannot register it either.
    assert_eq!(rows_of(&relay_db, "devices", "alice", 2), 0);
    let stranger = client_config(&dir, "stranger", at);
    match tacit_client::register(&stranger, addr("alice", 2)).await {
        Err(ClientError::Relay(e)) => assert_eq!(e.code, ErrorCode::UserKeyMismatch),
        other => panic!("{other:?}"),
    }
    // Its request is still at the relay under the first code's slot: the
    // same code again cannot put a second one.
    let again = link(&config, addr("alice", 2), &code, Duration::from_millis(300)).await;
    assert!(
        matches!(&again, Err(ClientError::Relay(e)) if e.code == ErrorCode::LinkSlotUnavailable),
        "{again:?}"
    );
    alice1.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn device_commands_wait_for_the_connection() {
    let dir = TempDir::new("device-commands");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let mut alice = Client::start(registered(&dir, "alice", at).await)
        .await
        .unwrap();
    drained(&mut alice).await;
    relay.shutdown().await.unwrap();
    // Disconnected: the command waits for the relay instead of failing.
    let pending = tokio::spawn(async move {
        let result = alice.remove_device(9).await;
        (alice, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    let relay = tacit_relay::Relay::bind(relay_config(&relay_db, at))
        .await
        .unwrap();
    let (alice, result) = pending.await.unwrap();
    assert!(
        matches!(
            result,
            Err(ClientError::Identity(
                tacit::error::IdentityError::UnknownDevice(9)
            ))
        ),
        "{result:?}"
    );
    alice.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lost_first_device_is_replaced_from_the_recovery_code() {
    let dir = TempDir::new("recovery");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice = Client::start(registered(&dir, "alice", at).await)
        .await
        .unwrap();
    let mut bob = Client::start(registered(&dir, "bob", at).await)
        .await
        .unwrap();
    drained(&mut bob).await;
    alice.send_text("bob", "before").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "before");
    let number = bob.safety_number("alice").await.unwrap();
    let code = alice.recovery_code().await.unwrap().to_string();
    assert_eq!(code.len(), 64 + 15);
    // Alice loses the device.
    alice.shutdown().await;

    // A code of another key restores nothing.
    let wrong = RecoveryCode::parse(&"ab".repeat(32)).unwrap();
    let result = recover(&client_config(&dir, "wrong", at), addr("alice", 1), &wrong).await;
    assert!(matches!(result, Err(ClientError::Invalid(_))), "{result:?}");
    assert!(RecoveryCode::parse("12-34").is_err());

    // The code, typed in upper case with spaces, restores the user key on a
    // new device at the same address.
    let typed = RecoveryCode::parse(&code.to_uppercase().replace('-', " ")).unwrap();
    let config = client_config(&dir, "alice-recovered", at);
    recover(&config, addr("alice", 1), &typed).await.unwrap();
    let mut alice = Client::start(config).await.unwrap();
    drained(&mut alice).await;
    assert_eq!(alice.recovery_code().await.unwrap().to_string(), code);
    let devices = alice.devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    assert!(devices[0].this_device);

    // Bob's next message reaches the new device, under the same user key:
    // nothing to accept, the same safety number.
    bob.send_text("alice", "after recovery").await.unwrap();
    assert_eq!(next_text(&mut alice).await, "after recovery");
    assert_eq!(bob.safety_number("alice").await.unwrap(), number);
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}
