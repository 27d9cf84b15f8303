//! `SubmitGroup`: its bounds, and the group envelope the relay composes.

use tacit::group::multi::{self, GroupEnvelope};
use tacit::rand_core::OsRng;

use super::*;

fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

fn recipients(n: usize) -> Vec<(Address, IdentityKey)> {
    (0..n)
        .map(|i| {
            (
                Address::new(&format!("member-{i}"), 1).unwrap(),
                identity(u8::try_from(i % 200).unwrap() + 1).public_key(),
            )
        })
        .collect()
}

fn sealed(n: usize, len: usize) -> multi::MultiSealed {
    multi::seal(&vec![0x5a; len], &recipients(n), &mut OsRng).unwrap()
}

fn submit(sealed: &multi::MultiSealed) -> SubmitGroup {
    SubmitGroup::from_sealed(sealed, |_| None).unwrap()
}

fn frame(request: Request) -> ClientFrame {
    ClientFrame {
        request_id: 5,
        request,
    }
}

#[test]
fn the_composed_envelope_is_the_cores_encoding_and_opens() {
    for len in [0, 1, 100, 200, 20_000, multi::MAX_PLAINTEXT_LEN] {
        let sealed = sealed(3, len);
        let submit = submit(&sealed);
        for (i, part) in sealed.parts.iter().enumerate() {
            let composed = submit.shared().envelope_for(&part.wrapped_key);
            assert_eq!(composed.len(), submit.shared().envelope_len());
            assert_eq!(
                composed,
                sealed.shared.envelope_for(&part.wrapped_key).to_bytes(),
                "length {len}"
            );
            assert!(composed.len() <= MAX_ENVELOPE_LEN);
            GroupEnvelope::from_bytes(&composed).unwrap();
            let opened = multi::open(
                &identity(u8::try_from(i).unwrap() + 1),
                &part.address,
                &composed,
            )
            .unwrap();
            assert_eq!(opened, vec![0x5a; len]);
        }
    }
}

#[test]
fn a_submission_round_trips_and_the_largest_fits_a_frame() {
    let small = submit(&sealed(3, 10));
    let f = frame(Request::SubmitGroup(small));
    assert_eq!(ClientFrame::decode(&f.encode()).unwrap(), f);

    // The most recipients, with the longest user ids and tokens, and the
    // largest shared payload the fan-out bound allows for them.
    let shared = SharedPayloadBytes::new(sealed(1, 64 * 1024).shared.to_bytes()).unwrap();
    let token = DeliveryToken::new(&[7; MAX_DELIVERY_TOKEN_LEN]).unwrap();
    let long: Vec<GroupRecipient> = (0..MAX_GROUP_RECIPIENTS)
        .map(|i| GroupRecipient {
            recipient: Address::new(&format!("{i:0>64}"), u32::MAX).unwrap(),
            wrapped_key: [9; WRAPPED_KEY_LEN],
            delivery_token: Some(token.clone()),
        })
        .collect();
    let f = frame(Request::SubmitGroup(
        SubmitGroup::new(shared, long.clone()).unwrap(),
    ));
    let bytes = f.encode();
    assert!(bytes.len() <= MAX_CLIENT_FRAME_LEN, "{}", bytes.len());
    assert_eq!(ClientFrame::decode(&bytes).unwrap(), f);
    // The recipients alone take at most their share of the frame limit.
    let recipients_only = bytes.len() - 64 * 1024;
    assert!(recipients_only <= MAX_GROUP_RECIPIENTS * MAX_GROUP_RECIPIENT_FRAME_LEN);
}

#[test]
fn bad_submissions_are_refused_with_the_field() {
    let sealed = sealed(2, 10);
    let good = submit(&sealed);
    let shared = good.shared().clone();
    let one = good.recipients()[0].clone();

    // Constructors.
    assert_eq!(
        SubmitGroup::new(shared.clone(), vec![]),
        Err(FrameError::missing(None, "recipients"))
    );
    let many: Vec<GroupRecipient> = (0..=MAX_GROUP_RECIPIENTS)
        .map(|i| GroupRecipient {
            recipient: Address::new(&format!("u{i}"), 1).unwrap(),
            ..one.clone()
        })
        .collect();
    assert_eq!(
        SubmitGroup::new(shared.clone(), many.clone()),
        Err(FrameError::invalid(None, "recipients"))
    );
    assert_eq!(
        SubmitGroup::new(shared.clone(), vec![one.clone(), one.clone()]),
        Err(FrameError::invalid(None, "recipients.duplicate"))
    );
    // A large payload to many recipients exceeds the fan-out bound.
    let big = SharedPayloadBytes::new(vec_shared(200 * 1024)).unwrap();
    assert_eq!(
        SubmitGroup::new(big.clone(), many[..400].to_vec()),
        Err(FrameError::invalid(None, "shared"))
    );
    assert!(SubmitGroup::new(big, many[..300].to_vec()).is_ok());

    // The same refusals when decoding frames built around the checks.
    let encode = |shared: Vec<u8>, recipients: Vec<proto::GroupRecipient>| {
        use prost::Message as _;
        proto::ClientFrame {
            request_id: 5,
            request: Some(proto::client_frame::Request::SubmitGroup(
                proto::SubmitGroup { shared, recipients },
            )),
        }
        .encode_to_vec()
    };
    let r = |user: &str, device: u32, key: Vec<u8>, token: Option<Vec<u8>>| proto::GroupRecipient {
        user_id: user.into(),
        device_id: device,
        wrapped_key: key,
        delivery_token: token,
    };
    let s = shared.as_bytes().to_vec();
    let k = vec![1u8; 32];
    let cases: Vec<(&str, Vec<u8>, FrameError)> = vec![
        (
            "no recipients",
            encode(s.clone(), vec![]),
            FrameError::missing(Some(5), "recipients"),
        ),
        (
            "too many",
            encode(
                s.clone(),
                (0..=MAX_GROUP_RECIPIENTS)
                    .map(|i| r(&format!("u{i}"), 1, k.clone(), None))
                    .collect(),
            ),
            FrameError::invalid(Some(5), "recipients"),
        ),
        (
            "duplicate",
            encode(
                s.clone(),
                vec![r("a", 1, k.clone(), None), r("a", 1, k.clone(), None)],
            ),
            FrameError::invalid(Some(5), "recipients.duplicate"),
        ),
        (
            "device 0",
            encode(s.clone(), vec![r("a", 0, k.clone(), None)]),
            FrameError::invalid(Some(5), "device_id"),
        ),
        (
            "short part",
            encode(s.clone(), vec![r("a", 1, vec![1; 31], None)]),
            FrameError::invalid(Some(5), "wrapped_key"),
        ),
        (
            "no part",
            encode(s.clone(), vec![r("a", 1, vec![], None)]),
            FrameError::missing(Some(5), "wrapped_key"),
        ),
        (
            "short token",
            encode(s.clone(), vec![r("a", 1, k.clone(), Some(vec![1; 15]))]),
            FrameError::invalid(Some(5), "delivery_token"),
        ),
        (
            "no shared payload",
            encode(vec![], vec![r("a", 1, k.clone(), None)]),
            FrameError::missing(Some(5), "shared"),
        ),
        (
            "oversize shared payload",
            encode(
                vec_shared(MAX_SHARED_PAYLOAD_LEN - 39),
                vec![r("a", 1, k.clone(), None)],
            ),
            FrameError::invalid(Some(5), "shared"),
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(ClientFrame::decode(&bytes), Err(expected), "{name}");
    }
    // The largest shared payload is accepted.
    assert_eq!(
        vec_shared(MAX_SHARED_PAYLOAD_LEN - 40).len(),
        MAX_SHARED_PAYLOAD_LEN
    );
    SharedPayloadBytes::new(vec_shared(MAX_SHARED_PAYLOAD_LEN - 40)).unwrap();
}

/// A shared payload of the right layout with a payload of `n` bytes.
fn vec_shared(n: usize) -> Vec<u8> {
    let mut out = vec![0x08, 0x01, 0x12, 0x20];
    out.extend_from_slice(&[3; 32]);
    out.push(0x1a);
    let mut len = n;
    loop {
        let byte = u8::try_from(len & 0x7f).unwrap();
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.resize(out.len() + n, 0xcc);
    out
}

#[test]
fn shared_payloads_of_another_layout_are_refused() {
    let good = vec_shared(20);
    assert!(SharedPayloadBytes::new(good.clone()).is_ok());
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("payload shorter than a tag", vec_shared(15)),
        ("trailing byte", [good.as_slice(), &[0]].concat()),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("head only", good[..36].to_vec()),
        ("short", good[..10].to_vec()),
    ];
    let mut version_2 = good.clone();
    version_2[1] = 2;
    cases.push(("version 2", version_2));
    let mut short_key = good.clone();
    short_key[3] = 0x1f;
    cases.push(("31-byte key", short_key));
    let mut wrong_tag = good.clone();
    wrong_tag[36] = 0x22;
    cases.push(("payload as field 4", wrong_tag));
    // A non-minimal length: 20 as two varint bytes.
    let mut long_len = good[..37].to_vec();
    long_len.extend_from_slice(&[0x94, 0x00]);
    long_len.extend_from_slice(&good[38..]);
    cases.push(("non-minimal length", long_len));
    for (name, bytes) in cases {
        assert_eq!(
            SharedPayloadBytes::new(bytes),
            Err(FrameError::invalid(None, "shared")),
            "{name}"
        );
    }
}

#[test]
fn pushes_carry_the_envelope_kind() {
    use prost::Message as _;
    let push = |kind: u32| {
        proto::ServerFrame {
            kind: Some(proto::server_frame::Kind::Push(proto::Push {
                message_id: 1,
                server_time_ms: 2,
                envelope: vec![3],
                envelope_kind: kind,
            })),
        }
        .encode_to_vec()
    };
    let kind = |bytes: &[u8]| match ServerFrame::decode(bytes) {
        Ok(ServerFrame::Push(p)) => Ok(p.kind),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(kind(&push(0)), Ok(EnvelopeKind::Sealed));
    assert_eq!(kind(&push(1)), Ok(EnvelopeKind::Group));
    assert_eq!(
        kind(&push(2)),
        Err(FrameError::invalid(None, "envelope_kind"))
    );
    // Version-1 pushes (no field 4) are sealed envelopes.
    let old = proto::ServerFrame {
        kind: Some(proto::server_frame::Kind::Push(proto::Push {
            message_id: 1,
            server_time_ms: 2,
            envelope: vec![3],
            envelope_kind: 0,
        })),
    }
    .encode_to_vec();
    assert!(!old.windows(2).any(|w| w == [0x20, 0x00]));
    assert_eq!(kind(&old), Ok(EnvelopeKind::Sealed));
}
