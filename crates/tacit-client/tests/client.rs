#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The client against an in-process relay on 127.0.0.1: the offline queue,
//! receipts, acknowledgement after durable processing, redelivery without
//! duplicates, reconnection after a relay restart, prekey replenishment,
//! refused input, submissions and bundle fetches only on connections that
//! never log in, and sends paced by the relay's rate limits.

mod common;

use std::time::Duration;

use common::*;
use tacit_client::{register, Client, ClientError, Direction, Event, ReceiptKind, Status};

#[tokio::test]
async fn offline_queue_drains_in_order_with_receipts() {
    let dir = TempDir::new("offline");
    let relay = start_relay(&dir.path("relay.db")).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;

    // Bob is offline while Alice writes.
    let mut alice = Client::start(alice_config).await.unwrap();
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        let s = alice.send_text("bob", text).await.unwrap();
        assert_eq!(s.stored_for, vec![addr("bob", 1)]);
        assert!(s.refused.is_empty());
        sent.push(s.message_id);
    }
    assert_eq!(queued(&dir.path("relay.db"), "bob"), 3);

    // Bob comes online and drains his queue, in order.
    let mut bob = Client::start(bob_config).await.unwrap();
    let ((delivered, duplicates), events) = drained(&mut bob).await;
    assert_eq!((delivered, duplicates), (3, 0));
    assert_eq!(texts(&events), ["alice: one", "alice: two", "alice: three"]);

    // Alice gets a delivery receipt for each.
    let mut delivered_ids = Vec::new();
    while delivered_ids.len() < 3 {
        let (ids, _) = wait_for(&mut alice, |e| match e {
            Event::Receipt {
                kind: ReceiptKind::Delivered,
                message_ids,
                from,
            } if *from == addr("bob", 1) => Some(message_ids.clone()),
            _ => None,
        })
        .await;
        delivered_ids.extend(ids);
    }
    delivered_ids.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(delivered_ids, expected);

    // Bob reads the first: Alice sees it read.
    bob.send_read_receipt("alice", vec![sent[0]]).await.unwrap();
    let (ids, _) = wait_for(&mut alice, |e| match e {
        Event::Receipt {
            kind: ReceiptKind::Read,
            message_ids,
            ..
        } => Some(message_ids.clone()),
        _ => None,
    })
    .await;
    assert_eq!(ids, vec![sent[0]]);

    // Bob replies on the session Alice started.
    bob.send_text("alice", "hi alice").await.unwrap();
    let (m, _) = wait_for(&mut alice, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!((m.sender, m.text.as_str()), (addr("bob", 1), "hi alice"));

    // Both histories, with statuses.
    let history = alice.history().await.unwrap();
    let statuses: Vec<(Direction, &str, Status)> = history
        .iter()
        .map(|h| (h.direction, h.text.as_str(), h.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (Direction::Outgoing, "one", Status::Read),
            (Direction::Outgoing, "two", Status::Delivered),
            (Direction::Outgoing, "three", Status::Delivered),
            (Direction::Incoming, "hi alice", Status::Received),
        ]
    );
    let bob_history = bob.history().await.unwrap();
    assert_eq!(bob_history.len(), 4);
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn redelivery_after_a_crash_before_the_ack_shows_nothing_twice() {
    let dir = TempDir::new("redelivery");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let alice = Client::start(alice_config).await.unwrap();
    for text in ["first", "second"] {
        alice.send_text("bob", text).await.unwrap();
    }

    // Bob processes both but dies before acknowledging: the state a client
    // killed between its durable commit and its ack leaves behind.
    let mut crashing = bob_config.clone();
    crashing.acknowledge = false;
    crashing.delivery_receipts = false;
    let mut bob = Client::start(crashing).await.unwrap();
    let ((delivered, _), events) = drained(&mut bob).await;
    assert_eq!(delivered, 2);
    assert_eq!(texts(&events), ["alice: first", "alice: second"]);
    drop(bob);
    assert_eq!(queued(&relay_db, "bob"), 2, "nothing was acknowledged");

    // Restarted, Bob is offered both again: the ratchet would refuse them
    // as replays, but he recognises them, shows nothing, and acks them.
    let mut bob = start_after_crash(bob_config.clone()).await;
    let ((delivered, duplicates), events) = drained(&mut bob).await;
    assert_eq!((delivered, duplicates), (0, 2));
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Dropped { .. })));
    eventually(|| queued(&relay_db, "bob") == 0).await;
    let history = bob.history().await.unwrap();
    let texts: Vec<&str> = history.iter().map(|h| h.text.as_str()).collect();
    assert_eq!(texts, ["first", "second"]);

    // The conversation goes on.
    alice.send_text("bob", "third").await.unwrap();
    let m = next_text(&mut bob).await;
    assert_eq!(m, "third");
    bob.shutdown().await;
    alice.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn acknowledged_only_after_the_message_is_recorded() {
    let dir = TempDir::new("ack");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let alice = Client::start(alice_config).await.unwrap();
    alice.send_text("bob", "durable").await.unwrap();

    let mut bob = Client::start(bob_config.clone()).await.unwrap();
    drained(&mut bob).await;
    // Once the relay has deleted the message, it must be in Bob's store.
    eventually(|| queued(&relay_db, "bob") == 0).await;
    bob.shutdown().await;
    let bob = Client::start(bob_config).await.unwrap();
    let history = bob.history().await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "durable");
    bob.shutdown().await;
    alice.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn reconnects_with_backoff_after_a_relay_restart() {
    let dir = TempDir::new("restart");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let mut alice = Client::start(alice_config).await.unwrap();
    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut alice).await;
    drained(&mut bob).await;

    relay.shutdown().await.unwrap();
    for client in [&mut alice, &mut bob] {
        let (retry_in, _) = wait_for(client, |e| match e {
            Event::Disconnected { retry_in, .. } => Some(*retry_in),
            _ => None,
        })
        .await;
        assert!(retry_in <= Duration::from_millis(400));
    }
    // Let a few attempts fail while the relay is down.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let relay = tacit_relay::Relay::bind(relay_config(&relay_db, at))
        .await
        .unwrap();
    for client in [&mut alice, &mut bob] {
        wait_for(client, |e| matches!(e, Event::Connected).then_some(())).await;
    }
    alice.send_text("bob", "after the restart").await.unwrap();
    let text = next_text(&mut bob).await;
    assert_eq!(text, "after the restart");
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_send_while_disconnected_waits_for_the_connection() {
    let dir = TempDir::new("queued-send");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let mut alice = Client::start(alice_config).await.unwrap();
    drained(&mut alice).await;
    relay.shutdown().await.unwrap();
    wait_for(&mut alice, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;

    let sending = tokio::spawn(async move {
        let result = alice.send_text("bob", "queued").await.map(|s| s.stored_for);
        (alice, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let relay = tacit_relay::Relay::bind(relay_config(&relay_db, at))
        .await
        .unwrap();
    let (alice, result) = tokio::time::timeout(WAIT, sending).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), vec![addr("bob", 1)]);
    let mut bob = Client::start(bob_config).await.unwrap();
    let (_, events) = drained(&mut bob).await;
    assert_eq!(texts(&events), ["alice: queued"]);
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn prekeys_are_replenished_when_the_relay_says_they_are_low() {
    let dir = TempDir::new("prekeys");
    let relay = start_relay(&dir.path("relay.db")).await;
    let at = relay.local_addr();
    let mut bob_config = client_config(&dir, "bob", at);
    bob_config.one_time_prekeys = 12;
    bob_config.prekeys_low = 5;
    let registration = register(&bob_config, addr("bob", 1)).await.unwrap();
    assert!(registration.newly_registered);
    assert_eq!(registration.one_time_prekeys, 12);

    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut bob).await;
    // Three claims leave 9, under the relay's mark of 10: PreKeysLow.
    for _ in 0..3 {
        fetch_bundle(at, &addr("bob", 1)).await;
    }
    let ((uploaded, stored), _) = wait_for(&mut bob, |e| match e {
        Event::PreKeysPublished {
            uploaded, stored, ..
        } => Some((*uploaded, *stored)),
        _ => None,
    })
    .await;
    assert_eq!((uploaded, stored), (3, 12));
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_with_typed_errors() {
    let dir = TempDir::new("refused");
    let relay = start_relay(&dir.path("relay.db")).await;
    let at = relay.local_addr();

    // No identity yet.
    let empty = client_config(&dir, "nobody", at);
    assert!(matches!(
        Client::start(empty).await,
        Err(ClientError::NotRegistered)
    ));

    let alice_config = registered(&dir, "alice", at).await;
    // The store belongs to alice.1.
    assert!(matches!(
        register(&alice_config, addr("mallory", 1)).await,
        Err(ClientError::ProfileMismatch { .. })
    ));
    // Registering again is a login.
    let again = register(&alice_config, addr("alice", 1)).await.unwrap();
    assert!(!again.newly_registered);

    let alice = Client::start(alice_config).await.unwrap();
    assert!(matches!(
        alice.send_text("carol", "hello?").await,
        Err(ClientError::UnknownPeer(_))
    ));
    assert!(matches!(
        alice.send_text("alice", "me").await,
        Err(ClientError::Invalid(_))
    ));
    assert!(matches!(
        alice.send_text("", "x").await,
        Err(ClientError::Invalid(_))
    ));
    assert!(matches!(
        alice.safety_number("carol").await,
        Err(ClientError::UnknownPeer(_))
    ));
    // A wrong key is refused (once the running client let go of the file).
    alice.shutdown().await;
    let mut wrong = client_config(&dir, "alice", at);
    wrong.store_key = tacit_client::StoreKey::from_bytes([1; 32]);
    assert!(matches!(
        Client::start(wrong).await,
        Err(ClientError::Store(tacit::error::StoreError::WrongKey))
    ));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_client_on_the_same_store_is_refused_and_the_first_keeps_working() {
    let dir = TempDir::new("store-in-use");
    let relay = start_relay(&dir.path("relay.db")).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let alice = Client::start(alice_config.clone()).await.unwrap();
    let mut bob = Client::start(bob_config).await.unwrap();
    alice.send_text("bob", "one").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "one");

    // A second client on Alice's store (a `send` while a `chat` runs) is
    // refused before it connects: it would otherwise share the account and
    // sessions, and its connection would supersede the first one's.
    assert!(matches!(
        Client::start(alice_config.clone()).await,
        Err(ClientError::Store(tacit::error::StoreError::InUse))
    ));
    assert!(matches!(
        register(&alice_config, addr("alice", 1)).await,
        Err(ClientError::Store(tacit::error::StoreError::InUse))
    ));

    // The first goes on sending and receiving.
    alice.send_text("bob", "two").await.unwrap();
    assert_eq!(next_text(&mut bob).await, "two");
    bob.send_text("alice", "three").await.unwrap();
    let mut alice = alice;
    assert_eq!(next_text(&mut alice).await, "three");
    alice.shutdown().await;

    // Once it stopped, the store opens again.
    let alice = Client::start(alice_config).await.unwrap();
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_record_write_leaves_the_message_to_be_redelivered() {
    let dir = TempDir::new("store-failure");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let alice = Client::start(alice_config).await.unwrap();
    alice.send_text("bob", "keep me").await.unwrap();

    // Writing Bob's history fails: the session change that decrypting the
    // message caused is in the same transaction, so it is not kept either.
    // (The store keeps its file locked while a client has it open, so the
    // trigger goes in before Bob starts.)
    rusqlite::Connection::open(&bob_config.store_path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER fail_history BEFORE INSERT ON app_records
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let mut bob = Client::start(bob_config.clone()).await.unwrap();
    let mut stopped = None;
    for _ in 0..20 {
        match tokio::time::timeout(WAIT, bob.next_event()).await.unwrap() {
            Some(Event::Stopped { error }) => {
                stopped = error;
                break;
            }
            Some(Event::Message(m)) => panic!("shown before it was recorded: {m:?}"),
            Some(_) => {}
            None => break,
        }
    }
    assert!(stopped.unwrap().contains("injected"));
    assert_eq!(queued(&relay_db, "bob"), 1);
    drop(bob);

    rusqlite::Connection::open(&bob_config.store_path)
        .unwrap()
        .execute_batch("DROP TRIGGER fail_history;")
        .unwrap();
    let mut bob = Client::start(bob_config).await.unwrap();
    let ((delivered, duplicates), events) = drained(&mut bob).await;
    assert_eq!((delivered, duplicates), (1, 0));
    assert_eq!(texts(&events), ["alice: keep me"]);
    eventually(|| queued(&relay_db, "bob") == 0).await;
    bob.shutdown().await;
    alice.shutdown().await;
    relay.shutdown().await.unwrap();
}

/// Sealed sender is only worth something if the relay cannot see who
/// submitted the envelope: every `Submit` is tried on a connection that is
/// not logged in, with the recipient's delivery token once the recipient
/// has written, and only first contact goes logged in; every
/// `FetchBundles` is anonymous. The relay counts requests by kind and by
/// the login state of the connection that carried them (and serves only
/// these two clients).
#[tokio::test]
async fn envelopes_go_anonymously_with_tokens_and_fetches_never_logged_in() {
    let dir = TempDir::new("anonymous");
    let relay = start_relay(&dir.path("relay.db")).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let mut alice = Client::start(alice_config).await.unwrap();
    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut alice).await;
    drained(&mut bob).await;

    // First contact (Alice fetches Bob's bundles), texts both ways,
    // delivery receipts (sent live), a read receipt.
    let first = alice.send_text("bob", "one").await.unwrap();
    assert_eq!(first.stored_for, vec![addr("bob", 1)]);
    alice.send_text("bob", "two").await.unwrap();
    for _ in 0..2 {
        wait_for(&mut bob, |e| matches!(e, Event::Message(_)).then_some(())).await;
    }
    bob.send_read_receipt("alice", vec![first.message_id])
        .await
        .unwrap();
    bob.send_text("alice", "three").await.unwrap();
    wait_for(&mut alice, |e| matches!(e, Event::Message(_)).then_some(())).await;
    // Alice's delivery receipt for "three" is submitted once she has it.
    wait_for(&mut bob, |e| match e {
        Event::Receipt {
            kind: ReceiptKind::Delivered,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    let expected_submits = 3 + 3; // three texts, three receipts at least
    eventually_async(|| async {
        metric(&metrics(&relay).await, "tacit_relay_submitted_total") >= expected_submits
    })
    .await;

    let page = metrics(&relay).await;
    let stored = metric(&page, "tacit_relay_submitted_total");
    // Every submission was tried anonymously first. Alice's two texts
    // before Bob wrote lacked his delivery token (his delivery receipts
    // do not carry it): refused there, they went on her logged-in
    // connection, within her account's tokenless quota. Everything after
    // carried the token and stayed anonymous.
    assert_eq!(requests(&page, "submit", true), 2, "{page}");
    assert_eq!(requests(&page, "submit", false), stored, "{page}");
    assert_eq!(
        metric(
            &page,
            "tacit_relay_errors_total{code=\"DeliveryTokenRefused\"}"
        ),
        2
    );
    assert_eq!(requests(&page, "fetch_bundles", true), 0, "{page}");
    assert!(requests(&page, "fetch_bundles", false) >= 1, "{page}");
    // The logged-in connections did their own work: logins and acks.
    assert!(requests(&page, "ack", true) >= expected_submits, "{page}");
    assert_eq!(requests(&page, "login", false), 2, "{page}");
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

/// With a relay stricter than its defaults for connections that are not
/// logged in (2 per second, a burst of 1: slow enough that a loaded machine
/// still sends faster), a run of sends is paced by the relay's
/// `retry_after_ms`: every send succeeds, in order, none twice.
#[tokio::test]
async fn sends_are_paced_by_the_rate_limit_of_anonymous_connections() {
    let dir = TempDir::new("paced");
    let relay_db = dir.path("relay.db");
    // Both register first, through a relay without the strict limit
    // (registration does not retry a refused request).
    let lenient = start_relay(&relay_db).await;
    registered(&dir, "alice", lenient.local_addr()).await;
    registered(&dir, "bob", lenient.local_addr()).await;
    lenient.shutdown().await.unwrap();
    let mut config = relay_config(&relay_db, "127.0.0.1:0".parse().unwrap());
    config.unauthenticated_rate = tacit_relay::Rate::new(4.0, 2);
    config.per_ip_rate = tacit_relay::Config::new(&relay_db).per_ip_rate;
    let relay = tacit_relay::Relay::bind(config).await.unwrap();
    let at = relay.local_addr();
    let alice_config = client_config(&dir, "alice", at);
    let bob_config = client_config(&dir, "bob", at);
    let alice = Client::start(alice_config).await.unwrap();
    let texts_sent: Vec<String> = (0..15).map(|i| format!("m{i}")).collect();
    for text in &texts_sent {
        let sent = alice.send_text("bob", text).await.unwrap();
        assert_eq!(sent.stored_for, vec![addr("bob", 1)]);
    }
    let page = metrics(&relay).await;
    assert!(
        metric(&page, "tacit_relay_errors_total{code=\"RateLimited\"}") > 0,
        "the limit was never reached: {page}"
    );
    assert_eq!(queued(&relay_db, "bob"), 15);

    let mut bob = Client::start(bob_config).await.unwrap();
    let ((delivered, duplicates), events) = drained(&mut bob).await;
    assert_eq!((delivered, duplicates), (15, 0));
    let expected: Vec<String> = texts_sent.iter().map(|t| format!("alice: {t}")).collect();
    assert_eq!(texts(&events), expected);
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_changed_user_key_holds_its_messages_until_accepted() {
    let dir = TempDir::new("identity");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;
    let alice = Client::start(alice_config).await.unwrap();
    let mut bob = Client::start(bob_config.clone()).await.unwrap();
    drained(&mut bob).await;
    alice.send_text("bob", "before").await.unwrap();
    let text = next_text(&mut bob).await;
    assert_eq!(text, "before");
    let before = bob.safety_number("alice").await.unwrap();
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();

    // Alice loses every device and her recovery code: the relay forgets
    // her user (as an operator does on a verified account reset) and she
    // registers again under a new user key.
    let db = rusqlite::Connection::open(&relay_db).unwrap();
    db.execute_batch(
        "DELETE FROM messages WHERE mailbox IN (SELECT mailbox FROM devices WHERE user_id = 'alice');
         DELETE FROM mailboxes WHERE mailbox IN (SELECT mailbox FROM devices WHERE user_id = 'alice');",
    )
    .unwrap();
    for table in [
        "devices",
        "one_time_prekeys",
        "one_time_kem_prekeys",
        "users",
    ] {
        db.execute(&format!("DELETE FROM {table} WHERE user_id = 'alice'"), [])
            .unwrap();
    }
    drop(db);
    let relay = tacit_relay::Relay::bind(relay_config(&relay_db, at))
        .await
        .unwrap();
    let new_config = client_config(&dir, "alice-reinstalled", at);
    register(&new_config, addr("alice", 1)).await.unwrap();
    let new_alice = Client::start(new_config).await.unwrap();
    new_alice
        .send_text("bob", "after reinstalling")
        .await
        .unwrap();

    // Bob holds the message: not shown.
    let mut bob = Client::start(bob_config.clone()).await.unwrap();
    let ((user_id, user_key, safety_number), _) = wait_for(&mut bob, |e| match e {
        Event::Held {
            user_id,
            user_key,
            safety_number,
            ..
        } => Some((user_id.clone(), *user_key, safety_number.clone())),
        Event::Message(m) => panic!("shown before its user key was accepted: {m:?}"),
        _ => None,
    })
    .await;
    assert_eq!(user_id, "alice");
    // The number Bob is shown is the one Alice's new device shows him...
    let alice_sees = new_alice.safety_number("bob").await.unwrap();
    assert_eq!(alice_sees, safety_number);
    // ... and not the one of the user key Bob trusted before, which he
    // still trusts.
    assert_ne!(before, safety_number);
    assert_eq!(bob.safety_number("alice").await.unwrap(), before);
    drained(&mut bob).await;
    // Held in the store and acknowledged: the relay keeps nothing for bob.
    eventually(|| queued(&relay_db, "bob") == 0).await;
    let history = bob.history().await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    // ... and still held after a restart.
    bob.shutdown().await;
    let mut bob = Client::start(bob_config).await.unwrap();
    drained(&mut bob).await;

    // Bob compared the numbers and accepts: the held message is shown
    // once, and the conversation goes on both ways.
    assert_eq!(bob.accept_user_key("alice", &user_key).await.unwrap(), 1);
    assert_eq!(bob.accept_user_key("alice", &user_key).await.unwrap(), 0);
    let (m, _) = wait_for(&mut bob, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (m.sender, m.text.as_str()),
        (addr("alice", 1), "after reinstalling")
    );
    assert_eq!(bob.safety_number("alice").await.unwrap(), safety_number);
    let mut new_alice = new_alice;
    bob.send_text("alice", "welcome back").await.unwrap();
    let text = next_text(&mut new_alice).await;
    assert_eq!(text, "welcome back");
    new_alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

/// A stranger who registers a second device under alice's name is refused
/// by the relay (the name is bound to alice's user key), and a stranger
/// registered as another user who writes to bob does not become a
/// recipient of what bob sends afterwards.
#[tokio::test]
async fn strangers_get_no_device_and_no_copy() {
    let dir = TempDir::new("strangers");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let alice_config = registered(&dir, "alice", at).await;
    let bob_config = registered(&dir, "bob", at).await;

    // The ghost device: a new store, a new user key, alice's name.
    let ghost = client_config(&dir, "ghost", at);
    match register(&ghost, addr("alice", 2)).await {
        Err(ClientError::Relay(e)) => {
            assert_eq!(e.code, tacit_relay_proto::ErrorCode::UserKeyMismatch)
        }
        other => panic!("a ghost device was registered: {other:?}"),
    }

    // The self-invited device: bob.99 writes to bob first.
    let intruder_config = registered(&dir, "bob.99", at).await;
    let intruder = Client::start(intruder_config).await.unwrap();
    let mut bob = Client::start(bob_config).await.unwrap();
    let mut alice = Client::start(alice_config).await.unwrap();
    drained(&mut bob).await;
    drained(&mut alice).await;
    intruder.send_text("bob", "hi, it's me").await.unwrap();
    let (m, _) = wait_for(&mut bob, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.sender, addr("bob.99", 1));
    assert!(m.first_contact, "a first message from an unknown user");

    // Bob writes to alice: one copy, for alice's only device, none for the
    // intruder and none for the ghost.
    let sent = bob.send_text("alice", "for alice only").await.unwrap();
    assert_eq!(sent.stored_for, vec![addr("alice", 1)]);
    assert_eq!(next_text(&mut alice).await, "for alice only");
    intruder.shutdown().await;
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}
