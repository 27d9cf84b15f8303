#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `SubmitGroup`: one shared payload fanned out to many devices, all or
//! nothing, durably, and opened by the recipients with the core's
//! multi-recipient envelope.

mod common;

use std::path::Path;

use common::*;
use tacit::group::multi::{self, MultiSealed};
use tacit::rand_core::OsRng;
use tacit::{Address, IdentityKey};
use tacit_relay::Relay;
use tacit_relay_proto::{
    DeliveryToken, EnvelopeKind, ErrorCode, Reply, Request, SetDeliveryToken, SubmitGroup,
    MAX_GROUP_RECIPIENTS,
};
use tacit_testkit::relay::Message;

/// Messages queued (not acknowledged): (all, group envelopes).
fn rows(db: &Path) -> (u64, u64) {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(kind = 1), 0) FROM queued_messages",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn seal(devices: &[Device], plaintext: &[u8]) -> MultiSealed {
    let list: Vec<(Address, IdentityKey)> = devices
        .iter()
        .map(|d| (d.address.clone(), d.identity.public_key()))
        .collect();
    multi::seal(plaintext, &list, &mut OsRng).unwrap()
}

fn request(sealed: &MultiSealed, token: Option<&DeliveryToken>) -> Request {
    Request::SubmitGroup(SubmitGroup::from_sealed(sealed, |_| token.cloned()).unwrap())
}

fn queued(r: Result<Reply, tacit_relay_proto::ErrorReply>) -> u32 {
    match r {
        Ok(Reply::SubmittedGroup { queued }) => queued,
        other => panic!("{other:?}"),
    }
}

/// Registers every device, one connection each.
async fn register_all(at: std::net::SocketAddr, devices: &[Device]) {
    for d in devices {
        drop(registered(at, d).await);
    }
}

/// Logs `device` in, reads its backlog, checks that it is exactly one
/// group envelope that opens to `plaintext`, and acknowledges it.
async fn receive_one(at: std::net::SocketAddr, device: &Device, plaintext: &[u8]) {
    let mut c = connect(at).await;
    c.login(device).await.unwrap();
    let pushes = c.drain().await;
    assert_eq!(pushes.len(), 1, "{}", device.address);
    let push = &pushes[0];
    assert_eq!(push.kind, EnvelopeKind::Group);
    let opened = multi::open(&device.identity, &device.address, &push.envelope).unwrap();
    assert_eq!(opened, plaintext);
    c.ack(vec![push.message_id]).await.unwrap();
}

#[tokio::test]
async fn one_submission_reaches_every_device_once_and_opens() {
    let dir = TempDir::new("group-fanout");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let (_, bobs) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 3)]);
    let mut devices = bobs;
    devices.push(Device::new("carol", 1, 4));
    devices.push(Device::new("dave", 7, 5));
    devices.push(Device::new("erin", 1, 6));
    register_all(at, &devices).await;

    // Two recipients online, three offline.
    let mut online = Vec::new();
    for d in &devices[..2] {
        let mut c = connect(at).await;
        c.login(d).await.unwrap();
        assert!(c.drain().await.is_empty());
        online.push(c);
    }
    let message = b"a padded group message".to_vec();
    let sealed = seal(&devices, &message);
    // An unauthenticated sender, as for sealed envelopes.
    let mut sender = connect(at).await;
    assert_eq!(queued(sender.request(request(&sealed, None)).await), 5);
    assert_eq!(rows(&dir.db()), (5, 5));

    for (c, d) in online.iter_mut().zip(&devices) {
        let push = c.next_push().await;
        assert_eq!(push.kind, EnvelopeKind::Group);
        let opened = multi::open(&d.identity, &d.address, &push.envelope).unwrap();
        assert_eq!(opened, message);
        // Another device's copy does not open here.
        let other = &devices[4];
        assert_eq!(
            multi::open(&other.identity, &other.address, &push.envelope),
            Err(multi::MultiError::DoesNotOpen)
        );
        c.ack(vec![push.message_id]).await.unwrap();
    }
    drop(online);
    for d in &devices[2..] {
        receive_one(at, d, &message).await;
    }
    // Delivered once: every mailbox is empty after its acknowledgement.
    assert_eq!(rows(&dir.db()), (0, 0));
    for d in &devices {
        let mut c = connect(at).await;
        c.login(d).await.unwrap();
        assert!(c.drain().await.is_empty());
    }
    // A sealed envelope still says so.
    sender.submit(&devices[2].address, b"sealed").await.unwrap();
    let mut c = connect(at).await;
    c.login(&devices[2]).await.unwrap();
    let pushes = c.drain().await;
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].kind, EnvelopeKind::Sealed);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn refused_submissions_store_nothing() {
    let dir = TempDir::new("group-refused");
    let mut config = config(&dir.db());
    config.queue_cap = 2;
    let relay = Relay::bind(config).await.unwrap();
    let at = relay.local_addr();
    let devices: Vec<Device> = (0..4u8)
        .map(|i| Device::new(&format!("member{i}"), 1, i + 10))
        .collect();
    register_all(at, &devices).await;
    let mut sender = connect(at).await;

    // A recipient that is not a registered device, last in the list.
    let mut with_stranger = devices.clone();
    with_stranger.push(Device::new("stranger", 1, 99));
    let refused = sender
        .request(request(&seal(&with_stranger, b"m"), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::UnknownDevice);
    assert!(
        refused.message.contains("recipient 4"),
        "{}",
        refused.message
    );
    assert_eq!(rows(&dir.db()), (0, 0));

    // A recipient that requires its delivery token.
    let token = DeliveryToken::new(&[42; 24]).unwrap();
    let mut c = connect(at).await;
    c.login(&devices[2]).await.unwrap();
    c.request(Request::SetDeliveryToken(SetDeliveryToken {
        token: Some(token.clone()),
    }))
    .await
    .unwrap();
    drop(c);
    assert_eq!(
        code(sender.request(request(&seal(&devices, b"m"), None)).await),
        ErrorCode::DeliveryTokenRefused
    );
    assert_eq!(rows(&dir.db()), (0, 0));
    // With the token (the others have none, so it does not matter to them).
    assert_eq!(
        queued(
            sender
                .request(request(&seal(&devices, b"m"), Some(&token)))
                .await
        ),
        4
    );
    assert_eq!(rows(&dir.db()), (4, 4));

    // A full queue: device 0 gets one more message, then its queue (cap 2)
    // is full and the next group submission is refused whole.
    sender.submit(&devices[0].address, b"x").await.unwrap();
    assert_eq!(rows(&dir.db()), (5, 4));
    assert_eq!(
        code(
            sender
                .request(request(&seal(&devices, b"m"), Some(&token)))
                .await
        ),
        ErrorCode::QueueFull
    );
    assert_eq!(rows(&dir.db()), (5, 4));

    // Frames the relay refuses while decoding: duplicates, too many, an
    // oversized fan-out, a shared payload of another layout.
    let shared = seal(&devices[..1], b"m").shared.to_bytes();
    let one = |user: &str| recipient_field(user, 1, &[1; 32]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "duplicate",
            frame(&shared, &[one("member0"), one("member0")]),
        ),
        (
            "too many",
            frame(
                &shared,
                &(0..=MAX_GROUP_RECIPIENTS)
                    .map(|i| one(&format!("u{i}")))
                    .collect::<Vec<_>>(),
            ),
        ),
        ("no recipients", frame(&shared, &[])),
        (
            "oversized fan-out",
            frame(
                &seal(&devices[..1], &vec![0; 200 * 1024]).shared.to_bytes(),
                &(0..400).map(|i| one(&format!("u{i}"))).collect::<Vec<_>>(),
            ),
        ),
        (
            "shared payload of another layout",
            frame(&shared[1..], &[one("member0")]),
        ),
    ];
    for (name, bytes) in cases {
        sender.send_raw(Message::binary(bytes)).await;
        let r = match sender.read().await {
            Some(tacit_relay_proto::ServerFrame::Response(r)) => r,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(
            (r.request_id, r.result.unwrap_err().code),
            (77, ErrorCode::InvalidRequest),
            "{name}"
        );
        assert_eq!(rows(&dir.db()), (5, 4), "{name}");
    }
    relay.shutdown().await.unwrap();
}

/// A protobuf varint.
fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = u8::try_from(n & 0x7f).unwrap();
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push((tag << 3) | 2);
    varint(value.len(), out);
    out.extend_from_slice(value);
}

/// `GroupRecipient { user_id, device_id, wrapped_key }`.
fn recipient_field(user: &str, device: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(1, user.as_bytes(), &mut out);
    out.extend_from_slice(&[0x10, device]);
    bytes_field(3, key, &mut out);
    out
}

/// `ClientFrame { request_id: 77, submit_group: { shared, recipients } }`,
/// built by hand so that it can break the rules the constructors keep.
fn frame(shared: &[u8], recipients: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    bytes_field(1, shared, &mut body);
    for r in recipients {
        bytes_field(2, r, &mut body);
    }
    let mut out = vec![0x08, 77];
    // Field 14, length-delimited: tag (14 << 3) | 2 = 114.
    out.push(114);
    varint(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_recipients_in_one_submission() {
    let dir = TempDir::new("group-1000");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let devices: Vec<Device> = (0..u32::try_from(MAX_GROUP_RECIPIENTS).unwrap())
        .map(|n| Device::numbered(&format!("m{n}"), 1, n))
        .collect();
    register_all(at, &devices).await;
    let message = vec![0x42; 300];
    let sealed = seal(&devices, &message);
    let mut sender = connect(at).await;
    assert_eq!(
        queued(sender.request(request(&sealed, None)).await),
        u32::try_from(MAX_GROUP_RECIPIENTS).unwrap()
    );
    let total = u64::try_from(MAX_GROUP_RECIPIENTS).unwrap();
    assert_eq!(rows(&dir.db()), (total, total));
    // One row per device.
    let c =
        rusqlite::Connection::open_with_flags(dir.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let distinct: u64 = c
        .query_row(
            "SELECT COUNT(DISTINCT d.user_id || '/' || d.device_id) FROM queued_messages m JOIN devices d ON d.mailbox = m.mailbox",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(distinct, total);
    for d in [&devices[0], &devices[499], &devices[999]] {
        receive_one(at, d, &message).await;
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_acknowledged_group_submission_survives_sigkill() {
    let dir = TempDir::new("group-kill");
    let devices: Vec<Device> = (0..6u8)
        .map(|i| Device::new(&format!("k{i}"), 1, i + 30))
        .collect();
    let (mut child, at) = spawn(&dir.db()).await;
    register_all(at, &devices).await;
    let mut sender = connect(at).await;
    let messages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 50]).collect();
    for m in &messages {
        assert_eq!(
            queued(sender.request(request(&seal(&devices, m), None)).await),
            6
        );
    }
    // No goodbye: SIGKILL right after the last acknowledgement.
    child.kill().await.unwrap();
    let (mut child, at) = spawn(&dir.db()).await;
    for d in &devices {
        let mut c = connect(at).await;
        c.login(d).await.unwrap();
        let pushes = c.drain().await;
        let opened: Vec<Vec<u8>> = pushes
            .iter()
            .map(|p| {
                assert_eq!(p.kind, EnvelopeKind::Group);
                multi::open(&d.identity, &d.address, &p.envelope).unwrap()
            })
            .collect();
        assert_eq!(opened, messages);
    }
    child.kill().await.unwrap();
}
