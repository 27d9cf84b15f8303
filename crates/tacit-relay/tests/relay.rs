#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Integration tests against an in-process relay on 127.0.0.1.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use tacit_relay::Relay;
use tacit_relay_proto::{
    Bundles, DeliveryToken, ErrorCode, FetchBundles, Login, Reply, Request, ServerFrame,
    SetDeliveryToken, Submit,
};
use tacit_testkit::relay::Message;

fn submitted(r: Result<Reply, tacit_relay_proto::ErrorReply>) -> u64 {
    match r {
        Ok(Reply::Submitted { message_id }) => message_id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn offline_queue_drains_in_order_on_login() {
    let dir = TempDir::new("offline");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(relay.local_addr(), &bob).await;
    assert!(b.drain().await.is_empty());
    drop(b);

    // An unauthenticated sender submits while bob is offline.
    let mut alice = connect(relay.local_addr()).await;
    let mut ids = Vec::new();
    for i in 0..20u8 {
        ids.push(submitted(alice.submit(&bob.address, &[i; 40]).await));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    let pushes = b.drain().await;
    assert_eq!(pushes.iter().map(|p| p.message_id).collect::<Vec<_>>(), ids);
    for (i, p) in pushes.iter().enumerate() {
        assert_eq!(p.envelope, vec![i as u8; 40]);
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn online_recipient_gets_pushes_at_once() {
    let dir = TempDir::new("online");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let alice = Device::new("alice", 1, 1);
    let mut b = registered(relay.local_addr(), &bob).await;
    assert!(b.drain().await.is_empty());
    // An authenticated sender too.
    let mut a = registered(relay.local_addr(), &alice).await;
    let id = submitted(a.submit(&bob.address, b"hello").await);
    let push = b.next_push().await;
    assert_eq!(
        (push.message_id, push.envelope.as_slice()),
        (id, &b"hello"[..])
    );
    assert!(push.server_time_ms > 0);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn acked_messages_are_deleted_and_unacked_redelivered() {
    let dir = TempDir::new("ack");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    let mut a = connect(relay.local_addr()).await;
    let ids: Vec<u64> = {
        let mut v = Vec::new();
        for i in 0..4u8 {
            v.push(submitted(a.submit(&bob.address, &[i]).await));
        }
        v
    };
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    assert_eq!(b.drain().await.len(), 4);
    assert_eq!(
        b.ack(vec![ids[0], ids[2]]).await,
        Ok(Reply::Acked { removed: 2 })
    );
    // Acking again: the ids are gone, nothing else changes.
    assert_eq!(code(b.ack(vec![ids[0]]).await), ErrorCode::UnknownMessage);
    drop(b);

    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    let again = b.drain_ids().await;
    assert_eq!(again, vec![ids[1], ids[3]]);
    // An ack naming one stranger id deletes nothing.
    assert_eq!(
        code(b.ack(vec![ids[1], ids[0]]).await),
        ErrorCode::UnknownMessage
    );
    assert_eq!(
        b.ack(vec![ids[1], ids[3]]).await,
        Ok(Reply::Acked { removed: 2 })
    );
    drop(b);
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    assert!(b.drain().await.is_empty());
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_with_the_same_database_loses_nothing() {
    let dir = TempDir::new("restart");
    let bob = Device::new("bob", 1, 2);
    let mut ids = Vec::new();
    {
        let relay = start(&dir.db()).await;
        let mut b = registered(relay.local_addr(), &bob).await;
        b.upload(&bob, 1, 5).await.unwrap();
        drop(b);
        let mut a = connect(relay.local_addr()).await;
        for i in 0..10u8 {
            ids.push(submitted(a.submit(&bob.address, &[i; 3]).await));
        }
        relay.shutdown().await.unwrap();
    }
    let relay = start(&dir.db()).await;
    let mut b = connect(relay.local_addr()).await;
    match b.login(&bob).await {
        Ok(Reply::LoggedIn(l)) => {
            assert_eq!(l.one_time_prekeys, 5);
            assert!(l.has_signed_prekey && !l.registered);
        }
        other => panic!("{other:?}"),
    }
    let got = b.drain_ids().await;
    assert_eq!(got, ids);
    // New ids keep increasing after a restart.
    let mut a = connect(relay.local_addr()).await;
    assert!(submitted(a.submit(&bob.address, b"x").await) > ids[9]);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_stale_and_replayed_logins_are_refused() {
    let dir = TempDir::new("login");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    let mallory = Device::new("bob", 1, 66);

    // A signature by another key.
    let mut c = connect(relay.local_addr()).await;
    assert_eq!(code(c.login(&mallory).await), ErrorCode::BadSignature);
    // Login with no challenge.
    let l = Login::sign(
        &bob.identity,
        "test-relay",
        &[0; 32],
        now_ms(),
        bob.address.clone(),
    );
    assert_eq!(
        code(c.request(Request::Login(l)).await),
        ErrorCode::NoChallenge
    );
    // A stale timestamp.
    let ch = c.challenge().await;
    let l = Login::sign(
        &bob.identity,
        "test-relay",
        &ch,
        now_ms() - 10 * 60_000,
        bob.address.clone(),
    );
    assert_eq!(
        code(c.request(Request::Login(l)).await),
        ErrorCode::StaleTimestamp
    );
    // Another relay's name.
    let ch = c.challenge().await;
    let l = Login::sign(
        &bob.identity,
        "other-relay",
        &ch,
        now_ms(),
        bob.address.clone(),
    );
    assert_eq!(
        code(c.request(Request::Login(l)).await),
        ErrorCode::BadSignature
    );
    // Requests that need a login are still refused.
    assert_eq!(code(c.ack(vec![1]).await), ErrorCode::NotAuthenticated);

    // A good login, then its replay: on the same connection the challenge
    // is spent; on another connection the challenge differs.
    let mut good = connect(relay.local_addr()).await;
    let ch = good.challenge().await;
    let l = Login::sign(
        &bob.identity,
        "test-relay",
        &ch,
        now_ms(),
        bob.address.clone(),
    );
    good.request(Request::Login(l.clone())).await.unwrap();
    let mut replay = connect(relay.local_addr()).await;
    assert_eq!(
        code(replay.request(Request::Login(l.clone())).await),
        ErrorCode::NoChallenge
    );
    replay.challenge().await;
    assert_eq!(
        code(replay.request(Request::Login(l.clone())).await),
        ErrorCode::BadSignature
    );
    // The spent challenge cannot be reused after a failure either.
    assert_eq!(
        code(replay.request(Request::Login(l)).await),
        ErrorCode::NoChallenge
    );

    // An unknown device.
    let mut c = connect(relay.local_addr()).await;
    assert_eq!(
        code(c.login(&Device::new("nobody", 1, 3)).await),
        ErrorCode::UnknownDevice
    );
    // Registering a taken address with another key, under another user
    // key than the one bob is bound to.
    let mallory = mallory.signed_by(&user_key("mallory"));
    assert_eq!(code(c.register(&mallory).await), ErrorCode::UserKeyMismatch);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn too_many_failed_logins_close_the_connection() {
    let dir = TempDir::new("failed-logins");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    let mut c = connect(relay.local_addr()).await;
    for _ in 0..4 {
        assert_eq!(
            code(c.login(&Device::new("bob", 1, 9)).await),
            ErrorCode::BadSignature
        );
    }
    let ch = c.challenge().await;
    let l = Login::sign(
        &identity(9),
        "test-relay",
        &ch,
        now_ms(),
        bob.address.clone(),
    );
    c.send(Request::Login(l)).await;
    let frames = c.expect_closed().await;
    assert!(frames.iter().any(|f| matches!(f, ServerFrame::Response(r) if r.result.as_ref().is_err_and(|e| e.code == ErrorCode::TooManyErrors))));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_device_never_reads_or_acks_another_devices_mailbox() {
    let dir = TempDir::new("cross");
    let relay = start(&dir.db()).await;
    let (_, bobs) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 3)]);
    let (bob1, bob2) = (bobs[0].clone(), bobs[1].clone());
    let eve = Device::new("eve", 1, 4);
    let mut b1 = registered(relay.local_addr(), &bob1).await;
    let mut b2 = registered(relay.local_addr(), &bob2).await;
    let mut e = registered(relay.local_addr(), &eve).await;
    for c in [&mut b1, &mut b2, &mut e] {
        assert!(c.drain().await.is_empty());
    }
    let id = submitted(e.submit(&bob1.address, b"for bob 1").await);
    assert_eq!(b1.next_push().await.message_id, id);
    // Neither bob's other device nor eve can ack it.
    assert_eq!(code(b2.ack(vec![id]).await), ErrorCode::UnknownMessage);
    assert_eq!(code(e.ack(vec![id]).await), ErrorCode::UnknownMessage);
    // And bob2 received nothing: its next frame answers its own request.
    let own = submitted(e.submit(&bob2.address, b"for bob 2").await);
    assert_eq!(b2.next_push().await.message_id, own);
    drop(b1);
    let mut b1 = connect(relay.local_addr()).await;
    b1.login(&bob1).await.unwrap();
    assert_eq!(b1.drain_ids().await, vec![id]);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_login_supersedes_the_first_connection() {
    let dir = TempDir::new("supersede");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let mut first = registered(relay.local_addr(), &bob).await;
    assert!(first.drain().await.is_empty());
    let mut second = connect(relay.local_addr()).await;
    second.login(&bob).await.unwrap();
    let frames = first.expect_closed().await;
    assert!(frames.iter().any(|f| matches!(f, ServerFrame::Response(r) if r.result.as_ref().is_err_and(|e| e.code == ErrorCode::Superseded))));
    assert!(second.drain().await.is_empty());
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_clients() {
    let dir = TempDir::new("hundred");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    const N: u32 = 100;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            tokio::spawn(async move {
                let me = Device::numbered(&format!("user{i}"), 1, i);
                let mut c = registered(at, &me).await;
                // Everyone waits until all have registered by retrying on
                // UnknownDevice (bounded).
                let to = addr(&format!("user{}", (i + 1) % N), 1);
                let mut sent = false;
                for _ in 0..200 {
                    match c.submit(&to, format!("from {i}").as_bytes()).await {
                        Ok(Reply::Submitted { .. }) => {
                            sent = true;
                            break;
                        }
                        Err(e) if e.code == ErrorCode::UnknownDevice => {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        other => panic!("{other:?}"),
                    }
                }
                assert!(sent);
                let push = c.next_push().await;
                assert_eq!(
                    push.envelope,
                    format!("from {}", (i + N - 1) % N).into_bytes()
                );
                assert_eq!(
                    c.ack(vec![push.message_id]).await,
                    Ok(Reply::Acked { removed: 1 })
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!("100 clients in {:?}", started.elapsed());
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bundle_fetches_never_share_a_one_time_prekey() {
    let dir = TempDir::new("bundles");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let (list, bobs) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 5)]);
    let (bob, bob2) = (bobs[0].clone(), bobs[1].clone());
    let mut b = registered(at, &bob).await;
    assert_eq!(
        b.upload(&bob, 1, 60).await,
        Ok(Reply::PreKeysStored {
            one_time_prekeys: 60,
            one_time_kem_prekeys: 0,
        })
    );
    let tasks: Vec<_> = (0..80)
        .map(|_| {
            let bob = bob.address.clone();
            tokio::spawn(async move {
                let mut c = connect(at).await;
                match c.fetch(&bob).await {
                    Ok(Reply::Bundles(Bundles { bundles: mut v, .. })) => {
                        assert_eq!(v.len(), 1);
                        let bundle = v.pop().unwrap().bundle;
                        bundle
                            .identity_key
                            .verify_signed_prekey(
                                &bundle.signed_prekey,
                                &bundle.signed_prekey_signature,
                            )
                            .unwrap();
                        bundle.one_time_prekey.unwrap().0
                    }
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut one_time = Vec::new();
    let mut fallback = 0;
    for t in tasks {
        match t.await.unwrap() {
            0xffff => fallback += 1,
            id => one_time.push(id),
        }
    }
    let distinct: HashSet<u32> = one_time.iter().copied().collect();
    assert_eq!(one_time.len(), 60, "every one-time prekey handed out once");
    assert_eq!(distinct.len(), 60, "no one-time prekey handed out twice");
    assert_eq!(fallback, 20);
    // The owner was told its supply ran low.
    let mut warned = false;
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_millis(500), b.next_frame()).await
    {
        if matches!(frame, ServerFrame::PreKeysLow { .. }) {
            warned = true;
        }
    }
    assert!(warned);
    // All-devices fetch and a device without prekeys.
    drop(registered(at, &bob2).await);
    let mut c = connect(at).await;
    match c
        .request(Request::FetchBundles(FetchBundles::user("bob").unwrap()))
        .await
    {
        Ok(Reply::Bundles(b)) => {
            assert_eq!(b.device_list.verify().unwrap(), list);
            assert_eq!(
                b.bundles.iter().map(|b| b.device_id).collect::<Vec<_>>(),
                vec![1]
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code(c.fetch(&bob2.address).await), ErrorCode::NoPreKeys);
    assert_eq!(
        code(c.fetch(&addr("nobody", 1)).await),
        ErrorCode::UnknownDevice
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn prekey_uploads_are_checked() {
    let dir = TempDir::new("upload");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(relay.local_addr(), &bob).await;
    // A signed prekey signed by someone else.
    let other = Device::new("x", 1, 9);
    assert_eq!(
        code(b.upload(&other, 1, 1).await),
        ErrorCode::InvalidPreKeys
    );
    assert_eq!(
        b.upload(&bob, 1, 3).await,
        Ok(Reply::PreKeysStored {
            one_time_prekeys: 3,
            one_time_kem_prekeys: 0,
        })
    );
    // An id already stored: the whole upload is refused.
    assert_eq!(code(b.upload(&bob, 3, 2).await), ErrorCode::InvalidPreKeys);
    assert_eq!(
        b.upload(&bob, 4, 2).await,
        Ok(Reply::PreKeysStored {
            one_time_prekeys: 5,
            one_time_kem_prekeys: 0,
        })
    );
    // Over the per-device cap.
    for first in (100..1000).step_by(200) {
        b.upload(&bob, first, 199).await.unwrap();
    }
    assert_eq!(
        code(b.upload(&bob, 5000, 200).await),
        ErrorCode::TooManyPreKeys
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn delivery_tokens_and_queue_caps() {
    let dir = TempDir::new("tokens");
    let mut config = config(&dir.db());
    config.queue_cap = 3;
    let relay = Relay::bind(config).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    let alice = Device::new("alice", 1, 1);
    let mut b = registered(relay.local_addr(), &bob).await;
    let token = DeliveryToken::new(&[42; 24]).unwrap();
    assert_eq!(
        b.request(Request::SetDeliveryToken(SetDeliveryToken {
            token: Some(token.clone())
        }))
        .await,
        Ok(Reply::DeliveryTokenSet)
    );
    drop(b);
    let mut anon = connect(relay.local_addr()).await;
    assert_eq!(
        code(anon.submit(&bob.address, b"no token").await),
        ErrorCode::DeliveryTokenRefused
    );
    let wrong = DeliveryToken::new(&[41; 24]).unwrap();
    let submit = |t: Option<DeliveryToken>| {
        Request::Submit(Submit::new(bob.address.clone(), b"m".to_vec(), t).unwrap())
    };
    assert_eq!(
        code(anon.request(submit(Some(wrong))).await),
        ErrorCode::DeliveryTokenRefused
    );
    submitted(anon.request(submit(Some(token.clone()))).await);
    // A logged-in sender needs no token.
    let mut a = registered(relay.local_addr(), &alice).await;
    submitted(a.submit(&bob.address, b"m").await);
    submitted(anon.request(submit(Some(token.clone()))).await);
    // The queue is full now.
    let full = anon.request(submit(Some(token.clone()))).await.unwrap_err();
    assert_eq!(full.code, ErrorCode::QueueFull);
    assert!(!full.message.is_empty());
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    let pushes = b.drain().await;
    assert_eq!(pushes.len(), 3);
    b.ack(vec![pushes[0].message_id]).await.unwrap();
    // Room again; clearing the token opens the mailbox.
    b.request(Request::SetDeliveryToken(SetDeliveryToken { token: None }))
        .await
        .unwrap();
    submitted(anon.submit(&bob.address, b"open").await);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_messages_are_purged_a_chunk_at_a_time_until_none_is_left() {
    let dir = TempDir::new("ttl-chunks");
    a_purge_goes_on_until_no_expired_message_is_left(config(&dir.db())).await;
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_changes_nothing() {
    let dir = TempDir::new("bad-input");
    let mut config = config(&dir.db());
    config.max_frame_len = 4096;
    let relay = Relay::bind(config).await.unwrap();
    let at = relay.local_addr();
    let bob = Device::new("bob", 1, 2);
    drop(registered(at, &bob).await);
    let mut a = connect(at).await;
    let id = submitted(a.submit(&bob.address, b"keep me").await);

    let mut c = connect(at).await;
    // Malformed bytes: typed error, the connection goes on.
    c.send_raw(Message::binary(vec![0xff, 0xff, 0xff])).await;
    let r = match c.read().await {
        Some(ServerFrame::Response(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (r.request_id, r.result.unwrap_err().code),
        (0, ErrorCode::MalformedFrame)
    );
    // A text frame.
    c.send_raw(Message::text("hello")).await;
    let r = match c.read().await {
        Some(ServerFrame::Response(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.result.unwrap_err().code, ErrorCode::MalformedFrame);
    // An unknown request kind keeps its request id.
    c.send_raw(Message::binary(vec![0x08, 9, 0xf2, 0x01, 0x00]))
        .await;
    let r = match c.read().await {
        Some(ServerFrame::Response(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (r.request_id, r.result.unwrap_err().code),
        (9, ErrorCode::UnknownRequest)
    );
    // An invalid field keeps its request id.
    c.send_raw(Message::binary(vec![0x08, 10, 0x42, 0x00]))
        .await; // Ack with no ids
    let r = match c.read().await {
        Some(ServerFrame::Response(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (r.request_id, r.result.unwrap_err().code),
        (10, ErrorCode::InvalidRequest)
    );
    // Requests before login.
    assert_eq!(code(c.ack(vec![id]).await), ErrorCode::NotAuthenticated);
    assert_eq!(
        code(c.upload(&bob, 1, 1).await),
        ErrorCode::NotAuthenticated
    );
    assert_eq!(
        code(
            c.request(Request::SetDeliveryToken(SetDeliveryToken { token: None }))
                .await
        ),
        ErrorCode::NotAuthenticated
    );
    // Still usable.
    c.challenge().await;

    // An oversize frame: a typed error, then the relay closes.
    let mut big = connect(at).await;
    big.send_raw(Message::binary(vec![0u8; 5000])).await;
    let frames = big.expect_closed().await;
    assert!(
        matches!(frames.as_slice(), [ServerFrame::Response(r)] if r.result.as_ref().unwrap_err().code == ErrorCode::FrameTooLarge)
    );
    // Far over the limit: the transport refuses it; the relay lives on.
    let mut huge = connect(at).await;
    let _ = huge.try_send_raw(Message::binary(vec![0u8; 200_000])).await;
    let frames = huge.expect_closed().await;
    assert!(frames.iter().all(|f| matches!(f, ServerFrame::Response(r) if r.result.as_ref().unwrap_err().code == ErrorCode::FrameTooLarge)));

    // Too many bad frames close the connection.
    let mut noisy = connect(at).await;
    for _ in 0..17 {
        noisy.send_raw(Message::binary(vec![0xff])).await;
    }
    let frames = noisy.expect_closed().await;
    assert!(frames.iter().any(|f| matches!(f, ServerFrame::Response(r) if r.result.as_ref().is_err_and(|e| e.code == ErrorCode::TooManyErrors))));

    // Nothing changed: bob's message is still there, alone.
    let mut b = connect(at).await;
    b.login(&bob).await.unwrap();
    assert_eq!(b.drain_ids().await, vec![id]);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn unauthenticated_connections_are_rate_limited() {
    let dir = TempDir::new("rate");
    let mut config = config(&dir.db());
    config.unauthenticated_rate = tacit_relay::Rate::new(1.0, 5);
    let relay = Relay::bind(config).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    let mut c = connect(relay.local_addr()).await;
    let mut limited = None;
    for _ in 0..10 {
        if let Err(e) = c.submit(&bob.address, b"spam").await {
            limited = Some(e);
            break;
        }
    }
    let e = limited.expect("rate limit never applied");
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert!(e.retry_after_ms.unwrap() > 0);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_every_request_in_flight() {
    let dir = TempDir::new("shutdown");
    let bob = Device::new("bob", 1, 2);
    let relay = start(&dir.db()).await;
    drop(registered(relay.local_addr(), &bob).await);
    let mut a = connect(relay.local_addr()).await;
    let mut sent = Vec::new();
    for i in 0..200u32 {
        sent.push(
            a.send(Request::Submit(
                Submit::new(bob.address.clone(), i.to_be_bytes().to_vec(), None).unwrap(),
            ))
            .await,
        );
    }
    relay.trigger_shutdown();
    let mut acked = Vec::new();
    while let Some(frame) = a.read().await {
        if let ServerFrame::Response(r) = frame {
            if let Ok(Reply::Submitted { message_id }) = r.result {
                acked.push(message_id);
            }
        }
    }
    relay.wait().await.unwrap();
    // Every acknowledged submission survived.
    let relay = start(&dir.db()).await;
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    let stored: HashSet<u64> = b.drain().await.iter().map(|p| p.message_id).collect();
    assert!(
        acked.iter().all(|id| stored.contains(id)),
        "{} acked, {} stored",
        acked.len(),
        stored.len()
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_endpoint_reports_queues_and_counters() {
    let dir = TempDir::new("metrics");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let alice = Device::new("alice", 1, 3);
    drop(registered(relay.local_addr(), &bob).await);
    let mut a = connect(relay.local_addr()).await;
    submitted(a.submit(&bob.address, b"1").await);
    submitted(a.submit(&bob.address, b"2").await);
    // One submission on a logged-in connection.
    let mut logged_in = registered(relay.local_addr(), &alice).await;
    submitted(logged_in.submit(&bob.address, b"3").await);
    let body = metrics(&relay).await;
    assert!(body.contains("tacit_relay_queued_messages 3"), "{body}");
    assert!(body.contains("tacit_relay_submitted_total 3"), "{body}");
    assert!(body.contains("tacit_relay_devices 2"), "{body}");
    // Requests by kind and by the connection's login state.
    for line in [
        "tacit_relay_requests_total{kind=\"submit\",connection=\"unauthenticated\"} 2",
        "tacit_relay_requests_total{kind=\"submit\",connection=\"authenticated\"} 1",
        "tacit_relay_requests_total{kind=\"register\",connection=\"unauthenticated\"} 2",
        "tacit_relay_requests_total{kind=\"fetch_bundles\",connection=\"authenticated\"} 0",
    ] {
        assert!(body.contains(line), "{line} in {body}");
    }
    relay.shutdown().await.unwrap();
}

/// Messages committed while the recipient logs in and while it is online
/// (handed from the writer to its connection) reach it each exactly once,
/// in id order: concurrent senders straddle the login, so the backlog read
/// and the hand-over overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_to_an_online_recipient_are_never_skipped_or_doubled() {
    let dir = TempDir::new("handover");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(at, &bob).await;
    assert!(b.drain().await.is_empty());
    drop(b);

    const SENDERS: u8 = 4;
    const EACH: usize = 300;
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(usize::from(SENDERS) + 1));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let to = bob.address.clone();
            let go = std::sync::Arc::clone(&go);
            tokio::spawn(async move {
                let mut c = connect(at).await;
                go.wait().await;
                let mut ids = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    let body = format!("{s}:{i}");
                    ids.push(submitted(c.submit(&to, body.as_bytes()).await));
                }
                ids
            })
        })
        .collect();
    go.wait().await;
    // Log in again and again while the senders are submitting (nothing is
    // acknowledged, so each backlog is longer and read in several pages
    // while new messages are handed over): within one connection the ids
    // only increase.
    let mut marker = connect(at).await;
    let mut marks = Vec::new();
    let mut logins = 0;
    while !senders.iter().all(tokio::task::JoinHandle::is_finished) || logins == 0 {
        logins += 1;
        let mut b = connect(at).await;
        b.login(&bob).await.unwrap();
        let mut last = 0;
        loop {
            match b.next_frame().await {
                Some(ServerFrame::Push(p)) => {
                    assert!(p.message_id > last, "{} after {last}", p.message_id);
                    last = p.message_id;
                }
                Some(ServerFrame::QueueEmpty) => break,
                Some(ServerFrame::PreKeysLow { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // What was handed over during the backlog read comes next: read
        // up to a mark committed after it.
        let mark = submitted(marker.submit(&bob.address, b"mark").await);
        marks.push(mark);
        loop {
            let p = b.next_push().await;
            assert!(p.message_id > last, "{} after {last}", p.message_id);
            last = p.message_id;
            if p.message_id == mark {
                break;
            }
        }
    }
    let mut expected = HashSet::new();
    for s in senders {
        expected.extend(s.await.unwrap());
    }
    expected.extend(marks);
    let mut b = connect(at).await;
    b.login(&bob).await.unwrap();
    let total = usize::from(SENDERS) * EACH + logins;
    assert_eq!(expected.len(), total);

    let mut got = Vec::with_capacity(total);
    while got.len() < total {
        match b.next_frame().await {
            Some(ServerFrame::Push(p)) => got.push(p.message_id),
            Some(ServerFrame::QueueEmpty | ServerFrame::PreKeysLow { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "pushes out of order or doubled"
    );
    assert_eq!(got.iter().copied().collect::<HashSet<_>>(), expected);
    // Nothing pushed twice after the last one either: the next push is a
    // new message.
    let mut alice = connect(at).await;
    let last = submitted(alice.submit(&bob.address, b"last").await);
    let push = b.next_push().await;
    assert_eq!(push.message_id, last);
    assert_eq!(push.envelope, b"last");
    relay.shutdown().await.unwrap();
}
