#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! KEM prekeys in the relay's directory (`tacit-v2`): checked uploads,
//! version-2 bundles, each one-time KEM prekey handed out once, the
//! last-resort KEM prekey after them, and removal with the device.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use tacit::wire::WireMessage as _;
use tacit_relay_proto::{Bundles, ErrorCode, Reply, ServerFrame};
use tacit_testkit::relay::Message;

/// Bob's one bundle from a fetch.
async fn fetch_one(c: &mut TcpClient, bob: &Device) -> tacit::wire::PreKeyBundleMessage {
    match c.fetch(&bob.address).await {
        Ok(Reply::Bundles(Bundles { mut bundles, .. })) => bundles.pop().unwrap().bundle,
        other => panic!("{other:?}"),
    }
}

fn stored(one_time: u32, kem: u32) -> Result<Reply, tacit_relay_proto::ErrorReply> {
    Ok(Reply::PreKeysStored {
        one_time_prekeys: one_time,
        one_time_kem_prekeys: kem,
    })
}

#[tokio::test]
async fn kem_prekeys_signed_by_another_identity_are_refused_and_nothing_is_stored() {
    let dir = TempDir::new("kem-upload");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let mallory = identity(9);
    let mut b = registered(relay.local_addr(), &bob).await;
    assert_eq!(b.upload(&bob, 1, 2).await, stored(2, 0));
    // A one-time KEM prekey signed by another identity.
    assert_eq!(
        code(b.upload_kem(&mallory, None, 1, 3).await),
        ErrorCode::InvalidPreKeys
    );
    // A last-resort KEM prekey signed by another identity, with good
    // one-time ones: the whole upload is refused.
    assert_eq!(
        code(b.upload_kem(&mallory, Some(500), 1, 0).await),
        ErrorCode::InvalidPreKeys
    );
    // One bad signature among good ones.
    let mut upload = tacit_relay_proto::UploadPreKeys {
        one_time_kem_prekeys: (10..20).map(|id| kem_prekey(&bob.identity, id)).collect(),
        ..Default::default()
    };
    upload.one_time_kem_prekeys[7].signature = kem_prekey(&mallory, 17).signature;
    assert_eq!(
        code(
            b.request(tacit_relay_proto::Request::UploadPreKeys(upload))
                .await
        ),
        ErrorCode::InvalidPreKeys
    );
    // A signature over another KEM key of Bob's (a key swapped under a
    // valid signature).
    let mut swapped = kem_prekey(&bob.identity, 30);
    swapped.signature = kem_prekey(&bob.identity, 31).signature;
    let upload = tacit_relay_proto::UploadPreKeys {
        one_time_kem_prekeys: vec![swapped],
        ..Default::default()
    };
    assert_eq!(
        code(
            b.request(tacit_relay_proto::Request::UploadPreKeys(upload))
                .await
        ),
        ErrorCode::InvalidPreKeys
    );
    // Nothing was stored: the bundle is version 1, and no KEM prekey is
    // counted.
    let mut c = connect(relay.local_addr()).await;
    let bundle = fetch_one(&mut c, &bob).await;
    assert_eq!(bundle.version(), 1);
    assert!(bundle.kem_prekey.is_none());
    drop(b);
    let mut b = connect(relay.local_addr()).await;
    match b.login(&bob).await {
        Ok(Reply::LoggedIn(info)) => {
            assert_eq!(info.one_time_kem_prekeys, 0);
            assert!(!info.has_kem_prekey);
        }
        other => panic!("{other:?}"),
    }
    // Good keys are stored and counted.
    assert_eq!(
        b.upload_kem(&bob.identity, Some(1), 2, 3).await,
        stored(1, 3)
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_kem_prekeys_are_refused_by_the_relay() {
    use prost_free::raw_upload;
    let dir = TempDir::new("kem-malformed");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(relay.local_addr(), &bob).await;
    b.upload(&bob, 1, 1).await.unwrap();
    let good = kem_prekey(&bob.identity, 1);
    let encoded = good.key.to_encoded();
    let mut wrong_type = encoded.clone();
    wrong_type[0] = 0x0B;
    let mut out_of_range = encoded.clone();
    out_of_range[1..1537].fill(0xFF);
    let sig = good.signature.to_bytes().to_vec();
    for key in [
        encoded[..1568].to_vec(),
        [encoded.clone(), vec![0]].concat(),
        wrong_type,
        out_of_range,
    ] {
        b.send_raw(Message::Binary(raw_upload(7, &key, &sig).into()))
            .await;
        assert_eq!(
            b.response(7).await.unwrap_err().code,
            ErrorCode::InvalidRequest,
            "{} bytes",
            key.len()
        );
    }
    // Nothing stored.
    let mut c = connect(relay.local_addr()).await;
    assert!(fetch_one(&mut c, &bob).await.kem_prekey.is_none());
    // The same frame with the good key is accepted.
    b.send_raw(Message::Binary(raw_upload(8, &encoded, &sig).into()))
        .await;
    assert_eq!(
        b.response(8).await,
        Ok(Reply::PreKeysStored {
            // The fetch above claimed the one one-time prekey.
            one_time_prekeys: 0,
            one_time_kem_prekeys: 1
        })
    );
    relay.shutdown().await.unwrap();
}

/// Hand-built `UploadPreKeys` frames with one one-time KEM prekey, so that
/// keys the frame types would refuse to build can be sent.
mod prost_free {
    /// A protobuf length-delimited field.
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2];
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
        out
    }

    /// `ClientFrame { request_id, upload_prekeys: { one_time_kem_prekeys:
    /// [{ id: 1, key, signature }] } }`.
    pub(crate) fn raw_upload(request_id: u8, key: &[u8], signature: &[u8]) -> Vec<u8> {
        let kem = [vec![0x08, 1], field(2, key), field(3, signature)].concat();
        let upload = field(5, &kem);
        [vec![0x08, request_id], field(5, &upload)].concat()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_hand_out_each_one_time_kem_prekey_once() {
    let dir = TempDir::new("kem-bundles");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(at, &bob).await;
    // More EC one-time prekeys than fetches, so every bundle carries both
    // kinds of one-time key while the KEM ones last.
    b.upload(&bob, 1, 150).await.unwrap();
    const LAST_RESORT: u32 = 1;
    assert_eq!(
        b.upload_kem(&bob.identity, Some(LAST_RESORT), 2, 100).await,
        stored(150, 100)
    );
    let tasks: Vec<_> = (0..120)
        .map(|_| {
            let bob = bob.address.clone();
            tokio::spawn(async move {
                let mut c = connect(at).await;
                match c.fetch(&bob).await {
                    Ok(Reply::Bundles(Bundles { bundles: mut v, .. })) => {
                        let bundle = v.pop().unwrap().bundle;
                        assert_eq!(bundle.version(), 2);
                        // The relay serves what was signed, and the wire
                        // form decodes strictly.
                        let kem = bundle.kem_prekey.clone().unwrap();
                        bundle
                            .identity_key
                            .verify_kem_prekey(&kem.key, &kem.signature)
                            .unwrap();
                        let again =
                            tacit::wire::PreKeyBundleMessage::from_wire(&bundle.to_wire()).unwrap();
                        assert_eq!(again, bundle);
                        (bundle.one_time_prekey.unwrap().0, kem.id)
                    }
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut kem_one_time = Vec::new();
    let mut ec_one_time = HashSet::new();
    let mut last_resort = 0;
    for t in tasks {
        let (ec, kem) = t.await.unwrap();
        assert!(
            ec_one_time.insert(ec),
            "EC one-time prekey {ec} handed out twice"
        );
        if kem == LAST_RESORT {
            last_resort += 1;
        } else {
            kem_one_time.push(kem);
        }
    }
    let distinct: HashSet<u32> = kem_one_time.iter().copied().collect();
    assert_eq!(
        kem_one_time.len(),
        100,
        "every one-time KEM prekey handed out"
    );
    assert_eq!(
        distinct.len(),
        100,
        "no one-time KEM prekey handed out twice"
    );
    assert_eq!(distinct, (2..102).collect::<HashSet<u32>>());
    assert_eq!(last_resort, 20, "the last-resort KEM prekey after them");
    // The owner was told its KEM supply ran low, with both counts.
    let mut warned = None;
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_millis(500), b.next_frame()).await
    {
        if let ServerFrame::PreKeysLow {
            remaining,
            kem_remaining,
        } = frame
        {
            warned = Some((remaining, kem_remaining));
        }
    }
    assert_eq!(warned, Some((30, 0)));
    // At the next login too, while the KEM stock stays low.
    drop(b);
    let mut b = connect(at).await;
    match b.login(&bob).await {
        Ok(Reply::LoggedIn(info)) => {
            assert_eq!(info.one_time_prekeys, 30);
            assert_eq!(info.one_time_kem_prekeys, 0);
            assert!(info.has_kem_prekey);
        }
        other => panic!("{other:?}"),
    }
    let mut low = false;
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_millis(500), b.next_frame()).await
    {
        low |= matches!(
            frame,
            ServerFrame::PreKeysLow {
                remaining: 30,
                kem_remaining: 0
            }
        );
    }
    assert!(low);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_one_time_kem_prekey_cap_refuses_the_whole_upload() {
    let dir = TempDir::new("kem-cap");
    let relay = start(&dir.db()).await;
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(relay.local_addr(), &bob).await;
    assert_eq!(
        b.upload_kem(&bob.identity, Some(1), 2, 100).await,
        stored(0, 100)
    );
    assert_eq!(
        b.upload_kem(&bob.identity, None, 102, 100).await,
        stored(0, 200)
    );
    // The 201st, with a new last-resort key: refused, and the last-resort
    // key is not replaced either.
    assert_eq!(
        code(b.upload_kem(&bob.identity, Some(900), 302, 1).await),
        ErrorCode::TooManyPreKeys
    );
    assert_eq!(
        code(b.upload_kem(&bob.identity, None, 200, 1).await),
        ErrorCode::TooManyPreKeys
    );
    // An id already stored refuses the whole upload.
    b.upload(&bob, 1, 200).await.unwrap();
    let mut c = connect(relay.local_addr()).await;
    for _ in 0..150 {
        fetch_one(&mut c, &bob).await;
    }
    assert_eq!(
        code(b.upload_kem(&bob.identity, Some(901), 190, 2).await),
        ErrorCode::InvalidPreKeys,
        "id 190 is stored"
    );
    // Neither refusal replaced the last-resort key: after the remaining
    // 50 one-time KEM prekeys, id 1 is offered.
    for _ in 0..50 {
        assert_ne!(fetch_one(&mut c, &bob).await.kem_prekey.unwrap().id, 1);
    }
    for _ in 0..3 {
        assert_eq!(fetch_one(&mut c, &bob).await.kem_prekey.unwrap().id, 1);
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn removing_a_device_deletes_its_kem_prekeys() {
    let dir = TempDir::new("kem-removal");
    let relay = start(&dir.db()).await;
    let at = relay.local_addr();
    let (_, bobs) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 5)]);
    let (bob, bob2) = (bobs[0].clone(), bobs[1].clone());
    let mut b2 = registered(at, &bob2).await;
    b2.upload(&bob2, 1, 3).await.unwrap();
    b2.upload_kem(&bob2.identity, Some(1), 2, 5).await.unwrap();
    let mut b = registered(at, &bob).await;
    // A new list without device 2.
    let list = tacit::identity::DeviceList::sign(
        &user_key("bob"),
        "bob",
        2,
        &[(1, bob.identity.public_key(), 0)],
    )
    .unwrap();
    b.request(tacit_relay_proto::Request::PublishDeviceList(
        tacit_relay_proto::PublishDeviceList {
            device_list: (&list).into(),
        },
    ))
    .await
    .unwrap();
    drop(b2);
    relay.shutdown().await.unwrap();
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let left: u32 = conn
        .query_row(
            "SELECT COUNT(*) FROM one_time_kem_prekeys WHERE device_id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}
