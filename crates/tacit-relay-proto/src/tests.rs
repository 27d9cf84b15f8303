use prost::Message as _;
use tacit::identity::UserKeyPair;
use tacit::kem::KemKeyPair;
use tacit::KeyPair;

use super::*;

fn list(user: &str, device: u32, identity: &IdentityKeyPair) -> DeviceList {
    let user_key = UserKeyPair::from_seed(&[0x42; 32]);
    DeviceList::sign(&user_key, user, 1, &[(device, identity.public_key(), 7)]).unwrap()
}

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

fn kem_prekey(identity: &IdentityKeyPair, id: u32, seed: u8) -> SignedKemPreKey {
    let key = KemKeyPair::from_seed(&[seed; 64]).public_key().clone();
    SignedKemPreKey {
        id,
        signature: identity.sign_kem_prekey(&key),
        key,
    }
}

fn every_request() -> Vec<Request> {
    let id = identity(1);
    let spk = KeyPair::from_private_bytes([2; 32]).public_key();
    vec![
        Request::GetChallenge,
        Request::Register(Register::sign(
            &id,
            "relay",
            &[3; 32],
            1_000,
            addr("alice", 1),
            &list("alice", 1, &id),
        )),
        Request::Login(Login::sign(&id, "relay", &[3; 32], 1_000, addr("alice", 2))),
        Request::UploadPreKeys(UploadPreKeys {
            signed_prekey: Some(SignedPreKey {
                id: 1,
                key: spk,
                signature: id.sign_prekey(&spk),
            }),
            fallback_prekey: Some(OneTimePreKey { id: 9, key: spk }),
            one_time_prekeys: vec![
                OneTimePreKey { id: 1, key: spk },
                OneTimePreKey { id: 2, key: spk },
            ],
            ..UploadPreKeys::default()
        }),
        Request::UploadPreKeys(UploadPreKeys {
            kem_last_resort_prekey: Some(kem_prekey(&id, 1, 1)),
            one_time_kem_prekeys: vec![kem_prekey(&id, 2, 2), kem_prekey(&id, 3, 3)],
            ..UploadPreKeys::default()
        }),
        Request::UploadPreKeys(UploadPreKeys {
            one_time_kem_prekeys: vec![kem_prekey(&id, 4, 4)],
            ..UploadPreKeys::default()
        }),
        Request::FetchBundles(FetchBundles::user("bob").unwrap()),
        Request::FetchBundles(FetchBundles::device(&addr("bob", 3))),
        Request::Submit(Submit::new(addr("bob", 1), vec![7; 100], None).unwrap()),
        Request::Submit(
            Submit::new(
                addr("bob", 1),
                vec![7; 100],
                Some(DeliveryToken::new(&[5; 16]).unwrap()),
            )
            .unwrap(),
        ),
        Request::Ack(Ack::new(vec![1, 5, 3]).unwrap()),
        Request::SetDeliveryToken(SetDeliveryToken {
            token: Some(DeliveryToken::new(&[6; 32]).unwrap()),
        }),
        Request::SetDeliveryToken(SetDeliveryToken { token: None }),
        Request::SetPushEndpoint(SetPushEndpoint {
            url: Some("https://push.example/up/abc".into()),
        }),
        Request::SetPushEndpoint(SetPushEndpoint { url: None }),
        Request::PublishDeviceList(PublishDeviceList {
            device_list: (&list("alice", 2, &id)).into(),
        }),
        Request::FetchDeviceList(FetchDeviceList::new("bob").unwrap()),
        Request::LinkPut(LinkPut::new([9; 32], vec![1; MAX_LINK_BLOB_LEN]).unwrap()),
        Request::LinkPut(LinkPut::new([0; 32], vec![0]).unwrap()),
        Request::LinkTake(LinkTake { slot: [9; 32] }),
    ]
}

fn bundle() -> PreKeyBundleMessage {
    let id = identity(4);
    let spk = KeyPair::from_private_bytes([5; 32]).public_key();
    PreKeyBundleMessage {
        identity_key: id.public_key(),
        signed_prekey_id: 3,
        signed_prekey: spk,
        signed_prekey_signature: id.sign_prekey(&spk),
        one_time_prekey: Some((8, KeyPair::from_private_bytes([6; 32]).public_key())),
        kem_prekey: None,
    }
}

fn bundle_v2() -> PreKeyBundleMessage {
    PreKeyBundleMessage {
        kem_prekey: Some(kem_prekey(&identity(4), 12, 9)),
        ..bundle()
    }
}

fn every_server_frame() -> Vec<ServerFrame> {
    let ok = |reply| {
        ServerFrame::Response(Response {
            request_id: 3,
            result: Ok(reply),
        })
    };
    let mut frames = vec![
        ok(Reply::Challenge(Challenge {
            challenge: [1; 32],
            server_name: "relay".into(),
            server_time_ms: 5,
        })),
        ok(Reply::LoggedIn(LoggedIn {
            registered: true,
            one_time_prekeys: 4,
            has_signed_prekey: true,
            one_time_kem_prekeys: 0,
            has_kem_prekey: false,
        })),
        ok(Reply::LoggedIn(LoggedIn {
            registered: false,
            one_time_prekeys: 0,
            has_signed_prekey: true,
            one_time_kem_prekeys: 7,
            has_kem_prekey: true,
        })),
        ok(Reply::PreKeysStored {
            one_time_prekeys: 0,
            one_time_kem_prekeys: 0,
        }),
        ok(Reply::PreKeysStored {
            one_time_prekeys: 3,
            one_time_kem_prekeys: 200,
        }),
        ok(Reply::Bundles(Bundles {
            device_list: (&list("bob", 1, &identity(4))).into(),
            bundles: vec![
                DeviceBundle {
                    device_id: 1,
                    bundle: bundle(),
                },
                DeviceBundle {
                    device_id: 4,
                    bundle: bundle_v2(),
                },
            ],
        })),
        ok(Reply::Bundles(Bundles {
            device_list: DeviceListBytes::new(vec![1]).unwrap(),
            bundles: vec![],
        })),
        ok(Reply::DeviceListStored { version: 3 }),
        ok(Reply::DeviceList((&list("bob", 1, &identity(4))).into())),
        ok(Reply::LinkStored),
        ok(Reply::LinkBlob(vec![5; 10])),
        ok(Reply::Submitted { message_id: 77 }),
        ok(Reply::Acked { removed: 2 }),
        ok(Reply::DeliveryTokenSet),
        ok(Reply::PushEndpointSet),
        ServerFrame::Push(Push {
            message_id: 9,
            server_time_ms: 10,
            envelope: vec![1, 2, 3],
            kind: EnvelopeKind::Sealed,
        }),
        ServerFrame::Push(Push {
            message_id: 10,
            server_time_ms: 11,
            envelope: vec![4, 5, 6],
            kind: EnvelopeKind::Group,
        }),
        ok(Reply::SubmittedGroup { queued: 1000 }),
        ServerFrame::QueueEmpty,
        ServerFrame::PreKeysLow {
            remaining: 0,
            kem_remaining: 0,
        },
        ServerFrame::PreKeysLow {
            remaining: 20,
            kem_remaining: 3,
        },
        ServerFrame::MessagesExpired { count: 3 },
    ];
    for &code in ErrorCode::ALL {
        frames.push(ServerFrame::Response(Response {
            request_id: 0,
            result: Err(ErrorReply {
                code,
                message: code.name().into(),
                retry_after_ms: Some(5),
            }),
        }));
    }
    frames
}

#[test]
fn every_client_frame_round_trips() {
    for (i, request) in every_request().into_iter().enumerate() {
        let frame = ClientFrame {
            request_id: i as u64 + 1,
            request,
        };
        let bytes = frame.encode();
        assert_eq!(
            ClientFrame::decode(&bytes).unwrap(),
            frame,
            "{}",
            frame.request.name()
        );
    }
}

#[test]
fn every_server_frame_round_trips() {
    for frame in every_server_frame() {
        let bytes = frame.encode();
        assert_eq!(ServerFrame::decode(&bytes).unwrap(), frame);
    }
}

#[test]
fn error_codes_are_stable() {
    for (i, &code) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(code.as_u32(), i as u32 + 1);
        assert_eq!(ErrorCode::from_u32(code.as_u32()), Some(code));
    }
    assert_eq!(ErrorCode::from_u32(0), None);
    assert_eq!(ErrorCode::from_u32(1000), None);
}

#[test]
fn oversize_frames_are_refused() {
    let frame = ClientFrame {
        request_id: 1,
        request: Request::Submit(Submit::new(addr("bob", 1), vec![1; 1000], None).unwrap()),
    };
    let bytes = frame.encode();
    assert_eq!(
        ClientFrame::decode_with_limit(&bytes, 500),
        Err(FrameError::Oversize {
            len: bytes.len(),
            max: 500
        })
    );
    assert_eq!(
        ServerFrame::decode(&vec![0; MAX_SERVER_FRAME_LEN + 1]),
        Err(FrameError::Oversize {
            len: MAX_SERVER_FRAME_LEN + 1,
            max: MAX_SERVER_FRAME_LEN
        })
    );
}

#[test]
fn garbage_and_non_canonical_frames_are_refused() {
    assert_eq!(
        ClientFrame::decode(&[0xff, 0xff, 0xff]),
        Err(FrameError::Malformed)
    );
    assert_eq!(
        ServerFrame::decode(&[0x0a, 0x05, 0x01]),
        Err(FrameError::Malformed)
    );
    let good = ClientFrame {
        request_id: 1,
        request: Request::Ack(Ack::new(vec![1, 2]).unwrap()),
    }
    .encode();
    // An unknown field inside the request.
    let mut unknown_inner = good.clone();
    unknown_inner.extend_from_slice(&[0x08 | (40 << 3), 1]);
    assert!(ClientFrame::decode(&unknown_inner).is_err());
    // The same field written twice.
    let mut twice = good.clone();
    twice.extend_from_slice(&[0x08, 0x01]);
    assert_eq!(ClientFrame::decode(&twice), Err(FrameError::NonCanonical));
    // Unpacked repeated ids.
    let unpacked = [0x08, 0x01, 0x42, 0x04, 0x08, 0x01, 0x08, 0x02];
    assert_eq!(
        ClientFrame::decode(&unpacked),
        Err(FrameError::NonCanonical)
    );
    // A non-minimal varint for the request id.
    let mut long = vec![0x08, 0x81, 0x00];
    long.extend_from_slice(&good[2..]);
    assert_eq!(ClientFrame::decode(&long), Err(FrameError::NonCanonical));
    // The empty frame has no request id.
    assert_eq!(ClientFrame::decode(&[]), Err(FrameError::MissingRequestId));
    assert_eq!(
        ServerFrame::decode(&[]),
        Err(FrameError::missing(None, "kind"))
    );
}

#[test]
fn unknown_request_kinds_keep_their_request_id() {
    // request_id = 42, then field 30 (an unknown request kind), empty.
    let bytes = [0x08, 42, 0xf2, 0x01, 0x00];
    let error = ClientFrame::decode(&bytes).unwrap_err();
    assert_eq!(error, FrameError::UnknownRequest { request_id: 42 });
    assert_eq!(error.request_id(), Some(42));
    assert_eq!(error.code(), ErrorCode::UnknownRequest);
    // A frame with an id and no request at all.
    assert_eq!(
        ClientFrame::decode(&[0x08, 42]),
        Err(FrameError::missing(Some(42), "request"))
    );
}

fn raw(request: proto::client_frame::Request) -> Vec<u8> {
    proto::ClientFrame {
        request_id: 5,
        request: Some(request),
    }
    .encode_to_vec()
}

#[test]
fn invalid_fields_are_refused_with_the_request_id() {
    use proto::client_frame::Request as R;
    let submit = |user: &str, device: u32, envelope: Vec<u8>, token: Option<Vec<u8>>| {
        raw(R::Submit(proto::Submit {
            user_id: user.into(),
            device_id: device,
            envelope,
            delivery_token: token,
        }))
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (submit("", 1, vec![1], None), "user_id"),
        (submit(&"u".repeat(65), 1, vec![1], None), "user_id"),
        (submit("a\u{7}", 1, vec![1], None), "user_id"),
        (submit("bob", 0, vec![1], None), "device_id"),
        (submit("bob", 1, vec![], None), "envelope"),
        (
            submit("bob", 1, vec![1; MAX_ENVELOPE_LEN + 1], None),
            "envelope",
        ),
        (
            submit("bob", 1, vec![1], Some(vec![1; 15])),
            "delivery_token",
        ),
        (
            submit("bob", 1, vec![1], Some(vec![1; 65])),
            "delivery_token",
        ),
        (
            raw(R::Ack(proto::Ack {
                message_ids: vec![],
            })),
            "message_ids",
        ),
        (
            raw(R::Ack(proto::Ack {
                message_ids: vec![0],
            })),
            "message_ids",
        ),
        (
            raw(R::Ack(proto::Ack {
                message_ids: vec![3, 3],
            })),
            "message_ids",
        ),
        (
            raw(R::Ack(proto::Ack {
                message_ids: (1..=MAX_ACK_IDS as u64 + 1).collect(),
            })),
            "message_ids",
        ),
        (
            raw(R::Login(proto::Login {
                user_id: "bob".into(),
                device_id: 1,
                timestamp_ms: 1,
                signature: vec![1; 63],
            })),
            "signature",
        ),
        (
            raw(R::Register(proto::Register {
                user_id: "bob".into(),
                device_id: 1,
                identity_key: vec![2; 32], // not a point
                timestamp_ms: 1,
                signature: vec![1; 64],
                device_list: vec![1],
            })),
            "identity_key",
        ),
        (
            raw(R::Register(proto::Register {
                user_id: "bob".into(),
                device_id: 1,
                identity_key: identity(1).public_key().to_bytes().to_vec(),
                timestamp_ms: 1,
                signature: vec![1; 64],
                device_list: vec![],
            })),
            "device_list",
        ),
        (
            raw(R::Register(proto::Register {
                user_id: "bob".into(),
                device_id: 1,
                identity_key: identity(1).public_key().to_bytes().to_vec(),
                timestamp_ms: 1,
                signature: vec![1; 64],
                device_list: vec![1; MAX_DEVICE_LIST_LEN + 1],
            })),
            "device_list",
        ),
        (
            raw(R::PublishDeviceList(proto::PublishDeviceList {
                device_list: vec![],
            })),
            "device_list",
        ),
        (
            raw(R::PublishDeviceList(proto::PublishDeviceList {
                device_list: vec![1; MAX_DEVICE_LIST_LEN + 1],
            })),
            "device_list",
        ),
        (
            raw(R::FetchDeviceList(proto::FetchDeviceList {
                user_id: String::new(),
            })),
            "user_id",
        ),
        (
            raw(R::FetchDeviceList(proto::FetchDeviceList {
                user_id: "a\u{1}b".into(),
            })),
            "user_id",
        ),
        (
            raw(R::LinkPut(proto::LinkPut {
                slot: vec![1; 31],
                blob: vec![1],
            })),
            "slot",
        ),
        (
            raw(R::LinkPut(proto::LinkPut {
                slot: vec![],
                blob: vec![1],
            })),
            "slot",
        ),
        (
            raw(R::LinkPut(proto::LinkPut {
                slot: vec![1; 32],
                blob: vec![],
            })),
            "blob",
        ),
        (
            raw(R::LinkPut(proto::LinkPut {
                slot: vec![1; 32],
                blob: vec![1; MAX_LINK_BLOB_LEN + 1],
            })),
            "blob",
        ),
        (
            raw(R::LinkTake(proto::LinkTake { slot: vec![1; 33] })),
            "slot",
        ),
        (raw(R::LinkTake(proto::LinkTake { slot: vec![] })), "slot"),
        (
            raw(R::UploadPreKeys(proto::UploadPreKeys {
                signed_prekey: None,
                fallback_prekey: None,
                one_time_prekeys: vec![],
                kem_last_resort_prekey: None,
                one_time_kem_prekeys: vec![],
            })),
            "prekeys",
        ),
        (
            raw(R::UploadPreKeys(proto::UploadPreKeys {
                signed_prekey: None,
                fallback_prekey: None,
                one_time_prekeys: vec![
                    proto::PreKey {
                        id: 1,
                        key: vec![1; 32],
                    },
                    proto::PreKey {
                        id: 1,
                        key: vec![2; 32],
                    },
                ],
                ..proto::UploadPreKeys::default()
            })),
            "one_time_prekeys.id",
        ),
        (
            raw(R::UploadPreKeys(proto::UploadPreKeys {
                signed_prekey: None,
                fallback_prekey: None,
                one_time_prekeys: (0..=MAX_PREKEYS_PER_UPLOAD as u32)
                    .map(|id| proto::PreKey {
                        id,
                        key: vec![1; 32],
                    })
                    .collect(),
                ..proto::UploadPreKeys::default()
            })),
            "one_time_prekeys",
        ),
        (
            raw(R::FetchBundles(proto::FetchBundles {
                user_id: "bob".into(),
                device_id: Some(0),
            })),
            "device_id",
        ),
        (
            raw(R::SetDeliveryToken(proto::SetDeliveryToken {
                token: Some(vec![]),
            })),
            "token",
        ),
        (
            raw(R::SetPushEndpoint(proto::SetPushEndpoint {
                url: "x".repeat(MAX_PUSH_ENDPOINT_LEN + 1),
            })),
            "url",
        ),
    ];
    for (bytes, field) in cases {
        let error = ClientFrame::decode(&bytes).unwrap_err();
        assert_eq!(error.request_id(), Some(5), "{field}: {error:?}");
        assert_eq!(error.code(), ErrorCode::InvalidRequest, "{field}");
        match error {
            FrameError::MissingField { field: f, .. }
            | FrameError::InvalidField { field: f, .. } => {
                assert_eq!(f, field)
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn server_frames_with_bad_fields_are_refused() {
    let bad = [
        proto::server_frame::Kind::Push(proto::Push {
            message_id: 0,
            server_time_ms: 1,
            envelope: vec![1],
            envelope_kind: 0,
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::Error(proto::Error {
                code: 999,
                message: String::new(),
                retry_after_ms: None,
            })),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::Challenge(proto::Challenge {
                challenge: vec![1; 31],
                server_name: "relay".into(),
                server_time_ms: 1,
            })),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::Bundles(proto::Bundles {
                bundles: vec![proto::DeviceBundle {
                    device_id: 1,
                    bundle: vec![1, 2, 3],
                }],
                device_list: vec![1],
            })),
        }),
        // Bundles without the device list.
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::Bundles(proto::Bundles {
                bundles: vec![],
                device_list: vec![],
            })),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::DeviceList(proto::DeviceList {
                device_list: vec![],
            })),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::DeviceList(proto::DeviceList {
                device_list: vec![1; MAX_DEVICE_LIST_LEN + 1],
            })),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::DeviceListStored(
                proto::DeviceListStored { version: 0 },
            )),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::LinkBlob(proto::LinkBlob {
                blob: vec![],
            })),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: Some(proto::response::Outcome::LinkBlob(proto::LinkBlob {
                blob: vec![1; MAX_LINK_BLOB_LEN + 1],
            })),
        }),
        proto::server_frame::Kind::Response(proto::Response {
            request_id: 1,
            outcome: None,
        }),
    ];
    for kind in bad {
        let bytes = proto::ServerFrame { kind: Some(kind) }.encode_to_vec();
        assert!(ServerFrame::decode(&bytes).is_err());
    }
}

#[test]
fn login_signatures_bind_every_field() {
    let id = identity(7);
    let challenge = [9; 32];
    let login = Login::sign(&id, "relay.example", &challenge, 1234, addr("alice", 2));
    let key = id.public_key();
    let check = |name: &str, c: &[u8; 32], ts: u64, a: &Address| {
        key.verify(&login_transcript(name, c, ts, a), &login.signature)
            .is_ok()
    };
    assert!(check("relay.example", &challenge, 1234, &addr("alice", 2)));
    assert!(!check("relay.other", &challenge, 1234, &addr("alice", 2)));
    assert!(!check("relay.example", &[8; 32], 1234, &addr("alice", 2)));
    assert!(!check("relay.example", &challenge, 1235, &addr("alice", 2)));
    assert!(!check("relay.example", &challenge, 1234, &addr("alice", 3)));
    assert!(!check("relay.example", &challenge, 1234, &addr("alicf", 2)));
    // A login signature is not a registration signature.
    let reg = register_transcript("relay.example", &challenge, 1234, &addr("alice", 2), &key);
    assert!(key.verify(&reg, &login.signature).is_err());
}

#[test]
fn transcript_layout_is_fixed() {
    let t = login_transcript("ab", &[0xcc; 32], 0x0102, &addr("u", 3));
    let mut expected = b"tacit-relay-login-v1".to_vec();
    expected.extend_from_slice(&[2, b'a', b'b']);
    expected.extend_from_slice(&[0xcc; 32]);
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
    expected.extend_from_slice(&[1, b'u', 0, 0, 0, 3]);
    assert_eq!(t, expected);
}

#[test]
fn delivery_tokens_do_not_print() {
    let token = DeliveryToken::new(&[0xab; 20]).unwrap();
    assert!(!format!("{token:?}").contains("171"));
    assert!(!format!("{token:?}").to_lowercase().contains("ab"));
}

#[test]
fn into_encoded_matches_encode() {
    let frames = [
        ServerFrame::Push(Push {
            message_id: 7,
            server_time_ms: 1_700_000_000_000,
            envelope: vec![0xab; 600],
            kind: EnvelopeKind::Group,
        }),
        ServerFrame::QueueEmpty,
        ServerFrame::PreKeysLow {
            remaining: 3,
            kem_remaining: 1,
        },
    ];
    for frame in frames {
        let encoded = frame.encode();
        assert_eq!(frame.into_encoded(), encoded);
    }
}

#[test]
fn new_request_kinds_are_refused_when_not_canonical() {
    use proto::client_frame::Request as R;
    let requests = [
        R::PublishDeviceList(proto::PublishDeviceList {
            device_list: vec![1; 40],
        }),
        R::FetchDeviceList(proto::FetchDeviceList {
            user_id: "bob".into(),
        }),
        R::LinkPut(proto::LinkPut {
            slot: vec![1; 32],
            blob: vec![2; 10],
        }),
        R::LinkTake(proto::LinkTake { slot: vec![1; 32] }),
    ];
    for request in requests {
        let good = raw(request);
        assert!(ClientFrame::decode(&good).is_ok());
        // The request's first field written twice (the outer length grown
        // to match): not canonical.
        let mut inner = good[4..].to_vec();
        let first_field_end = 2 + usize::from(good[5]);
        inner.extend_from_slice(&good[4..4 + first_field_end]);
        let mut twice = good[..2].to_vec();
        twice.push(good[2]);
        twice.push(u8::try_from(inner.len()).unwrap());
        twice.extend_from_slice(&inner);
        assert_eq!(
            ClientFrame::decode(&twice),
            Err(FrameError::NonCanonical),
            "{good:?}"
        );
        // An unknown field inside the request.
        let mut unknown = good.clone();
        unknown[3] += 2;
        unknown.extend_from_slice(&[0x08 | (40 << 3), 1]);
        assert!(ClientFrame::decode(&unknown).is_err());
    }
}

#[test]
fn device_list_bytes_verify_with_the_core() {
    let id = identity(3);
    let signed = list("carol", 2, &id);
    let bytes = DeviceListBytes::from(&signed);
    assert_eq!(bytes.verify().unwrap(), signed);
    let mut tampered = bytes.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(DeviceListBytes::new(tampered).unwrap().verify().is_err());
    assert!(DeviceListBytes::new(vec![]).is_err());
    assert!(DeviceListBytes::new(vec![0; MAX_DEVICE_LIST_LEN + 1]).is_err());
    assert!(!format!("{bytes:?}").contains("carol"));
}

/// A raw KEM prekey entry with `key` as given.
fn raw_kem(id: u32, key: Vec<u8>, signature: Vec<u8>) -> proto::SignedPreKey {
    proto::SignedPreKey { id, key, signature }
}

#[test]
fn kem_prekey_uploads_with_bad_keys_are_refused_by_field() {
    use proto::client_frame::Request as R;
    let good = kem_prekey(&identity(1), 1, 1).key.to_encoded();
    let mut wrong_type = good.clone();
    wrong_type[0] = 0x05;
    // Every coefficient 0xFFF is at least q = 3329: the FIPS 203 check fails.
    let mut out_of_range = good.clone();
    out_of_range[1..1537].fill(0xFF);
    let sig = vec![7u8; 64];
    let one_time = |keys: Vec<proto::SignedPreKey>| {
        raw(R::UploadPreKeys(proto::UploadPreKeys {
            one_time_kem_prekeys: keys,
            ..proto::UploadPreKeys::default()
        }))
    };
    let last_resort = |key: proto::SignedPreKey| {
        raw(R::UploadPreKeys(proto::UploadPreKeys {
            kem_last_resort_prekey: Some(key),
            ..proto::UploadPreKeys::default()
        }))
    };
    let cases = [
        (
            one_time(vec![raw_kem(1, good[1..].to_vec(), sig.clone())]),
            "one_time_kem_prekeys.key",
        ),
        (
            one_time(vec![raw_kem(1, wrong_type.clone(), sig.clone())]),
            "one_time_kem_prekeys.key",
        ),
        (
            one_time(vec![raw_kem(1, out_of_range.clone(), sig.clone())]),
            "one_time_kem_prekeys.key",
        ),
        (
            one_time(vec![raw_kem(1, vec![], sig.clone())]),
            "one_time_kem_prekeys.key",
        ),
        (
            one_time(vec![raw_kem(1, good.clone(), vec![7; 63])]),
            "one_time_kem_prekeys.signature",
        ),
        (
            one_time(vec![
                raw_kem(1, good.clone(), sig.clone()),
                raw_kem(1, good.clone(), sig.clone()),
            ]),
            "one_time_kem_prekeys.id",
        ),
        (
            raw(R::UploadPreKeys(proto::UploadPreKeys {
                kem_last_resort_prekey: Some(raw_kem(4, good.clone(), sig.clone())),
                one_time_kem_prekeys: vec![raw_kem(4, good.clone(), sig.clone())],
                ..proto::UploadPreKeys::default()
            })),
            "one_time_kem_prekeys.id",
        ),
        (
            one_time(
                (0..=MAX_KEM_PREKEYS_PER_UPLOAD as u32)
                    .map(|id| raw_kem(id, good.clone(), sig.clone()))
                    .collect(),
            ),
            "one_time_kem_prekeys",
        ),
        (
            last_resort(raw_kem(1, out_of_range, sig.clone())),
            "kem_last_resort_prekey.key",
        ),
        (
            last_resort(raw_kem(1, wrong_type, sig.clone())),
            "kem_last_resort_prekey.key",
        ),
        (
            last_resort(raw_kem(1, good, vec![])),
            "kem_last_resort_prekey.signature",
        ),
    ];
    for (bytes, field) in cases {
        let error = ClientFrame::decode(&bytes).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidRequest, "{field}");
        match error {
            FrameError::MissingField { field: f, .. }
            | FrameError::InvalidField { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

/// The largest upload the client sends (every kind of key, full batches)
/// fits in a client frame; the sizes are printed for the documentation.
#[test]
fn a_full_upload_fits_in_a_client_frame() {
    let id = identity(1);
    let spk = KeyPair::from_private_bytes([2; 32]).public_key();
    let kem = kem_prekey(&id, 1, 1);
    let full = UploadPreKeys {
        signed_prekey: Some(SignedPreKey {
            id: u32::MAX,
            key: spk,
            signature: id.sign_prekey(&spk),
        }),
        fallback_prekey: Some(OneTimePreKey {
            id: u32::MAX - 1,
            key: spk,
        }),
        one_time_prekeys: (0..MAX_PREKEYS_PER_UPLOAD as u32)
            .map(|i| OneTimePreKey {
                id: u32::MAX - 2 - i,
                key: spk,
            })
            .collect(),
        kem_last_resort_prekey: Some(SignedKemPreKey {
            id: u32::MAX,
            ..kem.clone()
        }),
        one_time_kem_prekeys: (0..MAX_KEM_PREKEYS_PER_UPLOAD as u32)
            .map(|i| SignedKemPreKey {
                id: u32::MAX - 1 - i,
                ..kem.clone()
            })
            .collect(),
    };
    let frame = ClientFrame {
        request_id: u64::MAX,
        request: Request::UploadPreKeys(full),
    };
    let bytes = frame.encode();
    println!("full upload frame: {} bytes", bytes.len());
    assert!(bytes.len() <= MAX_CLIENT_FRAME_LEN, "{}", bytes.len());
    assert_eq!(ClientFrame::decode(&bytes).unwrap(), frame);
    // It fits a frame sized for a sealed envelope (the limit before group
    // submissions), and would not fit it twice over: the bound is what
    // keeps the frame under the limit.
    assert!(bytes.len() <= MAX_ENVELOPE_LEN + 1024, "{}", bytes.len());
    assert!(bytes.len() * 2 > MAX_ENVELOPE_LEN + 1024);
}

#[test]
fn a_content_carries_a_token_of_the_lengths_the_relay_takes() {
    use tacit::envelope::{content, Content, ContentKind};
    assert_eq!(content::MIN_DELIVERY_TOKEN_LEN, MIN_DELIVERY_TOKEN_LEN);
    assert_eq!(content::MAX_DELIVERY_TOKEN_LEN, MAX_DELIVERY_TOKEN_LEN);
    let text = Content::from_parts(ContentKind::Text, b"hi".to_vec(), 7, [3; 16], None).unwrap();
    let token = DeliveryToken::new(&[9; 32]).unwrap();
    let with = text.with_delivery_token(token.as_bytes()).unwrap();
    let back = Content::from_bytes(&with.to_bytes()).unwrap();
    assert_eq!(DeliveryToken::carried_by(&back), Some(token));
    assert_eq!(DeliveryToken::carried_by(&text), None);
}
