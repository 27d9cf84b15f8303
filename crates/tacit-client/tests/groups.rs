#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Groups end to end through a real relay: creation, messages both ways
//! with receipts, removal (the removed member reads nothing after it), a
//! late member (reads nothing from before), authorisation, and a relay that
//! drops a sender chain.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tacit::GroupStateError;
use tacit_client::{
    Client, ClientConfig, ClientError, Direction, Event, GroupRefusal, IncomingGroupMessage,
    ReceiptKind, Status,
};

/// Starts a registered client and waits for its queue to drain.
async fn started(config: ClientConfig) -> Client {
    let mut client = Client::start(config).await.unwrap();
    drained(&mut client).await;
    client
}

async fn next_group_message(client: &mut Client) -> (IncomingGroupMessage, Vec<Event>) {
    wait_for(client, |e| match e {
        Event::GroupMessage(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

/// Waits for a `GroupChanged` and returns its description and whether
/// the client is still a member.
async fn next_change(client: &mut Client) -> (String, bool) {
    wait_for(client, |e| match e {
        Event::GroupChanged {
            description,
            active,
            ..
        } => Some((description.clone(), *active)),
        _ => None,
    })
    .await
    .0
}

/// Alice creates "team" with Bob and Carol, who both learn of it.
async fn team(dir: &TempDir, relay: std::net::SocketAddr) -> [(Client, ClientConfig); 3] {
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let config = registered(dir, name, relay).await;
        clients.push((started(config.clone()).await, config));
    }
    let mut clients: [(Client, ClientConfig); 3] = clients.try_into().unwrap();
    let created = clients[0]
        .0
        .create_group("team", &["bob", "carol"])
        .await
        .unwrap();
    assert_eq!(created.epoch, 0);
    assert_eq!(
        created
            .members
            .iter()
            .map(|m| (m.user_id.as_str(), m.admin))
            .collect::<Vec<_>>(),
        [("alice", true), ("bob", false), ("carol", false)]
    );
    for (client, _) in &mut clients[1..] {
        let (description, active) = next_change(client).await;
        assert_eq!(description, "created with alice, bob, carol");
        assert!(active);
    }
    clients
}

/// Group envelopes waiting at the relay for `user`.
fn queued_of_kind(relay_db: &Path, user: &str, kind: u32) -> u32 {
    let conn = rusqlite::Connection::open(relay_db).unwrap();
    conn.query_row(
        "SELECT count(*) FROM queued_messages
         WHERE mailbox IN (SELECT mailbox FROM devices WHERE user_id = ?1) AND kind = ?2",
        rusqlite::params![user, kind],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn three_users_exchange_group_messages_both_ways_with_receipts() {
    let dir = TempDir::new("group-three");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let [(mut alice, _), (mut bob, _), (mut carol, _)] = team(&dir, relay.local_addr()).await;

    let sent = alice.send_group_text("team", "hello team").await.unwrap();
    let mut reached: Vec<String> = sent.recipients.iter().map(|a| a.to_string()).collect();
    reached.sort();
    assert_eq!(
        reached,
        [addr("bob", 1).to_string(), addr("carol", 1).to_string()]
    );
    for client in [&mut bob, &mut carol] {
        let (m, _) = next_group_message(client).await;
        assert_eq!(m.text, "hello team");
        assert_eq!(m.sender, addr("alice", 1));
        assert_eq!(m.title, "team");
        assert_eq!(m.message_id, sent.message_id);
    }
    // Both members' devices send a delivery receipt, pairwise.
    let mut from = Vec::new();
    while from.len() < 2 {
        let (user, _) = wait_for(&mut alice, |e| match e {
            Event::Receipt {
                from,
                kind: ReceiptKind::Delivered,
                message_ids,
            } if message_ids.contains(&sent.message_id) => Some(from.user_id().to_owned()),
            _ => None,
        })
        .await;
        from.push(user);
    }
    from.sort();
    assert_eq!(from, ["bob", "carol"]);
    let history = alice.group_history().await.unwrap();
    let mine = history
        .iter()
        .find(|e| e.message_id == sent.message_id)
        .unwrap();
    assert_eq!(mine.direction, Direction::Outgoing);
    assert_eq!(mine.status, Status::Delivered);

    // The other way: a plain member sends, under its own chain.
    let back = bob.send_group_text("team", "hi alice").await.unwrap();
    for client in [&mut alice, &mut carol] {
        let (m, _) = next_group_message(client).await;
        assert_eq!((m.text.as_str(), m.sender.user_id()), ("hi alice", "bob"));
    }
    let second = bob.send_group_text("team", "and again").await.unwrap();
    assert_ne!(back.message_id, second.message_id);
    let (m, _) = next_group_message(&mut carol).await;
    assert_eq!(m.text, "and again");
    // Carol holds the chains of both senders of the current state.
    let groups = carol.groups().await.unwrap();
    let mut senders: Vec<String> = groups[0]
        .readable_from
        .iter()
        .map(|a| a.to_string())
        .collect();
    senders.sort();
    assert_eq!(
        senders,
        [addr("alice", 1).to_string(), addr("bob", 1).to_string()]
    );
    // The relay holds nothing more for anyone once all is read.
    eventually(|| queued(&relay_db, "carol") == 0).await;
}

#[tokio::test]
async fn after_a_removal_the_removed_member_reads_nothing_more() {
    let dir = TempDir::new("group-removal");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let [(mut alice, _), (mut bob, _), (mut carol, _)] = team(&dir, relay.local_addr()).await;
    alice.send_group_text("team", "before").await.unwrap();
    bob.send_group_text("team", "before too").await.unwrap();
    for _ in 0..2 {
        next_group_message(&mut carol).await;
    }
    next_group_message(&mut alice).await;

    let after = alice.remove_group_member("team", "carol").await.unwrap();
    assert_eq!(after.epoch, 1);
    assert!(after.members.iter().all(|m| m.user_id != "carol"));
    let (description, active) = next_change(&mut carol).await;
    assert_eq!(description, "removed carol");
    assert!(!active, "a removed member's group is inactive");
    assert_eq!(next_change(&mut bob).await, ("removed carol".into(), true));

    // Carol's client refuses to send to a group it left.
    assert!(matches!(
        carol.send_group_text("team", "still here?").await,
        Err(ClientError::Invalid(_))
    ));

    let from_alice = alice
        .send_group_text("team", "secret from alice")
        .await
        .unwrap();
    let from_bob = bob
        .send_group_text("team", "secret from bob")
        .await
        .unwrap();
    for sent in [&from_alice, &from_bob] {
        assert!(
            sent.recipients.iter().all(|a| a.user_id() != "carol"),
            "no copy is addressed to carol: {:?}",
            sent.recipients
        );
    }
    assert_eq!(
        next_group_message(&mut bob).await.0.text,
        "secret from alice"
    );
    assert_eq!(
        next_group_message(&mut alice).await.0.text,
        "secret from bob"
    );

    let state = carol.groups().await.unwrap();
    assert_eq!(state.len(), 1);
    assert!(!state[0].active);
    assert!(
        state[0].readable_from.is_empty(),
        "carol holds no chain of the state after her removal: {:?}",
        state[0].readable_from
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = carol.group_history().await.unwrap();
    assert!(
        history.iter().all(|e| !e.text.starts_with("secret")),
        "{history:?}"
    );
    // Nothing was queued for her since the removal.
    assert_eq!(queued_of_kind(&relay_db, "carol", 1), 0);
}

#[tokio::test]
async fn a_removed_member_given_the_group_envelope_cannot_open_it() {
    let dir = TempDir::new("group-removal-lying");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let [(alice, _), (bob, bob_config), (mut carol, _)] = team(&dir, relay.local_addr()).await;
    alice.send_group_text("team", "before").await.unwrap();
    next_group_message(&mut carol).await;
    alice.remove_group_member("team", "carol").await.unwrap();
    next_change(&mut carol).await;

    // Bob is offline; the relay, lying, copies the next group envelope
    // queued for him into Carol's mailbox.
    bob.shutdown().await;
    alice.send_group_text("team", "secret").await.unwrap();
    eventually(|| queued_of_kind(&relay_db, "bob", 1) >= 1).await;
    {
        let conn = rusqlite::Connection::open(&relay_db).unwrap();
        conn.execute(
            "INSERT INTO messages (mailbox, server_ms, expires_ms, envelope, kind)
             SELECT (SELECT mailbox FROM devices WHERE user_id = 'carol' AND device_id = 1),
                 server_ms, expires_ms, envelope, kind FROM queued_messages
             WHERE mailbox IN (SELECT mailbox FROM devices WHERE user_id = 'bob') AND kind = 1",
            [],
        )
        .unwrap();
    }
    // Carol's client is told of it at its next login.
    carol.shutdown().await;
    let carol_config = client_config(&dir, "carol", relay.local_addr());
    let mut carol = Client::start(carol_config).await.unwrap();
    let (reason, seen) = wait_for(&mut carol, |e| match e {
        Event::GroupRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(reason, GroupRefusal::Envelope(_)),
        "the envelope is wrapped for Bob's device only: {reason:?}"
    );
    assert!(!seen.iter().any(|e| matches!(e, Event::GroupMessage(_))));
    drained(&mut carol).await;
    let history = carol.group_history().await.unwrap();
    assert!(history.iter().all(|e| e.text != "secret"), "{history:?}");
    // Bob, back online, reads it.
    let mut bob = Client::start(bob_config).await.unwrap();
    assert_eq!(next_group_message(&mut bob).await.0.text, "secret");
}

#[tokio::test]
async fn a_member_added_later_reads_nothing_sent_before() {
    let dir = TempDir::new("group-late");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let [(alice, _), (mut bob, _), (mut carol, _)] = team(&dir, at).await;
    let mut dave = started(registered(&dir, "dave", at).await).await;
    alice.send_group_text("team", "before dave").await.unwrap();
    bob.send_group_text("team", "bob before dave")
        .await
        .unwrap();
    next_group_message(&mut carol).await;
    next_group_message(&mut carol).await;
    next_group_message(&mut bob).await;

    let added = alice.add_group_member("team", "dave").await.unwrap();
    assert_eq!(added.epoch, 1);
    let (description, active) = next_change(&mut dave).await;
    assert_eq!(description, "added dave");
    assert!(active);
    let groups = dave.groups().await.unwrap();
    assert!(groups[0].readable_from.is_empty(), "no chain yet");

    alice.send_group_text("team", "welcome dave").await.unwrap();
    let (m, before) = next_group_message(&mut dave).await;
    assert_eq!(m.text, "welcome dave");
    assert!(
        !before.iter().any(|e| matches!(e, Event::GroupMessage(_))),
        "{before:?}"
    );
    let history = dave.group_history().await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        ["welcome dave"]
    );
    // Dave holds only the chain of the state he joined, at the iteration
    // after his arrival: Bob's chain of the earlier state never reaches him.
    let groups = dave.groups().await.unwrap();
    assert_eq!(groups[0].readable_from, [addr("alice", 1)]);
    // Bob, next, uses a new chain that Dave receives.
    bob.send_group_text("team", "hi dave").await.unwrap();
    assert_eq!(next_group_message(&mut dave).await.0.text, "hi dave");
}

#[tokio::test]
async fn a_plain_member_cannot_remove_or_add() {
    let dir = TempDir::new("group-unauthorised");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let [(alice, _), (bob, _), (mut carol, _)] = team(&dir, relay.local_addr()).await;
    for result in [
        bob.remove_group_member("team", "carol").await,
        bob.remove_group_member("team", "alice").await,
        bob.add_group_member("team", "carol").await,
    ] {
        assert!(
            matches!(
                result,
                Err(ClientError::Group(
                    GroupStateError::Unauthorised
                        | GroupStateError::AlreadyMember(_)
                        | GroupStateError::NoAdmin
                ))
            ),
            "{result:?}"
        );
    }
    assert!(matches!(
        bob.remove_group_member("team", "carol").await,
        Err(ClientError::Group(GroupStateError::Unauthorised))
    ));
    assert!(matches!(
        bob.remove_group_member("no such group", "carol").await,
        Err(ClientError::Invalid(_))
    ));
    // Nothing changed anywhere: Bob's group is at epoch 0, Carol is still in.
    assert_eq!(bob.groups().await.unwrap()[0].epoch, 0);
    alice
        .send_group_text("team", "still all here")
        .await
        .unwrap();
    assert_eq!(
        next_group_message(&mut carol).await.0.text,
        "still all here"
    );
    // Bob may leave: the others learn it.
    bob.leave_group("team").await.unwrap();
    assert_eq!(next_change(&mut carol).await, ("bob left".into(), true));
    assert!(!bob.groups().await.unwrap()[0].active);
}

#[tokio::test]
async fn a_group_message_whose_chain_the_relay_dropped_is_held_then_dropped() {
    let dir = TempDir::new("group-no-chain");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let [(_alice, _), (bob, _), (carol, carol_config)] = team(&dir, relay.local_addr()).await;
    carol.shutdown().await;

    bob.send_group_text("team", "can you read this")
        .await
        .unwrap();
    // The relay drops Bob's pairwise envelopes (the chain) for Carol and
    // keeps the group envelope.
    {
        let conn = rusqlite::Connection::open(&relay_db).unwrap();
        let dropped = conn
            .execute(
                "DELETE FROM messages WHERE kind = 0
                 AND mailbox IN (SELECT mailbox FROM devices WHERE user_id = 'carol')",
                [],
            )
            .unwrap();
        assert!(dropped >= 1);
    }
    assert_eq!(queued_of_kind(&relay_db, "carol", 1), 1);
    let mut config = carol_config;
    config.group_pending_ttl = Duration::ZERO;
    let mut carol = Client::start(config).await.unwrap();
    let ((), seen) = wait_for(&mut carol, |e| match e {
        Event::QueueDrained { .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(!seen.iter().any(|e| matches!(e, Event::GroupMessage(_))));
    let (reason, _) = wait_for(&mut carol, |e| match e {
        Event::GroupRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, GroupRefusal::ChainMissing);
    assert!(carol.group_history().await.unwrap().is_empty());
    eventually(|| queued(&relay_db, "carol") == 0).await;
}

/// Sends `control` from `sender` to carol.1, pairwise.
async fn send_control(sender: &mut Sender, control: tacit::group::GroupControl) {
    let body = tacit::group::SessionControlBody { group: control }.to_wire();
    sender
        .send(
            &addr("carol", 1),
            tacit::envelope::ContentKind::SessionControl,
            body,
        )
        .await;
}

#[tokio::test]
async fn a_chain_from_a_non_member_and_a_state_under_an_untrusted_user_key_are_refused() {
    use rand_core::OsRng;
    use tacit::group::{
        Group, GroupControl, GroupId, GroupMember, GroupSigner, OutboundChain, Role,
    };
    use tacit::identity::{DeviceCertificate, UserKeyPair};

    let dir = TempDir::new("group-non-member");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let at = relay.local_addr();
    let [(_alice, _), (_bob, _), (mut carol, _)] = team(&dir, at).await;
    let group = carol.groups().await.unwrap().remove(0);

    // Mallory is a real user with a verified list, not a member.
    registered(&dir, "mallory", at).await;
    let mut mallory = sender(at, addr("mallory", 1), UserKeyPair::generate(&mut OsRng));
    {
        let conn = rusqlite::Connection::open(&relay_db).unwrap();
        conn.execute(
            "UPDATE users SET user_key = ?2, device_list = ?3 WHERE user_id = ?1",
            rusqlite::params![
                "mallory",
                mallory.user_key.public_key().to_bytes().to_vec(),
                mallory.list.to_wire()
            ],
        )
        .unwrap();
        // Mallory's device is not on the relay and cannot log in: open
        // Carol's mailbox to anonymous submissions without her token.
        conn.execute(
            "UPDATE devices SET token_hash = NULL WHERE user_id = 'carol'",
            [],
        )
        .unwrap();
    }
    let carol_list = mallory.reach(&addr("carol", 1)).await;

    // A chain for the team's current state, sent pairwise by Mallory.
    let chain = OutboundChain::new(group.id, group.state, &addr("mallory", 1), &mut OsRng);
    let control = GroupControl {
        states: Vec::new(),
        chain: Some(chain.distribution()),
    };
    send_control(&mut mallory, control).await;
    let (refused, _) = wait_for(&mut carol, |e| match e {
        Event::GroupRefused {
            from,
            group: g,
            reason,
            ..
        } => Some((from.clone(), *g, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        refused,
        (
            Some(addr("mallory", 1)),
            Some(group.id),
            GroupRefusal::NotMember {
                user_id: "mallory".into()
            }
        )
    );
    let after = carol.groups().await.unwrap().remove(0);
    assert!(
        after.readable_from.iter().all(|a| a.user_id() != "mallory"),
        "{:?}",
        after.readable_from
    );
    assert_eq!(after.state, group.state);

    // A group state that Mallory signs naming herself under another user
    // key than the one Carol trusts for her is refused, and not joined.
    let other_key = UserKeyPair::generate(&mut OsRng);
    let mallory_at = addr("mallory", 1);
    let identity = mallory.manager.account().identity().clone();
    let certificate = DeviceCertificate::issue(&other_key, &mallory_at, &identity.public_key());
    let signer = GroupSigner::new(&identity, &mallory_at, certificate);
    let members = vec![
        GroupMember::new("mallory", other_key.public_key(), Role::Admin),
        GroupMember::new("carol", *carol_list.user_key(), Role::Member),
    ];
    let forged = Group::create(GroupId::generate(&mut OsRng), "trap", members, &signer).unwrap();
    let control = GroupControl {
        states: vec![forged.current().clone()],
        chain: None,
    };
    send_control(&mut mallory, control).await;
    let (reason, _) = wait_for(&mut carol, |e| match e {
        Event::GroupRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        reason,
        GroupRefusal::UserKeyMismatch {
            user_id: "mallory".into()
        }
    );
    assert_eq!(
        carol.groups().await.unwrap().len(),
        1,
        "the trap was not joined"
    );
}

#[tokio::test]
async fn the_chain_step_is_committed_before_the_submission() {
    let dir = TempDir::new("group-commit-first");
    let relay_db = dir.path("relay.db");
    let mut config = relay_config(&relay_db, "127.0.0.1:0".parse().unwrap());
    config.queue_cap = 4;
    let relay = tacit_relay::Relay::bind(config).await.unwrap();
    let at = relay.local_addr();
    let alice = started(registered(&dir, "alice", at).await).await;
    let bob_config = registered(&dir, "bob", at).await;
    let mut bob = started(bob_config.clone()).await;
    alice.create_group("pair", &["bob"]).await.unwrap();
    alice.send_group_text("pair", "first").await.unwrap();
    assert_eq!(next_group_message(&mut bob).await.0.text, "first");
    bob.shutdown().await;

    // Bob's mailbox fills up; the relay refuses the whole submission.
    let mut refused = None;
    for i in 0..8 {
        match alice.send_group_text("pair", &format!("queued {i}")).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (n, error) = refused.expect("the relay never refused");
    assert!(
        matches!(&error, ClientError::Relay(e) if e.code == tacit_relay_proto::ErrorCode::QueueFull),
        "{error:?}"
    );
    // The message was encrypted and its chain step committed before the
    // submission: its entry is there, pending.
    let history = alice.group_history().await.unwrap();
    let entry = history
        .iter()
        .find(|e| e.text == format!("queued {n}"))
        .expect("the refused message's entry was committed first");
    assert_eq!(entry.status, Status::Pending);
    assert!(history
        .iter()
        .filter(|e| e.text.starts_with("queued") && e.text != entry.text)
        .all(|e| e.status >= Status::Sent));

    // Bob drains, then reads the next message: its chain skipped the
    // refused message's key rather than using it again.
    let mut bob = Client::start(bob_config).await.unwrap();
    let (_, seen) = drained(&mut bob).await;
    let read: Vec<String> = seen
        .iter()
        .filter_map(|e| match e {
            Event::GroupMessage(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        read,
        (0..n).map(|i| format!("queued {i}")).collect::<Vec<_>>()
    );
    alice.send_group_text("pair", "after").await.unwrap();
    assert_eq!(next_group_message(&mut bob).await.0.text, "after");
}

#[tokio::test]
async fn a_group_message_ahead_of_its_chain_is_held_and_read_when_the_chain_comes() {
    let dir = TempDir::new("group-reordered");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let [(_alice, _), (bob, _), (carol, carol_config)] = team(&dir, relay.local_addr()).await;
    carol.shutdown().await;
    bob.send_group_text("team", "out of order").await.unwrap();
    // The relay serves Carol's mailbox out of order: the group envelope
    // first, Bob's pairwise envelopes (the chain) after it.
    {
        let conn = rusqlite::Connection::open(&relay_db).unwrap();
        let moved = conn
            .execute(
                "UPDATE messages SET id = id + 1000000 WHERE kind = 0
                 AND mailbox IN (SELECT mailbox FROM devices WHERE user_id = 'carol')",
                [],
            )
            .unwrap();
        assert!(moved >= 1);
    }
    let mut carol = Client::start(carol_config).await.unwrap();
    let (m, before) = next_group_message(&mut carol).await;
    assert_eq!(
        (m.text.as_str(), m.sender.user_id()),
        ("out of order", "bob")
    );
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Event::GroupRefused { .. } | Event::Dropped { .. })),
        "{before:?}"
    );
    drained(&mut carol).await;
    eventually(|| queued(&relay_db, "carol") == 0).await;
    // Read once: the history holds it once.
    let history = carol.group_history().await.unwrap();
    assert_eq!(
        history.iter().filter(|e| e.text == "out of order").count(),
        1
    );
}
