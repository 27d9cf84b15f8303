//! The whole path through the core, two users with two devices each:
//! content, padding, sessions, sealed envelopes, and back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{lists_of, trust};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{Content, ContentKind};
use tacit::session::BundlePreKey;
use tacit::{Address, EnvelopeError, SessionError};

use tacit_testkit::{device, Device};

/// Every device trusts the lists of every user of `devices` (version 1,
/// each listing that user's devices here).
fn trust_all(devices: &mut [&mut Device]) {
    let keys: Vec<(Address, tacit::keys::IdentityKey)> = devices
        .iter()
        .map(|d| {
            (
                d.local_address().clone(),
                d.account().identity().public_key(),
            )
        })
        .collect();
    let refs: Vec<_> = keys.iter().map(|(a, k)| (a, *k)).collect();
    let lists = lists_of(1, &refs);
    for d in devices.iter_mut() {
        trust(d, &lists);
    }
}

/// Every device learns the bundle of every other device it talks to.
fn introduce(from: &mut Device, to: &Device, rng: &mut ChaCha20Rng) {
    let bundle = to.account().bundle(BundlePreKey::Auto).unwrap();
    from.process_bundle(to.local_address(), &bundle, rng)
        .unwrap();
}

fn contains_window(haystack: &[u8], needle: &[u8], window: usize) -> bool {
    needle
        .windows(window.min(needle.len()))
        .any(|w| haystack.windows(w.len()).any(|h| h == w))
}

#[test]
fn fan_out_reaches_every_device_and_reveals_nothing() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut alice1 = device("alice", 1, &mut rng);
    let mut alice2 = device("alice", 2, &mut rng);
    let mut bob1 = device("bob", 1, &mut rng);
    let mut bob2 = device("bob", 2, &mut rng);
    trust_all(&mut [&mut alice1, &mut alice2, &mut bob1, &mut bob2]);
    for to in [&bob1, &bob2, &alice2] {
        introduce(&mut alice1, to, &mut rng);
    }

    let body = b"meet at the north gate at noon".to_vec();
    let content =
        Content::new(ContentKind::Text, body.clone(), 1_765_432_100_123, &mut rng).unwrap();
    let outgoing = alice1.seal_for_user("bob", &content, &mut rng).unwrap();
    let recipients: Vec<String> = outgoing.iter().map(|o| o.recipient.to_string()).collect();
    assert_eq!(recipients, ["alice.2", "bob.1", "bob.2"]);

    let identity = alice1.account().identity().public_key();
    let secrets: [&[u8]; 5] = [
        &body,
        &identity.to_bytes(),
        &identity.to_x25519().to_bytes(),
        &content.timestamp().to_be_bytes(),
        content.message_id(),
    ];
    for o in &outgoing {
        for secret in secrets {
            assert!(
                !contains_window(&o.envelope, secret, 8),
                "a secret leaks into an envelope"
            );
        }
        assert!(!contains_window(&o.envelope, b"alice", 5));
    }
    // All three envelopes have the same size: the recipient cannot be told
    // apart by length, nor first contact from later messages (below).
    assert!(outgoing
        .iter()
        .all(|o| o.envelope.len() == outgoing[0].envelope.len()));

    for (o, receiver) in outgoing.iter().zip([&mut alice2, &mut bob1, &mut bob2]) {
        let received = receiver.open_envelope(&o.envelope, &mut rng).unwrap();
        assert_eq!(received.sender, *alice1.local_address());
        assert_eq!(received.sender_identity, identity);
        assert_eq!(received.content, content);
        assert!(received.first_contact && received.new_session);
    }

    // Bob's first device answers on the same session with a receipt.
    let receipt = Content::new(
        ContentKind::DeliveryReceipt,
        content.message_id().to_vec(),
        1,
        &mut rng,
    )
    .unwrap();
    let reply = bob1
        .seal_for_device(alice1.local_address(), &receipt, &mut rng)
        .unwrap();
    let received = alice1.open_envelope(&reply.envelope, &mut rng).unwrap();
    assert_eq!(received.content.kind(), ContentKind::DeliveryReceipt);
    assert!(!received.new_session);

    // A later message is a ratchet message. The first was a `tacit-v2`
    // prekey message, whose envelope is exactly KEM_INNER_RESERVE longer
    // (its KEM ciphertext; docs/PROTOCOL.md 15.10): the relay can tell the
    // first messages of a post-quantum session, and nothing else.
    let later = alice1
        .seal_for_device(bob1.local_address(), &content, &mut rng)
        .unwrap();
    assert_eq!(
        later.envelope.len() + tacit::envelope::sealed::KEM_INNER_RESERVE,
        outgoing[0].envelope.len()
    );
    assert_eq!(
        bob1.open_envelope(&later.envelope, &mut rng)
            .unwrap()
            .content,
        content
    );
}

#[test]
fn failures_leave_every_store_unchanged() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 1, &mut rng);
    let mut carol = device("carol", 1, &mut rng);
    trust_all(&mut [&mut alice, &mut bob, &mut carol]);
    introduce(&mut alice, &bob, &mut rng);
    introduce(&mut alice, &carol, &mut rng);
    let content = Content::new(ContentKind::Text, b"hi".to_vec(), 5, &mut rng).unwrap();
    let to_bob = alice
        .seal_for_device(bob.local_address(), &content, &mut rng)
        .unwrap();
    let to_carol = alice
        .seal_for_device(carol.local_address(), &content, &mut rng)
        .unwrap();

    let before = bob.store().dump();
    // Every single-bit flip of the envelope is refused, and changes nothing.
    for i in (0..to_bob.envelope.len()).step_by(7) {
        let mut tampered = to_bob.envelope.clone();
        tampered[i] ^= 0x10;
        assert!(bob.open_envelope(&tampered, &mut rng).is_err(), "byte {i}");
    }
    // An envelope for another device does not open here.
    assert!(matches!(
        bob.open_envelope(&to_carol.envelope, &mut rng),
        Err(SessionError::Envelope(EnvelopeError::SenderDoesNotOpen))
    ));
    assert!(bob.open_envelope(&[], &mut rng).is_err());
    assert_eq!(bob.store().dump(), before);

    // The genuine envelope still opens, once.
    assert_eq!(
        bob.open_envelope(&to_bob.envelope, &mut rng)
            .unwrap()
            .content,
        content
    );
    let after = bob.store().dump();
    assert!(
        bob.open_envelope(&to_bob.envelope, &mut rng).is_err(),
        "replay"
    );
    assert_eq!(bob.store().dump(), after);
    assert_eq!(
        carol
            .open_envelope(&to_carol.envelope, &mut rng)
            .unwrap()
            .content,
        content
    );
}

#[test]
fn sealing_to_a_user_without_known_devices_sends_nothing() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 1, &mut rng);
    let content = Content::new(ContentKind::Typing, vec![1], 0, &mut rng).unwrap();
    // Not on its own list yet: no certificate to send with.
    assert!(matches!(
        alice.seal_for_user("bob", &content, &mut rng),
        Err(SessionError::NotOnOwnList)
    ));
    trust_all(&mut [&mut alice, &mut bob]);
    let before = alice.store().dump();
    // A user with no known list: nothing is sent, the caller fetches it.
    match alice.seal_for_user("nobody", &content, &mut rng) {
        Err(SessionError::UnknownUser(u)) => {
            assert_eq!((u.user_id.as_str(), u.user_key), ("nobody", None));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        alice.seal_for_device(&Address::new("nobody", 1).unwrap(), &content, &mut rng),
        Err(SessionError::NoSession(_))
    ));
    // A listed device without a session: nothing is sent until its bundle
    // is processed.
    assert_eq!(
        alice.missing_sessions("bob").unwrap(),
        [bob.local_address().clone()]
    );
    assert!(matches!(
        alice.seal_for_user("bob", &content, &mut rng),
        Err(SessionError::NoSession(a)) if a == *bob.local_address()
    ));
    assert_eq!(alice.store().dump(), before);
    introduce(&mut alice, &bob, &mut rng);
    assert!(alice.missing_sessions("bob").unwrap().is_empty());
    assert_eq!(
        alice
            .seal_for_user("bob", &content, &mut rng)
            .unwrap()
            .len(),
        1
    );
}

/// The encoding of a content of kind `kind` (a code this build may not
/// know) followed by `extra` (encoded fields numbered 7 and above).
fn content_bytes(kind: u32, body: &[u8], extra: &[u8]) -> Vec<u8> {
    let base = Content::from_parts(ContentKind::Text, body.to_vec(), 9, [7; 16], None).unwrap();
    let mut bytes = base.to_bytes();
    // Field 2 (kind) is the second field: tag 0x10 at offset 2, then a varint.
    assert_eq!(bytes[2..4], [0x10, 0x01]);
    let mut kind_varint = Vec::new();
    let mut k = kind;
    while k >= 0x80 {
        kind_varint.push((k as u8 & 0x7f) | 0x80);
        k >>= 7;
    }
    kind_varint.push(k as u8);
    bytes.splice(3..4, kind_varint);
    bytes.extend_from_slice(extra);
    bytes
}

#[test]
fn a_kind_this_build_does_not_know_is_delivered_as_unknown() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 1, &mut rng);
    trust_all(&mut [&mut alice, &mut bob]);
    introduce(&mut alice, &bob, &mut rng);
    let text = |body: &[u8], rng: &mut ChaCha20Rng| {
        Content::new(ContentKind::Text, body.to_vec(), 1, rng).unwrap()
    };
    // A later version's message: kind 7, with a field 9 (varint 1) and a
    // field 10 (bytes "x") this build does not know either.
    let later_bytes = content_bytes(7, b"sticker", &[0x48, 0x01, 0x52, 0x01, b'x']);
    let later = Content::from_bytes(&later_bytes).expect("an unknown kind decodes");
    assert_eq!(later.kind(), ContentKind::Unknown(7));
    assert_eq!(later.to_bytes(), later_bytes, "kept byte for byte");

    let first = alice
        .seal_for_device(bob.local_address(), &text(b"one", &mut rng), &mut rng)
        .unwrap();
    let second = alice
        .seal_for_device(bob.local_address(), &later, &mut rng)
        .unwrap();
    let third = alice
        .seal_for_device(bob.local_address(), &text(b"three", &mut rng), &mut rng)
        .unwrap();

    assert_eq!(
        bob.open_envelope(&first.envelope, &mut rng)
            .unwrap()
            .content
            .body(),
        b"one"
    );
    let received = bob.open_envelope(&second.envelope, &mut rng).unwrap();
    assert_eq!(received.sender, *alice.local_address());
    assert_eq!(received.content.kind(), ContentKind::Unknown(7));
    assert_eq!(received.content.kind().code(), 7);
    assert_eq!(received.content.body(), b"sticker");
    assert_eq!(
        received.content.unknown_fields(),
        &[0x48, 0x01, 0x52, 0x01, b'x']
    );
    assert_eq!(received.content.to_bytes(), later_bytes);
    // The ratchet advanced past it, once: a replay is a duplicate...
    let before = bob.store().dump();
    assert!(matches!(
        bob.open_envelope(&second.envelope, &mut rng),
        Err(SessionError::Decrypt(tacit::DecryptError::DuplicateMessage))
    ));
    assert_eq!(bob.store().dump(), before);
    // ...and the next message decrypts.
    assert_eq!(
        bob.open_envelope(&third.envelope, &mut rng)
            .unwrap()
            .content
            .body(),
        b"three"
    );
}
