//! The envelope layer end to end: contents, padding through the ratchet,
//! attachments, and sealed sender with every way it refuses an envelope.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use tacit::envelope::attachment::{
    decrypt_attachment, encrypt_attachment, encrypted_len, CHUNK_LEN, CHUNK_TAG_LEN,
    NONCE_PREFIX_LEN,
};
use tacit::envelope::padding::{self, padded_len};
use tacit::envelope::sealed::{self, MAX_ENVELOPE_LEN};
use tacit::envelope::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentPointer, Content, ContentKind,
    SealedEnvelope, MAX_BODY_LEN,
};
use tacit::identity::{DeviceCertificate, UserKeyPair};
use tacit::keys::{IdentityKeyPair, KeyPair, SecretKey32};
use tacit::ratchet::{Ratchet, RatchetConfig};
use tacit::wire::{PreKeyMessage, SessionMessage, WireMessage};
use tacit::x3dh;
use tacit::PreKeyBundle;
use tacit::{Address, AttachmentError, ContentError, EnvelopeError, PaddingError, WireError};

const TIMESTAMP: u64 = 1_767_225_600_123;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// Seals `message` from `identity` at `address`, with `user`'s certificate
/// of that device.
fn seal_from(
    user: &UserKeyPair,
    identity: &IdentityKeyPair,
    address: &Address,
    recipient_identity: &tacit::keys::IdentityKey,
    recipient_address: &Address,
    message: &SessionMessage,
    rng: &mut ChaCha20Rng,
) -> Vec<u8> {
    let certificate = DeviceCertificate::issue(user, address, &identity.public_key());
    let sender = sealed::Sender {
        identity,
        address,
        user_key: &user.public_key(),
        certificate: &certificate,
    };
    sealed::seal(&sender, recipient_identity, recipient_address, message, rng).unwrap()
}

/// Alice and Bob with a session: Alice's first message is a prekey message.
struct World {
    alice: IdentityKeyPair,
    alice_address: Address,
    bob: IdentityKeyPair,
    bob_address: Address,
    alice_session: Ratchet,
    bob_signed_prekey: KeyPair,
    ephemeral: tacit::PublicKey,
    agreement_for_bob: Option<x3dh::Agreement>,
    rng: ChaCha20Rng,
}

impl World {
    fn new(seed: u8) -> Self {
        let mut rng = rng(seed);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let bob_signed_prekey = KeyPair::generate(&mut rng);
        let bundle = PreKeyBundle {
            identity_key: bob.public_key(),
            signed_prekey: bob_signed_prekey.public_key(),
            signed_prekey_signature: bob.sign_prekey(&bob_signed_prekey.public_key()),
            one_time_prekey: None,
            kem_prekey: None,
        };
        let init = x3dh::initiate(&alice, &bundle, &mut rng).unwrap();
        let alice_session = Ratchet::new_initiator(
            init.agreement.session_keys(),
            &bundle.signed_prekey,
            RatchetConfig::default(),
            &mut rng,
        )
        .unwrap();
        let agreement = x3dh::respond(
            &bob,
            &bob_signed_prekey,
            None,
            &alice.public_key(),
            &init.ephemeral_key,
        )
        .unwrap();
        Self {
            alice,
            alice_address: Address::new("alice", 1).unwrap(),
            bob,
            bob_address: Address::new("bob", 2).unwrap(),
            alice_session,
            bob_signed_prekey,
            ephemeral: init.ephemeral_key,
            agreement_for_bob: Some(agreement),
            rng,
        }
    }

    fn bob_session(&mut self) -> Ratchet {
        Ratchet::new_responder(
            self.agreement_for_bob.take().unwrap().session_keys(),
            self.bob_signed_prekey.clone(),
            RatchetConfig::default(),
        )
    }

    /// Encrypts a content as a ratchet message (or a prekey message).
    fn message(&mut self, content: &Content, prekey: bool) -> SessionMessage {
        let encrypted = self
            .alice_session
            .encrypt(&content.to_padded().unwrap(), &mut self.rng)
            .unwrap();
        if prekey {
            SessionMessage::PreKey(Box::new(PreKeyMessage {
                identity_key: self.alice.public_key(),
                ephemeral_key: self.ephemeral,
                signed_prekey_id: 1,
                one_time_prekey_id: None,
                message: encrypted,
                kem: None,
            }))
        } else {
            SessionMessage::Ratchet(encrypted)
        }
    }

    fn seal(&mut self, message: &SessionMessage) -> Vec<u8> {
        seal_from(
            &common::user_key("alice"),
            &self.alice,
            &self.alice_address,
            &self.bob.public_key(),
            &self.bob_address,
            message,
            &mut self.rng,
        )
    }

    fn open(&self, envelope: &[u8]) -> Result<tacit::envelope::Unsealed, EnvelopeError> {
        sealed::open(&self.bob, &self.bob_address, envelope)
    }

    fn text(&mut self, body: &[u8]) -> Content {
        Content::new(ContentKind::Text, body.to_vec(), TIMESTAMP, &mut self.rng).unwrap()
    }
}

fn pointer() -> AttachmentPointer {
    AttachmentPointer::new(
        b"attachment-0001",
        SecretKey32::from_bytes([0x42; 32]),
        [0x17; 32],
        123_456,
        "image/png",
    )
    .unwrap()
}

// ---------------------------------------------------------------- content

#[test]
fn every_content_kind_round_trips_through_padding() {
    let mut rng = rng(1);
    for kind in ContentKind::ALL {
        let content = if kind == ContentKind::AttachmentPointer {
            Content::attachment_pointer(pointer(), b"a caption".to_vec(), TIMESTAMP, &mut rng)
        } else {
            Content::new(kind, b"body bytes".to_vec(), TIMESTAMP, &mut rng)
        }
        .unwrap();
        let padded = content.to_padded().unwrap();
        assert_eq!(padded.len() % padding::PADDING_BLOCK, 0);
        let back = Content::from_padded(&padded).unwrap();
        assert_eq!(back, content);
        assert_eq!(back.kind(), kind);
        assert_eq!(Content::from_bytes(&content.to_bytes()).unwrap(), content);
        assert_eq!(ContentKind::from_code(kind.code()), Ok(kind));
    }
    let empty = Content::from_parts(ContentKind::Typing, Vec::new(), 0, [0; 16], None).unwrap();
    assert_eq!(Content::from_padded(&empty.to_padded().unwrap()), Ok(empty));
    let largest = Content::from_parts(
        ContentKind::Text,
        vec![0xee; MAX_BODY_LEN],
        u64::MAX,
        [0xff; 16],
        None,
    )
    .unwrap();
    let padded = largest.to_padded().unwrap();
    assert!(padded.len() <= padding::MAX_PADDED_LEN);
    assert_eq!(Content::from_padded(&padded), Ok(largest));
}

#[test]
fn message_ids_are_random_and_drawn_in_one_16_byte_call() {
    let a = Content::new(
        ContentKind::Text,
        b"x".to_vec(),
        TIMESTAMP,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let b = Content::new(
        ContentKind::Text,
        b"x".to_vec(),
        TIMESTAMP,
        &mut rand_core::OsRng,
    )
    .unwrap();
    assert_ne!(a.message_id(), b.message_id());
    let mut expected = [0u8; 16];
    rng(5).fill_bytes(&mut expected);
    let c = Content::new(ContentKind::Text, Vec::new(), 1, &mut rng(5)).unwrap();
    assert_eq!(c.message_id(), &expected);
}

#[test]
fn contents_are_checked_when_built() {
    assert_eq!(
        Content::from_parts(ContentKind::AttachmentPointer, Vec::new(), 1, [1; 16], None),
        Err(ContentError::AttachmentMismatch)
    );
    assert_eq!(
        Content::from_parts(ContentKind::Text, Vec::new(), 1, [1; 16], Some(pointer())),
        Err(ContentError::AttachmentMismatch)
    );
    assert_eq!(
        Content::from_parts(
            ContentKind::Text,
            vec![0; MAX_BODY_LEN + 1],
            1,
            [1; 16],
            None
        ),
        Err(ContentError::BodyTooLong(MAX_BODY_LEN + 1))
    );
    let key = || SecretKey32::from_bytes([1; 32]);
    for (id, size, content_type, field) in [
        (&b""[..], 1, "a/b", "id"),
        (&[0u8; 65][..], 1, "a/b", "id"),
        (
            &b"id"[..],
            tacit::envelope::MAX_ATTACHMENT_LEN + 1,
            "a/b",
            "size",
        ),
        (&b"id"[..], 1, "a\nb", "content_type"),
        (&b"id"[..], 1, &"t".repeat(129), "content_type"),
    ] {
        assert_eq!(
            AttachmentPointer::new(id, key(), [0; 32], size, content_type),
            Err(ContentError::InvalidAttachmentPointer(field))
        );
    }
}

/// A hand-encoded content: version, kind, timestamp, message id, body,
/// attachment, then anything extra.
/// Default values (zero, empty) are left out, as canonical encoding wants.
fn raw_content(version: u32, kind: u32, message_id: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if version != 0 {
        prost::encoding::uint32::encode(1, &version, &mut out);
    }
    if kind != 0 {
        prost::encoding::uint32::encode(2, &kind, &mut out);
    }
    prost::encoding::uint64::encode(3, &TIMESTAMP, &mut out);
    if !message_id.is_empty() {
        prost::encoding::bytes::encode(4, &message_id.to_vec(), &mut out);
    }
    out.extend_from_slice(extra);
    out
}

#[test]
fn content_decoding_refuses_each_defect_with_its_error() {
    let id = [3u8; 16];
    assert!(Content::from_bytes(&raw_content(1, 1, &id, &[])).is_ok());
    let cases: Vec<(Vec<u8>, ContentError)> = vec![
        (raw_content(1, 0, &id, &[]), ContentError::UnknownKind(0)),
        (
            raw_content(2, 1, &id, &[]),
            ContentError::Wire(WireError::UnknownVersion(2)),
        ),
        (
            raw_content(1, 1, &[], &[]),
            ContentError::Wire(WireError::MissingField("message_id")),
        ),
        (
            raw_content(1, 1, &[3; 15], &[]),
            ContentError::Wire(WireError::InvalidLength {
                field: "message_id",
                expected: 16,
                actual: 15,
            }),
        ),
        // Unknown fields before a known one, out of order, or a group.
        (
            [&[0x48, 0x01][..], &raw_content(1, 1, &id, &[])].concat(),
            ContentError::Wire(WireError::NonCanonical),
        ),
        (
            raw_content(1, 1, &id, &[0x48, 0x01, 0x38, 0x01]),
            ContentError::Wire(WireError::NonCanonical),
        ),
        (
            raw_content(1, 1, &id, &[0x3b, 0x3c]),
            ContentError::Wire(WireError::Malformed),
        ),
        // An attachment-pointer kind without a pointer.
        (
            raw_content(1, 2, &id, &[]),
            ContentError::AttachmentMismatch,
        ),
        // A pointer (field 6) that is empty: its first field, the id, fails.
        (
            raw_content(1, 2, &id, &[0x32, 0x00]),
            ContentError::InvalidAttachmentPointer("id"),
        ),
        // Several faults: the first check in the documented order decides.
        (
            raw_content(2, 0, &[], &[]),
            ContentError::Wire(WireError::UnknownVersion(2)),
        ),
        (raw_content(1, 0, &[], &[]), ContentError::UnknownKind(0)),
        (
            raw_content(1, 2, &[], &[0x32, 0x00]),
            ContentError::Wire(WireError::MissingField("message_id")),
        ),
        (
            raw_content(1, 1, &id, &[0x32, 0x00]),
            ContentError::InvalidAttachmentPointer("id"),
        ),
        (vec![0xff; 3], ContentError::Wire(WireError::Malformed)),
        (
            vec![0; padding::MAX_UNPADDED_LEN + 1],
            ContentError::Wire(WireError::Oversize {
                len: padding::MAX_UNPADDED_LEN + 1,
                max: padding::MAX_UNPADDED_LEN,
            }),
        ),
    ];
    for (bytes, error) in cases {
        assert_eq!(Content::from_bytes(&bytes), Err(error.clone()), "{error}");
    }
    // Kinds of 7 and above, and unknown fields after the known ones, are
    // delivered, not refused.
    for kind in [7, 1000, u32::MAX] {
        let content = Content::from_bytes(&raw_content(1, kind, &id, &[])).unwrap();
        assert_eq!(content.kind(), ContentKind::Unknown(kind));
    }
    let with_field = raw_content(1, 1, &id, &[0x48, 0x01]);
    let content = Content::from_bytes(&with_field).unwrap();
    assert_eq!(
        (content.kind(), content.unknown_fields()),
        (ContentKind::Text, &[0x48, 0x01][..])
    );
    assert_eq!(content.to_bytes(), with_field);
    // `Unknown` holds only codes this build does not know.
    for code in [0, 1, 6] {
        assert_eq!(
            Content::from_parts(ContentKind::Unknown(code), Vec::new(), 0, id, None),
            Err(ContentError::UnknownKind(code))
        );
    }
    // Padding errors come through the pipeline.
    let padded = padding::pad(&raw_content(1, 1, &id, &[])).unwrap();
    let mut dirty = padded.clone();
    *dirty.last_mut().unwrap() = 1;
    assert_eq!(
        Content::from_padded(&dirty),
        Err(ContentError::Padding(PaddingError::NonZeroPadding))
    );
    assert_eq!(
        Content::from_padded(&padded[..padded.len() - 1]),
        Err(ContentError::Padding(PaddingError::WrongLength(
            padded.len() - 1
        )))
    );
}

#[test]
fn debug_prints_no_body_and_no_attachment_key() {
    let mut rng = rng(2);
    let content =
        Content::attachment_pointer(pointer(), b"secret caption".to_vec(), TIMESTAMP, &mut rng)
            .unwrap();
    let text = format!("{content:?}");
    assert!(
        !text.contains("secret caption") && !text.contains("115, 101"),
        "{text}"
    );
    assert!(!text.contains("42") && !text.contains("66, 66"), "{text}");
    let (_, encrypted) = encrypt_attachment(b"x", &mut rng).unwrap();
    let key_hex: String = encrypted
        .key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!format!("{encrypted:?}").contains(&key_hex[..8]));
}

// ---------------------------------------------------------------- padding on the wire

/// Body lengths `0..` whose text content falls in the same bucket as an
/// empty body, and in the bucket of a body of `start` bytes.
fn bucket_of(world: &mut World, start: usize) -> Vec<usize> {
    let len_of = |world: &mut World, n: usize| world.text(&vec![b'a'; n]).to_bytes().len();
    let bucket = padded_len(len_of(world, start)).unwrap();
    let mut lens: Vec<usize> = (start..start + 6000)
        .filter(|&n| padded_len(len_of(world, n)).unwrap() == bucket)
        .collect();
    lens.retain(|&n| n >= start);
    lens
}

#[test]
fn sizes_in_one_bucket_are_indistinguishable_on_the_wire() {
    let mut world = World::new(3);
    for start in [0, 161, 7000] {
        let lens = bucket_of(&mut world, start);
        assert!(lens.len() > 100, "{start}: {}", lens.len());
        // Every length of the bucket below 200 bytes, a sample above.
        let sample: Vec<usize> = lens
            .iter()
            .copied()
            .filter(|&n| n < start + 200 || n % 97 == 0 || n == *lens.last().unwrap())
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in sample.into_iter().enumerate() {
            let content = world.text(&vec![b'a'; n]);
            // The very first message is a prekey message; others ratchet.
            let message = world.message(&content, i % 2 == 0);
            let envelope = world.seal(&message);
            let ciphertext = match &message {
                SessionMessage::PreKey(m) => m.message.ciphertext().len(),
                SessionMessage::Ratchet(m) => m.ciphertext().len(),
            };
            seen.insert((ciphertext, envelope.len()));
        }
        assert_eq!(seen.len(), 1, "bucket at {start}: {seen:?}");
    }
}

#[test]
fn the_sender_address_length_does_not_change_the_envelope_size() {
    let mut world = World::new(4);
    let content = world.text(b"hi");
    let message = world.message(&content, false);
    let lengths: std::collections::BTreeSet<usize> =
        ["a", "a-much-longer-user-id", &"x".repeat(64)]
            .into_iter()
            .map(|user| {
                seal_from(
                    &common::user_key(user),
                    &world.alice,
                    &Address::new(user, u32::MAX).unwrap(),
                    &world.bob.public_key(),
                    &world.bob_address,
                    &message,
                    &mut world.rng,
                )
                .len()
            })
            .collect();
    assert_eq!(lengths.len(), 1, "{lengths:?}");
}

// ---------------------------------------------------------------- sealed sender

#[test]
fn a_conversation_through_sealed_envelopes() {
    let mut world = World::new(5);
    let first = world.text(b"hello Bob, from a sealed envelope");
    let message = world.message(&first, true);
    let envelope = world.seal(&message);
    let opened = world.open(&envelope).unwrap();
    assert_eq!(opened.sender_identity, world.alice.public_key());
    assert_eq!(opened.sender_address, world.alice_address);
    assert_eq!(
        opened.sender_user_key,
        common::user_key("alice").public_key()
    );
    assert_eq!(opened.message, message);
    opened
        .check_sender_identity(&world.alice.public_key())
        .unwrap();

    let mut bob_session = world.bob_session();
    let SessionMessage::PreKey(prekey) = opened.message else {
        panic!("expected a prekey message")
    };
    let padded = bob_session
        .decrypt(&prekey.message, &mut rand_core::OsRng)
        .unwrap();
    assert_eq!(Content::from_padded(&padded).unwrap(), first);

    // Bob answers; Alice opens with her own identity and address.
    let reply = Content::new(
        ContentKind::ReadReceipt,
        first.message_id().to_vec(),
        TIMESTAMP + 5,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let encrypted = bob_session
        .encrypt(&reply.to_padded().unwrap(), &mut rand_core::OsRng)
        .unwrap();
    let bob_user = common::user_key("bob");
    let certificate =
        DeviceCertificate::issue(&bob_user, &world.bob_address, &world.bob.public_key());
    let envelope = sealed::seal(
        &sealed::Sender {
            identity: &world.bob,
            address: &world.bob_address,
            user_key: &bob_user.public_key(),
            certificate: &certificate,
        },
        &world.alice.public_key(),
        &world.alice_address,
        &SessionMessage::Ratchet(encrypted),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let opened = sealed::open(&world.alice, &world.alice_address, &envelope).unwrap();
    opened
        .check_sender_identity(&world.bob.public_key())
        .unwrap();
    let SessionMessage::Ratchet(m) = opened.message else {
        panic!("expected a ratchet message")
    };
    let back = Content::from_padded(
        &world
            .alice_session
            .decrypt(&m, &mut rand_core::OsRng)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(back, reply);
    assert_eq!(back.body(), first.message_id());
}

#[test]
fn envelopes_are_refused_by_the_wrong_recipient() {
    let mut world = World::new(6);
    let content = world.text(b"for bob.2 only");
    let message = world.message(&content, false);
    let envelope = world.seal(&message);
    let carol = IdentityKeyPair::generate(&mut world.rng);
    // Another identity key at the right address.
    assert_eq!(
        sealed::open(&carol, &world.bob_address, &envelope),
        Err(EnvelopeError::SenderDoesNotOpen)
    );
    // The right identity key at another device or user.
    for address in [
        Address::new("bob", 3).unwrap(),
        Address::new("bob2", 2).unwrap(),
    ] {
        assert_eq!(
            sealed::open(&world.bob, &address, &envelope),
            Err(EnvelopeError::SenderDoesNotOpen)
        );
    }
    assert!(world.open(&envelope).is_ok());
}

#[test]
fn a_claimed_sender_address_is_checked_against_the_sealed_identity() {
    let mut world = World::new(7);
    let carol = IdentityKeyPair::generate(&mut world.rng);
    let content = world.text(b"I am carol, honest");
    let message = world.message(&content, false);
    let carol_address = Address::new("carol", 1).unwrap();
    // Alice seals under her own identity but names Carol's address, with
    // her real certificate (of alice.1): it does not verify for carol.1.
    let alice_user = common::user_key("alice");
    let alice_certificate =
        DeviceCertificate::issue(&alice_user, &world.alice_address, &world.alice.public_key());
    let forged = sealed::seal(
        &sealed::Sender {
            identity: &world.alice,
            address: &carol_address,
            user_key: &alice_user.public_key(),
            certificate: &alice_certificate,
        },
        &world.bob.public_key(),
        &world.bob_address,
        &message,
        &mut world.rng,
    )
    .unwrap();
    assert_eq!(
        world.open(&forged),
        Err(EnvelopeError::InvalidSenderCertificate)
    );
    // Nor does it verify under Carol's user key, which never signed it.
    let forged = sealed::seal(
        &sealed::Sender {
            identity: &world.alice,
            address: &carol_address,
            user_key: &common::user_key("carol").public_key(),
            certificate: &alice_certificate,
        },
        &world.bob.public_key(),
        &world.bob_address,
        &message,
        &mut world.rng,
    )
    .unwrap();
    assert_eq!(
        world.open(&forged),
        Err(EnvelopeError::InvalidSenderCertificate)
    );
    // With a certificate of her own user key for carol.1 the envelope
    // opens, naming her user key (the session layer refuses it: not the
    // key trusted for carol) and her identity (not carol's).
    let envelope = seal_from(
        &alice_user,
        &world.alice,
        &carol_address,
        &world.bob.public_key(),
        &world.bob_address,
        &message,
        &mut world.rng,
    );
    let opened = world.open(&envelope).unwrap();
    assert_eq!(opened.sender_address.user_id(), "carol");
    assert_eq!(opened.sender_identity, world.alice.public_key());
    assert_eq!(opened.sender_user_key, alice_user.public_key());
    assert_ne!(
        opened.sender_user_key,
        common::user_key("carol").public_key()
    );
    assert_eq!(
        opened.check_sender_identity(&carol.public_key()),
        Err(EnvelopeError::SenderIdentityMismatch)
    );
}

#[test]
fn parts_spliced_between_envelopes_do_not_open() {
    let mut world = World::new(8);
    let carol = IdentityKeyPair::generate(&mut world.rng);
    let content = world.text(b"same size");
    let message = world.message(&content, false);
    let from_alice = SealedEnvelope::from_wire(&world.seal(&message)).unwrap();
    let from_carol = SealedEnvelope::from_wire(&seal_from(
        &common::user_key("carol"),
        &carol,
        &Address::new("carol", 1).unwrap(),
        &world.bob.public_key(),
        &world.bob_address,
        &message,
        &mut world.rng,
    ))
    .unwrap();
    // Carol's sender part (her ephemeral key and identity) over Alice's
    // content: the content was not sealed by Carol.
    let spliced = splice(
        from_carol.ephemeral_key().as_bytes(),
        from_carol.encrypted_sender(),
        from_alice.encrypted_message(),
    );
    assert_eq!(world.open(&spliced), Err(EnvelopeError::ContentDoesNotOpen));
    // Alice's ephemeral key with Carol's sender part.
    let spliced = splice(
        from_alice.ephemeral_key().as_bytes(),
        from_carol.encrypted_sender(),
        from_alice.encrypted_message(),
    );
    assert_eq!(world.open(&spliced), Err(EnvelopeError::SenderDoesNotOpen));
}

/// An outer envelope from its three fields (an empty field is left out).
fn splice(ephemeral: &[u8], sender: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::uint32::encode(1, &1, &mut out);
    for (tag, field) in [(2, ephemeral), (3, sender), (4, message)] {
        if !field.is_empty() {
            prost::encoding::bytes::encode(tag, &field.to_vec(), &mut out);
        }
    }
    out
}

#[test]
fn every_flipped_bit_region_gives_its_error() {
    let mut world = World::new(9);
    let content = world.text(b"flip me");
    let message = world.message(&content, false);
    let envelope = world.seal(&message);
    assert_eq!(
        splice(&envelope[4..36], &envelope[38..86], &envelope[89..]),
        envelope
    );
    // Layout: 08 01 | 12 20 E(32) | 1a 30 S(48) | 22 len(2) M
    assert_eq!(&envelope[..4], &[0x08, 0x01, 0x12, 0x20]);
    assert_eq!(&envelope[36..38], &[0x1a, 0x30]);
    assert_eq!(envelope[86], 0x22);
    for index in 0..envelope.len() {
        for bit in [0x01u8, 0x80] {
            let mut tampered = envelope.clone();
            tampered[index] ^= bit;
            let error = world.open(&tampered).unwrap_err();
            let expected = match index {
                // Version 0 written out is not canonical.
                1 => Some(EnvelopeError::Malformed(WireError::NonCanonical)),
                4..=35 => Some(EnvelopeError::SenderDoesNotOpen),
                38..=85 => Some(EnvelopeError::SenderDoesNotOpen),
                89.. => Some(EnvelopeError::ContentDoesNotOpen),
                _ => None,
            };
            match expected {
                // 0x81 is a two-byte varint: the version field then eats
                // the next byte as well.
                Some(_) if index == 1 && bit == 0x80 => {
                    assert!(error.is_relay_detectable(), "{index}: {error}")
                }
                // Bit 255 of a u-coordinate is ignored by X25519, but it is
                // in the key derivation, so the envelope still does not open.
                Some(expected) => assert_eq!(error, expected, "byte {index} bit {bit:#x}"),
                None => assert!(error.is_relay_detectable(), "byte {index}: {error}"),
            }
        }
    }
}

#[test]
fn structural_defects_are_relay_detectable_with_their_error() {
    let mut world = World::new(10);
    let content = world.text(b"structure");
    let message = world.message(&content, false);
    let envelope = world.seal(&message);
    let fields = (
        envelope[4..36].to_vec(),
        envelope[38..86].to_vec(),
        envelope[89..].to_vec(),
    );
    let malformed = |e: WireError| Err(EnvelopeError::Malformed(e));
    // Truncation anywhere.
    for len in 0..envelope.len() {
        let error = world.open(&envelope[..len]).unwrap_err();
        assert!(error.is_relay_detectable(), "{len}: {error}");
    }
    assert_eq!(
        world.open(&envelope[..envelope.len() - 1]),
        malformed(WireError::Malformed)
    );
    assert_eq!(world.open(&[]), malformed(WireError::UnknownVersion(0)));
    // Oversize.
    assert_eq!(
        world.open(&vec![0; MAX_ENVELOPE_LEN + 1]),
        malformed(WireError::Oversize {
            len: MAX_ENVELOPE_LEN + 1,
            max: MAX_ENVELOPE_LEN
        })
    );
    // Wrong version.
    let mut v2 = envelope.clone();
    v2[1] = 2;
    assert_eq!(world.open(&v2), malformed(WireError::UnknownVersion(2)));
    // Trailing bytes, an unknown field.
    let mut trailing = envelope.clone();
    trailing.extend_from_slice(&[0x28, 0x01]);
    assert_eq!(world.open(&trailing), malformed(WireError::NonCanonical));
    // Wrong field lengths.
    assert_eq!(
        world.open(&splice(&fields.0[..31], &fields.1, &fields.2)),
        malformed(WireError::InvalidLength {
            field: "ephemeral_key",
            expected: 32,
            actual: 31
        })
    );
    assert_eq!(
        world.open(&splice(&fields.0, &fields.1[..47], &fields.2)),
        malformed(WireError::InvalidLength {
            field: "encrypted_sender",
            expected: 48,
            actual: 47
        })
    );
    assert_eq!(
        world.open(&splice(&fields.0, &fields.1, &fields.2[..351])),
        malformed(WireError::InvalidLength {
            field: "encrypted_message",
            expected: sealed::MIN_ENCRYPTED_MESSAGE_LEN,
            actual: 351
        })
    );
    assert_eq!(
        world.open(&splice(&fields.0, &fields.1, &[])),
        malformed(WireError::MissingField("encrypted_message"))
    );
    // A small-order ephemeral key passes the relay but not the recipient.
    let small = splice(&[0; 32], &fields.1, &fields.2);
    assert!(SealedEnvelope::from_wire(&small).is_ok());
    assert_eq!(world.open(&small), Err(EnvelopeError::InvalidEphemeralKey));
    assert!(!EnvelopeError::InvalidEphemeralKey.is_relay_detectable());
    // The relay's view decodes and re-encodes the same bytes.
    assert_eq!(
        SealedEnvelope::from_wire(&envelope).unwrap().to_wire(),
        envelope
    );
}

/// Every window of `min(8, len)` bytes of `needle`.
fn windows(needle: &[u8]) -> Vec<&[u8]> {
    needle.windows(needle.len().min(8)).collect()
}

#[test]
fn no_plaintext_identity_timestamp_or_id_bytes_appear_in_an_envelope() {
    let mut world = World::new(11);
    let body: Vec<u8> = b"a fairly long plaintext body that must never show through, with \
        repetition repetition repetition repetition"
        .to_vec();
    for prekey in [true, false] {
        let content = world.text(&body);
        let message = world.message(&content, prekey);
        let envelope = world.seal(&message);
        let mut timestamp_varint = Vec::new();
        prost::encoding::encode_varint(TIMESTAMP, &mut timestamp_varint);
        let identity = world.alice.public_key().to_bytes();
        let identity_x25519 = world.alice.public_key().to_x25519().to_bytes();
        let secrets: [(&str, &[u8]); 7] = [
            ("body", &body),
            ("sender identity", &identity),
            ("sender identity (X25519)", &identity_x25519),
            ("timestamp (big-endian)", &TIMESTAMP.to_be_bytes()),
            ("timestamp (little-endian)", &TIMESTAMP.to_le_bytes()),
            ("timestamp (varint)", &timestamp_varint),
            ("message id", content.message_id()),
        ];
        for (name, secret) in secrets {
            for window in windows(secret) {
                assert!(
                    !envelope.windows(window.len()).any(|w| w == window),
                    "{name} shows in the envelope"
                );
            }
        }
        // And the sender's user id.
        assert!(!envelope.windows(5).any(|w| w == b"alice"));
    }
}

// ---------------------------------------------------------------- attachments

/// Deterministic attachment bytes.
fn attachment_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng(seed).fill_bytes(&mut out);
    out
}

#[test]
fn a_multi_megabyte_attachment_streams_in_bounded_memory() {
    let len = 5 * 1024 * 1024 + 12_345;
    let piece = 10_007;
    let mut source = rng(12);
    let mut plaintext_hash = Sha256::new();
    let mut blob_hash = Sha256::new();
    let mut blob = Vec::with_capacity(len + 2048);

    let mut encryptor = AttachmentEncryptor::new(&mut rng(13));
    let mut out = Vec::new();
    let mut remaining = len;
    let mut chunk = vec![0u8; piece];
    while remaining > 0 {
        let n = remaining.min(piece);
        source.fill_bytes(&mut chunk[..n]);
        plaintext_hash.update(&chunk[..n]);
        encryptor.update(&chunk[..n], &mut out).unwrap();
        // Output per call: at most the piece, one chunk's overhead and the prefix.
        assert!(out.len() <= n + CHUNK_LEN + CHUNK_TAG_LEN + NONCE_PREFIX_LEN);
        blob_hash.update(&out);
        blob.extend_from_slice(&out);
        out.clear();
        remaining -= n;
    }
    let encrypted = encryptor.finish(&mut out).unwrap();
    assert!(out.len() <= CHUNK_LEN + CHUNK_TAG_LEN + NONCE_PREFIX_LEN);
    blob_hash.update(&out);
    blob.extend_from_slice(&out);
    out.clear();
    assert_eq!(encrypted.size(), len as u64);
    assert_eq!(blob.len() as u64, encrypted_len(len as u64).unwrap());
    assert_eq!(&<[u8; 32]>::from(blob_hash.finalize()), encrypted.digest());

    let pointer = encrypted
        .pointer(b"blob-1", "application/octet-stream")
        .unwrap();
    let mut decryptor = AttachmentDecryptor::new(&pointer);
    let mut decrypted_hash = Sha256::new();
    for piece in blob.chunks(7_919) {
        decryptor.update(piece, &mut out).unwrap();
        assert!(out.len() <= piece.len() + CHUNK_LEN);
        decrypted_hash.update(&out);
        out.clear();
    }
    decryptor.finish(&mut out).unwrap();
    decrypted_hash.update(&out);
    assert_eq!(decrypted_hash.finalize(), plaintext_hash.finalize());
}

#[test]
fn attachments_of_edge_sizes_round_trip_whatever_the_pieces() {
    for len in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN] {
        let plaintext = attachment_bytes(len, 14);
        let (blob, encrypted) = encrypt_attachment(&plaintext, &mut rng(15)).unwrap();
        // The same key and prefix fed in other pieces give the same blob.
        let mut piecewise = AttachmentEncryptor::new(&mut rng(15));
        let mut other = Vec::new();
        for piece in plaintext.chunks(4_099) {
            piecewise.update(piece, &mut other).unwrap();
            piecewise.update(&[], &mut other).unwrap();
        }
        assert_eq!(piecewise.finish(&mut other).unwrap(), encrypted);
        assert_eq!(other, blob);
        let pointer = encrypted.pointer(b"id", "").unwrap();
        assert_eq!(decrypt_attachment(&pointer, &blob), Ok(plaintext), "{len}");
    }
}

/// An attachment of three full chunks and a short one.
fn three_and_a_bit() -> (Vec<u8>, AttachmentPointer) {
    let plaintext = attachment_bytes(3 * CHUNK_LEN + 100, 16);
    let (blob, encrypted) = encrypt_attachment(&plaintext, &mut rng(17)).unwrap();
    (blob, encrypted.pointer(b"id", "").unwrap())
}

fn chunk_range(i: usize) -> std::ops::Range<usize> {
    let start = NONCE_PREFIX_LEN + i * (CHUNK_LEN + CHUNK_TAG_LEN);
    start..start + CHUNK_LEN + CHUNK_TAG_LEN
}

/// A pointer for `blob` as it is (so that only the chunk checks can fail).
fn pointer_matching(blob: &[u8], size: u64, key: &SecretKey32) -> AttachmentPointer {
    AttachmentPointer::new(b"id", key.clone(), Sha256::digest(blob).into(), size, "").unwrap()
}

#[test]
fn attachment_tampering_is_detected() {
    let (blob, pointer) = three_and_a_bit();
    let size = pointer.size();
    let key = pointer.key().clone();

    // Reordered chunks, with a pointer that matches the reordered blob.
    let mut swapped = blob.clone();
    let (first, second) = (blob[chunk_range(0)].to_vec(), blob[chunk_range(1)].to_vec());
    swapped[chunk_range(0)].copy_from_slice(&second);
    swapped[chunk_range(1)].copy_from_slice(&first);
    assert_eq!(
        decrypt_attachment(&pointer_matching(&swapped, size, &key), &swapped),
        Err(AttachmentError::ChunkAuthentication(0))
    );
    // The unchanged pointer catches the same blob too.
    assert!(decrypt_attachment(&pointer, &swapped).is_err());

    // A bit flipped in a chunk.
    let mut flipped = blob.clone();
    flipped[chunk_range(2).start + 5] ^= 1;
    assert_eq!(
        decrypt_attachment(&pointer_matching(&flipped, size, &key), &flipped),
        Err(AttachmentError::ChunkAuthentication(2))
    );

    // Truncated at a chunk boundary, with a pointer sized for it: the last
    // chunk left is not flagged final.
    let cut = &blob[..chunk_range(2).end];
    assert_eq!(
        decrypt_attachment(&pointer_matching(cut, 3 * CHUNK_LEN as u64, &key), cut),
        Err(AttachmentError::Truncated)
    );
    // Truncated against the real pointer.
    assert_eq!(
        decrypt_attachment(&pointer, &blob[..blob.len() - 1]),
        Err(AttachmentError::Truncated)
    );
    // Extended.
    let mut longer = blob.clone();
    longer.push(0);
    assert_eq!(
        decrypt_attachment(&pointer, &longer),
        Err(AttachmentError::SizeMismatch)
    );

    // A chunk of another attachment encrypted under the same key (key reuse)
    // but its own prefix.
    let other_plaintext = attachment_bytes(3 * CHUNK_LEN + 100, 18);
    let mut encryptor = AttachmentEncryptor::with_key(key.clone(), [0x55; NONCE_PREFIX_LEN]);
    let mut other = Vec::new();
    encryptor.update(&other_plaintext, &mut other).unwrap();
    encryptor.finish(&mut other).unwrap();
    let mut mixed = blob.clone();
    mixed[chunk_range(1)].copy_from_slice(&other[chunk_range(1)]);
    assert_eq!(
        decrypt_attachment(&pointer_matching(&mixed, size, &key), &mixed),
        Err(AttachmentError::ChunkAuthentication(1))
    );

    // The wrong digest.
    let wrong_digest = AttachmentPointer::new(b"id", key.clone(), [0; 32], size, "").unwrap();
    assert_eq!(
        decrypt_attachment(&wrong_digest, &blob),
        Err(AttachmentError::DigestMismatch)
    );
    // The wrong key.
    let wrong_key = pointer_matching(&blob, size, &SecretKey32::from_bytes([1; 32]));
    assert_eq!(
        decrypt_attachment(&wrong_key, &blob),
        Err(AttachmentError::ChunkAuthentication(0))
    );

    // After an error, the decryptor refuses more input.
    let mut decryptor = AttachmentDecryptor::new(&pointer);
    let mut out = Vec::new();
    assert_eq!(
        decryptor.update(&longer, &mut out),
        Err(AttachmentError::SizeMismatch)
    );
    assert_eq!(
        decryptor.update(&[], &mut out),
        Err(AttachmentError::Failed)
    );
    assert_eq!(decryptor.finish(&mut out), Err(AttachmentError::Failed));
}

// ---------------------------------------------------------------- no panics

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Content::from_bytes(&bytes);
        let _ = Content::from_padded(&bytes);
        let _ = padding::unpad(&bytes);
        let _ = SealedEnvelope::from_wire(&bytes);
        let bob = IdentityKeyPair::from_seed(&[2; 32]);
        let _ = sealed::open(&bob, &Address::new("bob", 2).unwrap(), &bytes);
        let _ = decrypt_attachment(&pointer(), &bytes);
    }

    #[test]
    fn envelopes_with_random_payloads_never_panic(
        ephemeral in proptest::array::uniform32(any::<u8>()),
        sender in proptest::collection::vec(any::<u8>(), 48),
        message in proptest::collection::vec(
            any::<u8>(),
            sealed::MIN_ENCRYPTED_MESSAGE_LEN..sealed::MIN_ENCRYPTED_MESSAGE_LEN + 350,
        ),
    ) {
        let bob = IdentityKeyPair::from_seed(&[2; 32]);
        let envelope = splice(&ephemeral, &sender, &message);
        let result = sealed::open(&bob, &Address::new("bob", 2).unwrap(), &envelope);
        prop_assert!(matches!(
            result,
            Err(EnvelopeError::SenderDoesNotOpen | EnvelopeError::InvalidEphemeralKey)
        ));
    }

    #[test]
    fn padding_round_trips(data in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let padded = padding::pad(&data).unwrap();
        prop_assert_eq!(padded.len(), padded_len(data.len()).unwrap());
        prop_assert_eq!(padding::unpad(&padded).unwrap(), &data[..]);
    }
}

#[test]
fn a_raw_proto_content_with_a_pointer_decodes() {
    // A sanity check that prost's derived encoding is what the document says.
    let mut rng = rng(19);
    let content = Content::attachment_pointer(pointer(), Vec::new(), TIMESTAMP, &mut rng).unwrap();
    let bytes = content.to_bytes();
    assert_eq!(&bytes[..4], &[0x08, 0x01, 0x10, 0x02]);
    assert_eq!(bytes[4], 0x18);
    // Field 6 (the pointer) closes the message: no body was written.
    let tail = 4 + 1 + 6 + 2 + 16;
    assert_eq!(bytes[tail], 0x32);
}
