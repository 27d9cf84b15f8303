#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Users own their devices: the relay binds a user id to a user key and
//! registers only devices on the user's signed device list.

mod common;

use std::time::Duration;

use common::*;
use tacit::identity::DeviceList;
use tacit_relay::Relay;
use tacit_relay_proto::{
    Bundles, DeviceListBytes, ErrorCode, ErrorReply, FetchBundles, FetchDeviceList, LinkPut,
    LinkTake, PublishDeviceList, Reply, Request, ServerFrame,
};

async fn publish(c: &mut TcpClient, list: &DeviceList) -> Result<Reply, ErrorReply> {
    c.request(Request::PublishDeviceList(PublishDeviceList {
        device_list: list.into(),
    }))
    .await
}

async fn bundles(c: &mut TcpClient, user: &str) -> Result<Bundles, ErrorReply> {
    match c
        .request(Request::FetchBundles(FetchBundles::user(user).unwrap()))
        .await
    {
        Ok(Reply::Bundles(b)) => Ok(b),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    }
}

async fn fetch_list(c: &mut TcpClient, user: &str) -> Result<DeviceList, ErrorReply> {
    match c
        .request(Request::FetchDeviceList(
            FetchDeviceList::new(user).unwrap(),
        ))
        .await
    {
        Ok(Reply::DeviceList(bytes)) => Ok(bytes.verify().unwrap()),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    }
}

fn device_ids(b: &Bundles) -> Vec<u32> {
    b.bundles.iter().map(|b| b.device_id).collect()
}

#[tokio::test]
async fn a_ghost_registration_is_refused() {
    let dir = TempDir::new("ghost");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    // Alice had a second device (key seed 12), removed in version 2.
    let (v1, alices) = same_user(
        1,
        vec![Device::new("alice", 1, 11), Device::new("alice", 2, 12)],
    );
    let alice = alices[0].clone();
    let mut a = registered(at, &alice).await;
    a.upload(&alice, 1, 5).await.unwrap();
    let v2 = v1.without_device(&user_key("alice"), 2).unwrap();
    assert_eq!(
        publish(&mut a, &v2).await,
        Ok(Reply::DeviceListStored { version: 2 })
    );

    // Mallory tries to add her own device 2 to alice.
    let mallory = Device::new("alice", 2, 66);
    // (a) A list signed by her own user key, naming alice.
    let own_key = mallory.clone().signed_by(&user_key("mallory"));
    let mut m = connect(at).await;
    assert_eq!(code(m.register(&own_key).await), ErrorCode::UserKeyMismatch);
    // (b) Alice's genuine current list, which does not list her device.
    let genuine = mallory.clone().with_list(&v2);
    let mut m = connect(at).await;
    assert_eq!(code(m.register(&genuine).await), ErrorCode::NotOnDeviceList);
    // (c) Alice's older list, with the key of the removed device 2 (say,
    // taken from that device).
    let stale = alices[1].clone();
    assert_eq!(stale.list, v1);
    let mut m = connect(at).await;
    assert_eq!(code(m.register(&stale).await), ErrorCode::StaleDeviceList);
    // The old device cannot log in either.
    assert_eq!(code(m.login(&stale).await), ErrorCode::UnknownDevice);

    // Peers see only alice's listed device, and the genuine list.
    let mut peer = connect(at).await;
    let b = bundles(&mut peer, "alice").await.unwrap();
    assert_eq!(device_ids(&b), vec![1]);
    assert_eq!(b.device_list.verify().unwrap(), v2);
    assert_eq!(fetch_list(&mut peer, "alice").await.unwrap(), v2);
    assert_eq!(
        code(peer.fetch(&addr("alice", 2)).await),
        ErrorCode::UnknownDevice
    );
    assert_eq!(
        code(fetch_list(&mut peer, "nobody").await),
        ErrorCode::UnknownUser
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn registration_lists_must_verify_and_name_the_user() {
    let dir = TempDir::new("register-lists");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let bob = Device::new("bob", 1, 2);
    // A list of another user id listing the same device id and key.
    let carol = Device::with_identity("carol", 1, bob.identity.clone());
    let mut c = connect(at).await;
    assert_eq!(
        code(c.register(&bob.clone().with_list(&carol.list)).await),
        ErrorCode::InvalidDeviceList
    );
    // A list whose signature does not verify.
    let mut bytes = bob.list.to_wire();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let challenge = c.challenge().await;
    let mut r = tacit_relay_proto::Register::sign(
        &bob.identity,
        "test-relay",
        &challenge,
        now_ms(),
        bob.address.clone(),
        &bob.list,
    );
    r.device_list = DeviceListBytes::new(bytes).unwrap();
    assert_eq!(
        code(c.request(Request::Register(r)).await),
        ErrorCode::InvalidDeviceList
    );
    // The first valid list binds bob; registering again with it is a login.
    drop(registered(at, &bob).await);
    let mut again = connect(at).await;
    match again.register(&bob).await {
        Ok(Reply::LoggedIn(l)) => assert!(!l.registered),
        other => panic!("{other:?}"),
    }
    // Another list of the stored version is refused.
    let (_, other) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 3, 4)]);
    let mut c = connect(at).await;
    assert_eq!(
        code(c.register(&other[1]).await),
        ErrorCode::InvalidDeviceList
    );
    // A newer list registers the new device and becomes the stored one.
    let (v2, newer) = same_user(2, vec![Device::new("bob", 1, 2), Device::new("bob", 3, 4)]);
    let mut c = connect(at).await;
    match c.register(&newer[1]).await {
        Ok(Reply::LoggedIn(l)) => assert!(l.registered),
        other => panic!("{other:?}"),
    }
    assert_eq!(fetch_list(&mut c, "bob").await.unwrap(), v2);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn publishing_a_list_removes_the_devices_left_off() {
    let dir = TempDir::new("removal");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let (v1, bobs) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 3)]);
    let (bob1, bob2) = (bobs[0].clone(), bobs[1].clone());
    let eve = Device::new("eve", 1, 4);
    let mut b1 = registered(at, &bob1).await;
    let mut b2 = registered(at, &bob2).await;
    let mut e = registered(at, &eve).await;
    for (c, d) in [(&mut b1, &bob1), (&mut b2, &bob2), (&mut e, &eve)] {
        assert!(c.drain().await.is_empty());
        c.upload(d, 1, 3).await.unwrap();
    }
    // A message waits in device 2's mailbox (pushed, not acknowledged).
    e.submit(&bob2.address, b"for bob 2").await.unwrap();
    b2.next_push().await;
    assert_eq!(
        device_ids(&bundles(&mut e, "bob").await.unwrap()),
        vec![1, 2]
    );

    // Refused publications change nothing: not logged in, another user's
    // device, a list of another user key, the stored version.
    let v2 = v1.without_device(&user_key("bob"), 2).unwrap();
    let mut anonymous = connect(at).await;
    assert_eq!(
        code(publish(&mut anonymous, &v2).await),
        ErrorCode::NotAuthenticated
    );
    assert_eq!(
        code(publish(&mut e, &v2).await),
        ErrorCode::InvalidDeviceList
    );
    let forged = DeviceList::sign(
        &user_key("eve"),
        "bob",
        5,
        &[(1, bob1.identity.public_key(), 0)],
    )
    .unwrap();
    assert_eq!(
        code(publish(&mut b1, &forged).await),
        ErrorCode::UserKeyMismatch
    );
    assert_eq!(
        code(publish(&mut b1, &v1).await),
        ErrorCode::StaleDeviceList
    );
    assert_eq!(
        device_ids(&bundles(&mut e, "bob").await.unwrap()),
        vec![1, 2]
    );

    // Bob removes device 2.
    assert_eq!(
        publish(&mut b1, &v2).await,
        Ok(Reply::DeviceListStored { version: 2 })
    );
    // Its connection is told and closed.
    let frames = b2.expect_closed().await;
    assert!(
        frames.iter().any(|f| matches!(
            f,
            ServerFrame::Response(r)
                if r.result.as_ref().is_err_and(|e| e.code == ErrorCode::DeviceRemoved)
        )),
        "{frames:?}"
    );
    // It cannot log in, nothing can be sent to it, peers no longer see it.
    let mut c = connect(at).await;
    assert_eq!(code(c.login(&bob2).await), ErrorCode::UnknownDevice);
    assert_eq!(
        code(e.submit(&bob2.address, b"late").await),
        ErrorCode::UnknownDevice
    );
    let b = bundles(&mut e, "bob").await.unwrap();
    assert_eq!(device_ids(&b), vec![1]);
    assert_eq!(b.device_list.verify().unwrap(), v2);
    assert_eq!(code(e.fetch(&bob2.address).await), ErrorCode::UnknownDevice);
    // A replayed list is refused, whether older or the same.
    assert_eq!(
        code(publish(&mut b1, &v1).await),
        ErrorCode::StaleDeviceList
    );
    assert_eq!(
        code(publish(&mut b1, &v2).await),
        ErrorCode::StaleDeviceList
    );
    // Nor can the removed device come back with its old list.
    let mut c = connect(at).await;
    assert_eq!(code(c.register(&bob2).await), ErrorCode::StaleDeviceList);

    // Bob adds device 2 back: it registers anew, with an empty mailbox and
    // no prekeys.
    let v3 = v2
        .with_device(&user_key("bob"), 2, bob2.identity.public_key(), 0)
        .unwrap();
    assert_eq!(
        publish(&mut b1, &v3).await,
        Ok(Reply::DeviceListStored { version: 3 })
    );
    let back = bob2.clone().with_list(&v3);
    let mut c = connect(at).await;
    match c.register(&back).await {
        Ok(Reply::LoggedIn(l)) => {
            assert!(l.registered);
            assert_eq!(l.one_time_prekeys, 0);
            assert!(!l.has_signed_prekey);
        }
        other => panic!("{other:?}"),
    }
    assert!(c.drain().await.is_empty(), "the old mailbox is gone");
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_removed_device_can_publish_nothing() {
    let dir = TempDir::new("removed-publisher");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let (v1, bobs) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 3)]);
    let mut b1 = registered(at, &bobs[0]).await;
    // Bob's primary removes itself: the list is stored, the connection is
    // then closed.
    let v2 = v1.without_device(&user_key("bob"), 1).unwrap();
    let id = b1
        .send(Request::PublishDeviceList(PublishDeviceList {
            device_list: (&v2).into(),
        }))
        .await;
    let frames = b1.expect_closed().await;
    assert!(frames.iter().any(|f| matches!(
        f,
        ServerFrame::Response(r) if r.request_id == id
            && r.result == Ok(Reply::DeviceListStored { version: 2 })
    )));
    let mut c = connect(at).await;
    assert_eq!(fetch_list(&mut c, "bob").await.unwrap(), v2);
    relay.shutdown().await.unwrap();
}

fn link_config(dir: &TempDir, ttl: Duration, max: usize) -> tacit_relay::Config {
    let mut config = config(&dir.db());
    config.link_ttl = ttl;
    config.max_link_slots = max;
    config
}

async fn put(c: &mut TcpClient, slot: u8, blob: &[u8]) -> Result<Reply, ErrorReply> {
    c.request(Request::LinkPut(
        LinkPut::new([slot; 32], blob.to_vec()).unwrap(),
    ))
    .await
}

async fn take(c: &mut TcpClient, slot: u8) -> Result<Reply, ErrorReply> {
    c.request(Request::LinkTake(LinkTake { slot: [slot; 32] }))
        .await
}

#[tokio::test]
async fn link_slots_hold_one_blob_until_taken() {
    let dir = TempDir::new("link");
    let relay = Relay::bind(link_config(&dir, Duration::from_secs(600), 2))
        .await
        .unwrap();
    let at = relay.local_addr();
    // Neither side logs in.
    let mut new_device = connect(at).await;
    let mut primary = connect(at).await;
    assert_eq!(
        put(&mut new_device, 1, b"request").await,
        Ok(Reply::LinkStored)
    );
    assert_eq!(
        code(put(&mut primary, 1, b"other").await),
        ErrorCode::LinkSlotUnavailable
    );
    assert_eq!(
        take(&mut primary, 1).await,
        Ok(Reply::LinkBlob(b"request".to_vec()))
    );
    assert_eq!(
        code(take(&mut primary, 1).await),
        ErrorCode::LinkSlotUnavailable
    );
    assert_eq!(
        code(take(&mut primary, 9).await),
        ErrorCode::LinkSlotUnavailable
    );
    // A slot taken is free again.
    assert_eq!(put(&mut primary, 1, b"again").await, Ok(Reply::LinkStored));
    // At most two live slots on this relay.
    assert_eq!(
        put(&mut primary, 2, b"response").await,
        Ok(Reply::LinkStored)
    );
    let full = put(&mut primary, 3, b"third").await.unwrap_err();
    assert_eq!(full.code, ErrorCode::RateLimited);
    assert!(full.retry_after_ms.is_some());
    assert_eq!(
        take(&mut new_device, 2).await,
        Ok(Reply::LinkBlob(b"response".to_vec()))
    );
    assert_eq!(put(&mut primary, 3, b"third").await, Ok(Reply::LinkStored));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn link_slots_expire() {
    let dir = TempDir::new("link-expiry");
    let relay = Relay::bind(link_config(&dir, Duration::from_millis(300), 4096))
        .await
        .unwrap();
    let mut c = connect(relay.local_addr()).await;
    assert_eq!(put(&mut c, 1, b"soon gone").await, Ok(Reply::LinkStored));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(code(take(&mut c, 1).await), ErrorCode::LinkSlotUnavailable);
    // An expired slot can be put again.
    assert_eq!(put(&mut c, 1, b"fresh").await, Ok(Reply::LinkStored));
    assert_eq!(
        take(&mut c, 1).await,
        Ok(Reply::LinkBlob(b"fresh".to_vec()))
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn devices_of_a_database_without_users_must_register_again() {
    let dir = TempDir::new("legacy");
    let bob = Device::new("bob", 1, 2);
    {
        // A relay database from before users owned their devices.
        let db = rusqlite::Connection::open(dir.db()).unwrap();
        db.execute_batch(
            "CREATE TABLE devices (
                user_id TEXT NOT NULL, device_id INTEGER NOT NULL, identity_key BLOB NOT NULL,
                signed_prekey_id INTEGER, signed_prekey BLOB, signed_prekey_signature BLOB,
                fallback_prekey_id INTEGER, fallback_prekey BLOB, token_hash BLOB,
                queued INTEGER NOT NULL DEFAULT 0, expired_unreported INTEGER NOT NULL DEFAULT 0,
                created_ms INTEGER NOT NULL, PRIMARY KEY (user_id, device_id)) WITHOUT ROWID;",
        )
        .unwrap();
        for (device, seed) in [(1u32, 2u8), (2, 9)] {
            db.execute(
                "INSERT INTO devices (user_id, device_id, identity_key, created_ms) VALUES ('bob', ?1, ?2, 0)",
                rusqlite::params![device, identity(seed).public_key().to_bytes().to_vec()],
            )
            .unwrap();
        }
    }
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let mut c = connect(at).await;
    assert_eq!(code(c.login(&bob).await), ErrorCode::UnknownDevice);
    let mut peer = connect(at).await;
    assert_eq!(
        code(bundles(&mut peer, "bob").await),
        ErrorCode::UnknownDevice
    );
    // Registering with a list binds bob and keeps only the listed device.
    match c.register(&bob).await {
        Ok(Reply::LoggedIn(l)) => assert!(!l.registered),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(peer.submit(&addr("bob", 2), b"x").await),
        ErrorCode::UnknownDevice
    );
    relay.shutdown().await.unwrap();
}
