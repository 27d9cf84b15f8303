#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! A catalogue of hostile inputs at every layer of the core: wire decoders,
//! sealed envelopes, the session manager (prekey and ratchet messages, of
//! profiles `tacit-v1` and `tacit-v2`), the users' device lists, the
//! ratchet, group sender chains, session records and account records,
//! and signed group states.
//!
//! Each row names its layer, the kind of hostility (truncated, oversize,
//! wrong version, wrong key, replayed, reordered, cross-session, wrong
//! recipient, unlisted device, impersonation, stale list, forgery), the
//! input, and the exact error expected. For a stateful
//! layer the row also checks that nothing changed: the ratchet's serialized
//! state, the inbound group chains, or the manager's account and every store record
//! (`InMemoryStore::dump`), byte for byte before and after. Decoders of
//! bytes hold no state; their rows say so. A summary table is printed.

mod common;

use std::fmt::Debug;

use common::{list, lists_of, trust, user_key};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{self, Content, ContentKind, SealedEnvelope};
use tacit::error::{
    GroupDecryptError, GroupStateError, IdentityError, KemError, PqxdhError, UnknownUser,
    UserKeyConflict,
};
use tacit::group::multi::{self, MultiError};
use tacit::group::{
    ChainConfig, Group, GroupChange, GroupId, GroupMember, GroupSigner, InboundChain,
    InboundChains, OutboundChain, Role, SignedGroupState, MAX_SIGNED_GROUP_STATE_LEN,
    MAX_STATE_HISTORY,
};
use tacit::identity::{DeviceCertificate, DeviceList, UserKeyPair};
use tacit::kem::KemCiphertext;
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig};
use tacit::session::{Account, BundlePreKey, KemPreKeyChoice, SessionConfig, SessionRecord};
use tacit::wire::{
    PreKeyBundleMessage, PreKeyMessage, SessionMessage, WireMessage, MAX_BUNDLE_LEN,
    MAX_MESSAGE_LEN,
};
use tacit::x3dh;
use tacit::PreKeyBundle;
use tacit::{
    Address, DecryptError, EnvelopeError, IdentityKeyPair, KeyError, KeyPair, SessionError,
    StateError, WireError,
};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Truncated,
    Oversize,
    WrongVersion,
    WrongKey,
    Replayed,
    Reordered,
    CrossSession,
    WrongRecipient,
    /// A device its user's list does not name, or a signer the group does
    /// not list.
    Unlisted,
    /// Another user key under a trusted user id.
    Impersonation,
    /// A device list older than, or conflicting with, the trusted one; a
    /// group state older than the states a member holds.
    Stale,
    /// A signature or certificate that does not verify.
    Forged,
}

/// Whether a row's layer holds state, and if so whether it is unchanged.
enum Unchanged {
    Stateless,
    Checked(bool),
}

struct Row {
    layer: &'static str,
    kind: Kind,
    input: String,
    expected: String,
    actual: String,
    unchanged: Unchanged,
}

impl Row {
    fn passed(&self) -> bool {
        self.expected == self.actual && !matches!(self.unchanged, Unchanged::Checked(false))
    }
}

#[derive(Default)]
struct Catalogue {
    rows: Vec<Row>,
}

impl Catalogue {
    fn row<T: Debug, E: Debug>(
        &mut self,
        layer: &'static str,
        kind: Kind,
        input: impl Into<String>,
        result: Result<T, E>,
        expected: E,
        unchanged: Unchanged,
    ) {
        self.rows.push(Row {
            layer,
            kind,
            input: input.into(),
            expected: format!("{expected:?}"),
            actual: match result {
                Ok(v) => format!("Ok({v:?})"),
                Err(e) => format!("{e:?}"),
            },
            unchanged,
        });
    }

    /// Prints the table and fails on any row that did not hold.
    fn finish(self) {
        println!(
            "{:<16} {:<15} {:<58} {:<10} result",
            "layer", "kind", "input", "unchanged"
        );
        for r in &self.rows {
            let unchanged = match r.unchanged {
                Unchanged::Stateless => "stateless",
                Unchanged::Checked(true) => "yes",
                Unchanged::Checked(false) => "NO",
            };
            println!(
                "{:<16} {:<15} {:<58} {:<10} {}",
                r.layer,
                format!("{:?}", r.kind),
                r.input,
                unchanged,
                if r.passed() {
                    r.expected.clone()
                } else {
                    format!("FAILED: expected {}, got {}", r.expected, r.actual)
                }
            );
        }
        let mut kinds: Vec<String> = self.rows.iter().map(|r| format!("{:?}", r.kind)).collect();
        kinds.sort();
        kinds.dedup();
        let layers: std::collections::BTreeSet<&str> = self.rows.iter().map(|r| r.layer).collect();
        let failed: Vec<&Row> = self.rows.iter().filter(|r| !r.passed()).collect();
        println!(
            "{} rows checked across {} layers and {} kinds; {} failed",
            self.rows.len(),
            layers.len(),
            kinds.len(),
            failed.len()
        );
        assert_eq!(kinds.len(), 12, "every kind of hostility has a row");
        assert!(failed.is_empty(), "{} rows failed", failed.len());
    }
}

use tacit_testkit::Device;

/// Everything a device holds: its account and every store record.
fn snapshot(d: &Device) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = d
        .store()
        .dump()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect();
    out.push(("manager account".into(), d.account().to_bytes().to_vec()));
    out
}

/// Runs `f` on the device and reports whether its state is unchanged.
fn on_device<T>(d: &mut Device, f: impl FnOnce(&mut Device) -> T) -> (T, Unchanged) {
    let before = snapshot(d);
    let out = f(d);
    (out, Unchanged::Checked(snapshot(d) == before))
}

/// Runs `f` on the ratchet and reports whether its state is unchanged.
fn on_ratchet<T>(r: &mut Ratchet, f: impl FnOnce(&mut Ratchet) -> T) -> (T, Unchanged) {
    let before = r.to_bytes().to_vec();
    let out = f(r);
    (out, Unchanged::Checked(r.to_bytes().to_vec() == before))
}

fn config() -> SessionConfig {
    SessionConfig::default().with_ratchet(RatchetConfig::default().with_max_skip(8).unwrap())
}

fn device(user: &str, id: u32, rng: &mut ChaCha20Rng) -> Device {
    tacit_testkit::device_with(user, id, config(), rng)
}

fn introduce(from: &mut Device, to: &Device, prekey: BundlePreKey, rng: &mut ChaCha20Rng) {
    let bundle = to.account().bundle(prekey).unwrap();
    from.process_bundle(to.local_address(), &bundle, rng)
        .unwrap();
}

fn text(body: &str, rng: &mut ChaCha20Rng) -> Content {
    Content::new(ContentKind::Text, body.as_bytes().to_vec(), 1, rng).unwrap()
}

fn seal(from: &mut Device, to: &Device, body: &str, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let content = text(body, rng);
    from.seal_for_device(to.local_address(), &content, rng)
        .unwrap()
        .envelope
}

/// Every message of the wire format and the envelope starts with its
/// version, field 1: `0x08` then 1 (or 2 for the bundles and prekey
/// messages of `tacit-v2`). The copy says version 3, which none has.
fn with_version_3(bytes: &[u8], at: usize) -> Vec<u8> {
    assert_eq!(bytes[at], 0x08, "version field");
    assert!([1, 2].contains(&bytes[at + 1]), "version field");
    let mut out = bytes.to_vec();
    out[at + 1] = 3;
    out
}

/// Replaces the one occurrence of `old` in `bytes` with `new` (of any
/// length).
fn replace(bytes: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = (0..=bytes.len() - old.len())
        .filter(|&i| &bytes[i..i + old.len()] == old)
        .collect();
    assert_eq!(at.len(), 1, "the field occurs once");
    let mut out = bytes.to_vec();
    out.splice(at[0]..at[0] + old.len(), new.iter().copied());
    out
}

/// A length-delimited protobuf field: its tag byte, the length as a
/// varint (the lengths here are below 2^14), then `value`.
fn field(tag: u8, value: &[u8]) -> Vec<u8> {
    let len = value.len();
    assert!(len < 1 << 14);
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&[(len & 0x7f) as u8 | 0x80, (len >> 7) as u8]);
    }
    out.extend_from_slice(value);
    out
}

/// `value` cut or zero-padded to `len` bytes.
fn resized(value: &[u8], len: usize) -> Vec<u8> {
    let mut out = value.to_vec();
    out.resize(len, 0);
    out
}

/// The first message `from` sends `to` after processing `bundle`.
fn first_message(
    from: &mut Device,
    to: &Device,
    bundle: &PreKeyBundleMessage,
    rng: &mut ChaCha20Rng,
) -> PreKeyMessage {
    from.process_bundle(to.local_address(), bundle, rng)
        .unwrap();
    match from.encrypt(to.local_address(), b"v2", rng).unwrap() {
        SessionMessage::PreKey(m) => *m,
        SessionMessage::Ratchet(_) => panic!("a new session sends prekey messages"),
    }
}

/// The encoding of the Edwards identity point: a key of small order.
const SMALL_ORDER_IDENTITY: [u8; 32] = {
    let mut k = [0u8; 32];
    k[0] = 1;
    k
};

fn cut(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len() - 1].to_vec()
}

#[test]
fn hostile_inputs_at_every_layer() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x4057);
    let mut cat = Catalogue::default();

    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 1, &mut rng);
    let mut bob2 = device("bob", 2, &mut rng);
    let mut carol = device("carol", 1, &mut rng);
    let (a, b, b2, c) = (
        alice.local_address().clone(),
        bob.local_address().clone(),
        bob2.local_address().clone(),
        carol.local_address().clone(),
    );
    let alice_id = alice.account().identity().public_key();
    let carol_id = carol.account().identity().public_key();
    let mut alice2 = device("alice", 2, &mut rng);
    let a2 = alice2.local_address().clone();
    // Every device trusts every user's list (version 1).
    let listed: Vec<(Address, tacit::keys::IdentityKey)> = [&alice, &alice2, &bob, &bob2, &carol]
        .iter()
        .map(|d| {
            (
                d.local_address().clone(),
                d.account().identity().public_key(),
            )
        })
        .collect();
    let refs: Vec<_> = listed.iter().map(|(a, k)| (a, *k)).collect();
    let lists = lists_of(1, &refs);
    for d in [&mut alice, &mut alice2, &mut bob, &mut bob2, &mut carol] {
        trust(d, &lists);
    }

    // Alice and Carol each start a session with Bob; Bob answers Alice.
    introduce(&mut alice, &bob, BundlePreKey::Auto, &mut rng);
    // Without a one-time prekey: Alice's bundle already offered the first.
    introduce(&mut carol, &bob, BundlePreKey::None, &mut rng);
    let first = seal(&mut alice, &bob, "first", &mut rng);
    bob.open_envelope(&first, &mut rng).unwrap();
    let from_carol = seal(&mut carol, &bob, "carol", &mut rng);
    bob.open_envelope(&from_carol, &mut rng).unwrap();
    let reply = seal(&mut bob, &alice, "reply", &mut rng);
    alice.open_envelope(&reply, &mut rng).unwrap();
    // Ratchet messages from Alice: the first is delivered, the rest wait.
    let ratchet: Vec<Vec<u8>> = (0..12)
        .map(|i| seal(&mut alice, &bob, &format!("m{i}"), &mut rng))
        .collect();
    bob.open_envelope(&ratchet[0], &mut rng).unwrap();
    let unsealed = envelope::open(bob.account().identity(), &b, &ratchet[1]).unwrap();
    let ratchet_message = unsealed.message.clone();

    // --- Wire decoders -------------------------------------------------
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap().to_wire();
    cat.row(
        "wire",
        Kind::Truncated,
        "bundle without its last byte",
        PreKeyBundleMessage::from_wire(&cut(&bundle)),
        WireError::Malformed,
        Unchanged::Stateless,
    );
    cat.row(
        "wire",
        Kind::Oversize,
        "bundle of MAX_BUNDLE_LEN + 1 bytes",
        PreKeyBundleMessage::from_wire(&vec![0; MAX_BUNDLE_LEN + 1]),
        WireError::Oversize {
            len: MAX_BUNDLE_LEN + 1,
            max: MAX_BUNDLE_LEN,
        },
        Unchanged::Stateless,
    );
    cat.row(
        "wire",
        Kind::WrongVersion,
        "bundle of version 3",
        PreKeyBundleMessage::from_wire(&with_version_3(&bundle, 0)),
        WireError::UnknownVersion(3),
        Unchanged::Stateless,
    );
    let bob_id_bytes = bob.account().identity().public_key().to_bytes();
    cat.row(
        "wire",
        Kind::WrongKey,
        "bundle with a small-order identity key",
        PreKeyBundleMessage::from_wire(&replace(&bundle, &bob_id_bytes, &SMALL_ORDER_IDENTITY)),
        WireError::InvalidKey {
            field: "identity_key",
            error: KeyError::WeakIdentityKey,
        },
        Unchanged::Stateless,
    );
    let prekey_wire = envelope::open(bob.account().identity(), &b, &first)
        .unwrap()
        .message
        .to_wire();
    cat.row(
        "wire",
        Kind::Truncated,
        "prekey message without its last byte",
        SessionMessage::from_wire(&cut(&prekey_wire)),
        WireError::Malformed,
        Unchanged::Stateless,
    );
    cat.row(
        "wire",
        Kind::Oversize,
        "session message of MAX_MESSAGE_LEN + 1 bytes",
        SessionMessage::from_wire(&vec![0; MAX_MESSAGE_LEN + 1]),
        WireError::Oversize {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN,
        },
        Unchanged::Stateless,
    );
    // The session message wraps the prekey message in field 1: tag, then
    // a two-byte length, then the prekey message's version.
    cat.row(
        "wire",
        Kind::WrongVersion,
        "prekey message of version 3",
        SessionMessage::from_wire(&with_version_3(&prekey_wire, 3)),
        WireError::UnknownVersion(3),
        Unchanged::Stateless,
    );
    cat.row(
        "wire",
        Kind::WrongKey,
        "prekey message with a small-order identity key",
        SessionMessage::from_wire(&replace(
            &prekey_wire,
            &alice_id.to_bytes(),
            &SMALL_ORDER_IDENTITY,
        )),
        WireError::InvalidKey {
            field: "identity_key",
            error: KeyError::WeakIdentityKey,
        },
        Unchanged::Stateless,
    );
    let SessionMessage::Ratchet(rm) = &ratchet_message else {
        panic!("a ratchet message")
    };
    let rm_wire = rm.to_wire();
    cat.row(
        "wire",
        Kind::WrongVersion,
        "ratchet message of version 3",
        EncryptedMessage::from_wire(&with_version_3(&rm_wire, 0)),
        WireError::UnknownVersion(3),
        Unchanged::Stateless,
    );
    cat.row(
        "wire",
        Kind::Truncated,
        "ratchet message without its last byte",
        EncryptedMessage::from_wire(&cut(&rm_wire)),
        WireError::Malformed,
        Unchanged::Stateless,
    );

    // --- Sealed envelopes ----------------------------------------------
    let env = &ratchet[1];
    let bob_identity = bob.account().identity().clone();
    cat.row(
        "envelope",
        Kind::Truncated,
        "envelope without its last byte",
        envelope::open(&bob_identity, &b, &cut(env)),
        EnvelopeError::Malformed(WireError::Malformed),
        Unchanged::Stateless,
    );
    cat.row(
        "envelope",
        Kind::Oversize,
        "envelope of MAX_ENVELOPE_LEN + 1 bytes",
        envelope::open(
            &bob_identity,
            &b,
            &vec![0; envelope::sealed::MAX_ENVELOPE_LEN + 1],
        ),
        EnvelopeError::Malformed(WireError::Oversize {
            len: envelope::sealed::MAX_ENVELOPE_LEN + 1,
            max: envelope::sealed::MAX_ENVELOPE_LEN,
        }),
        Unchanged::Stateless,
    );
    cat.row(
        "envelope",
        Kind::WrongVersion,
        "envelope of version 3",
        envelope::open(&bob_identity, &b, &with_version_3(env, 0)),
        EnvelopeError::Malformed(WireError::UnknownVersion(3)),
        Unchanged::Stateless,
    );
    let outer = SealedEnvelope::from_wire(env).unwrap();
    cat.row(
        "envelope",
        Kind::WrongKey,
        "all-zero (small-order) ephemeral key",
        envelope::open(
            &bob_identity,
            &b,
            &replace(env, &outer.ephemeral_key().to_bytes(), &[0; 32]),
        ),
        EnvelopeError::InvalidEphemeralKey,
        Unchanged::Stateless,
    );
    cat.row(
        "envelope",
        Kind::WrongRecipient,
        "Bob's envelope opened by bob.2",
        envelope::open(bob2.account().identity(), &b2, env),
        EnvelopeError::SenderDoesNotOpen,
        Unchanged::Stateless,
    );
    cat.row(
        "envelope",
        Kind::WrongRecipient,
        "Bob's envelope opened with Bob's key as bob.2",
        envelope::open(&bob_identity, &b2, env),
        EnvelopeError::SenderDoesNotOpen,
        Unchanged::Stateless,
    );
    // The sender part of one envelope with the content part of another.
    let other = SealedEnvelope::from_wire(&ratchet[2]).unwrap();
    let spliced = replace(env, outer.encrypted_message(), other.encrypted_message());
    cat.row(
        "envelope",
        Kind::CrossSession,
        "content part spliced from another envelope",
        envelope::open(&bob_identity, &b, &spliced),
        EnvelopeError::ContentDoesNotOpen,
        Unchanged::Stateless,
    );

    // --- Session manager -----------------------------------------------
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&cut(env), &mut rng));
    cat.row(
        "session",
        Kind::Truncated,
        "truncated envelope",
        r,
        SessionError::Envelope(EnvelopeError::Malformed(WireError::Malformed)),
        u,
    );
    let big = vec![0u8; envelope::sealed::MAX_ENVELOPE_LEN + 1];
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&big, &mut rng));
    cat.row(
        "session",
        Kind::Oversize,
        "oversize envelope",
        r,
        SessionError::Envelope(EnvelopeError::Malformed(WireError::Oversize {
            len: envelope::sealed::MAX_ENVELOPE_LEN + 1,
            max: envelope::sealed::MAX_ENVELOPE_LEN,
        })),
        u,
    );
    let (r, u) = on_device(&mut bob, |d| {
        d.open_envelope(&with_version_3(env, 0), &mut rng)
    });
    cat.row(
        "session",
        Kind::WrongVersion,
        "envelope of version 3",
        r,
        SessionError::Envelope(EnvelopeError::Malformed(WireError::UnknownVersion(3))),
        u,
    );
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&ratchet[0], &mut rng));
    cat.row(
        "session",
        Kind::Replayed,
        "ratchet message delivered twice",
        r,
        SessionError::Decrypt(DecryptError::DuplicateMessage),
        u,
    );
    // The session it started is found by its base key, but the chain its
    // header key belonged to is gone: both sides have ratcheted since.
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&first, &mut rng));
    cat.row(
        "session",
        Kind::Replayed,
        "prekey message replayed after both sides ratcheted",
        r,
        SessionError::Decrypt(DecryptError::UnknownHeaderKey),
        u,
    );
    // ratchet[11] needs keys for 10 skipped messages; max_skip is 8.
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&ratchet[11], &mut rng));
    cat.row(
        "session",
        Kind::Reordered,
        "message 11 before 1..10 (max_skip 8)",
        r,
        SessionError::Decrypt(DecryptError::TooManySkipped),
        u,
    );
    let (r, u) = on_device(&mut bob, |d| {
        d.decrypt(&c, &carol_id, &ratchet_message, &mut rng)
    });
    cat.row(
        "session",
        Kind::CrossSession,
        "Alice's message on Carol's session",
        r,
        SessionError::Decrypt(DecryptError::UnknownHeaderKey),
        u,
    );
    let (r, u) = on_device(&mut bob, |d| {
        d.decrypt(&a, &carol_id, &ratchet_message, &mut rng)
    });
    cat.row(
        "session",
        Kind::WrongKey,
        "Alice's address with Carol's identity",
        r.map(|d| d.plaintext),
        SessionError::DeviceNotListed(a.clone()),
        u,
    );
    let (r, u) = on_device(&mut bob2, |d| d.open_envelope(env, &mut rng));
    cat.row(
        "session",
        Kind::WrongRecipient,
        "Bob's envelope at bob.2",
        r,
        SessionError::Envelope(EnvelopeError::SenderDoesNotOpen),
        u,
    );
    // A first message to bob.2, presented under another identity, then
    // replayed once its session is gone and its one-time prekey spent.
    introduce(&mut alice, &bob2, BundlePreKey::Auto, &mut rng);
    let to_bob2 = seal(&mut alice, &bob2, "hello bob.2", &mut rng);
    let prekey = envelope::open(bob2.account().identity(), &b2, &to_bob2)
        .unwrap()
        .message;
    let SessionMessage::PreKey(pk) = &prekey else {
        panic!("a prekey message")
    };
    let one_time = pk.one_time_prekey_id.unwrap();
    let (r, u) = on_device(&mut bob2, |d| d.decrypt(&a, &carol_id, &prekey, &mut rng));
    cat.row(
        "session",
        Kind::Unlisted,
        "prekey message under an identity Alice's list does not name",
        r.map(|d| d.plaintext),
        SessionError::DeviceNotListed(a.clone()),
        u,
    );
    let mut other_identity = (**pk).clone();
    other_identity.identity_key = carol_id;
    let (r, u) = on_device(&mut bob2, |d| {
        d.decrypt(
            &a,
            &alice_id,
            &SessionMessage::PreKey(Box::new(other_identity)),
            &mut rng,
        )
    });
    cat.row(
        "session",
        Kind::WrongKey,
        "prekey message carrying another identity than the sender's",
        r.map(|d| d.plaintext),
        SessionError::IdentityMismatch,
        u,
    );
    let mut tampered = (**pk).clone();
    tampered.signed_prekey_id ^= 0x5555;
    let tampered_id = tampered.signed_prekey_id;
    let (r, u) = on_device(&mut bob2, |d| {
        d.decrypt(
            &a,
            &alice_id,
            &SessionMessage::PreKey(Box::new(tampered)),
            &mut rng,
        )
    });
    cat.row(
        "session",
        Kind::WrongKey,
        "prekey message naming an unknown signed prekey",
        r.map(|d| d.plaintext),
        SessionError::UnknownSignedPreKey(tampered_id),
        u,
    );
    bob2.open_envelope(&to_bob2, &mut rng).unwrap();
    bob2.delete_session(&a).unwrap();
    let (r, u) = on_device(&mut bob2, |d| d.open_envelope(&to_bob2, &mut rng));
    cat.row(
        "session",
        Kind::Replayed,
        "prekey message after its one-time prekey was spent",
        r,
        SessionError::UnknownOneTimePreKey(one_time),
        u,
    );

    // --- Profile tacit-v2 (PQXDH, section 15) ----------------------------
    // Carol starts sessions with bob.2, which now has one-time KEM prekeys.
    bob2.update_account(|a| a.generate_one_time_kem_prekeys(2, &mut rng))
        .unwrap();
    let v2_bundle = bob2.account().bundle(BundlePreKey::None).unwrap();
    assert_eq!(v2_bundle.version(), 2);
    let kem_prekey = v2_bundle.kem_prekey.clone().unwrap();
    assert!(bob2.account().has_one_time_kem_prekey(kem_prekey.id));
    let v2_wire = v2_bundle.to_wire();
    // Field 9 (tag 0x4a) is EncodeKEM(PQPK) = 0x0A || ek, 1569 bytes.
    let encoded = kem_prekey.key.to_encoded();
    let kem_field = field(0x4a, &encoded);
    let with_kem_key = |key: &[u8]| replace(&v2_wire, &kem_field, &field(0x4a, key));
    assert_eq!(
        PreKeyBundleMessage::from_wire(&with_kem_key(&encoded)).unwrap(),
        v2_bundle
    );
    cat.row(
        "wire",
        Kind::Truncated,
        "v2 bundle with a KEM key of 1568 bytes",
        PreKeyBundleMessage::from_wire(&with_kem_key(&encoded[..1568])),
        WireError::InvalidLength {
            field: "kem_prekey",
            expected: 1569,
            actual: 1568,
        },
        Unchanged::Stateless,
    );
    cat.row(
        "wire",
        Kind::Oversize,
        "v2 bundle with a KEM key of 1570 bytes",
        PreKeyBundleMessage::from_wire(&with_kem_key(&resized(&encoded, 1570))),
        WireError::InvalidLength {
            field: "kem_prekey",
            expected: 1569,
            actual: 1570,
        },
        Unchanged::Stateless,
    );
    let mut wrong_type = encoded.clone();
    wrong_type[0] = 0x05;
    cat.row(
        "wire",
        Kind::WrongKey,
        "v2 bundle with KEM key type byte 0x05",
        PreKeyBundleMessage::from_wire(&with_kem_key(&wrong_type)),
        WireError::InvalidKemKey {
            field: "kem_prekey",
            error: KemError::InvalidEncoding,
        },
        Unchanged::Stateless,
    );
    // The first 12-bit coefficient of ek becomes 0xfff >= q = 3329.
    let mut over_modulus = encoded.clone();
    over_modulus[1] = 0xff;
    over_modulus[2] |= 0x0f;
    cat.row(
        "wire",
        Kind::WrongKey,
        "v2 bundle with a KEM key failing the modulus check",
        PreKeyBundleMessage::from_wire(&with_kem_key(&over_modulus)),
        WireError::InvalidKemKey {
            field: "kem_prekey",
            error: KemError::InvalidPublicKey,
        },
        Unchanged::Stateless,
    );
    let kem_signature = kem_prekey.signature.to_bytes();
    cat.row(
        "wire",
        Kind::Truncated,
        "v2 bundle with a KEM signature of 63 bytes",
        PreKeyBundleMessage::from_wire(&replace(
            &v2_wire,
            &field(0x52, &kem_signature),
            &field(0x52, &kem_signature[..63]),
        )),
        WireError::InvalidLength {
            field: "kem_prekey_signature",
            expected: 64,
            actual: 63,
        },
        Unchanged::Stateless,
    );
    // The KEM prekey signed by Carol's identity key, not Bob's.
    let mut forged_bundle = v2_bundle.clone();
    forged_bundle.kem_prekey.as_mut().unwrap().signature =
        carol.account().identity().sign_kem_prekey(&kem_prekey.key);
    let (r, u) = on_device(&mut carol, |d| {
        d.process_bundle(&b2, &forged_bundle, &mut rng)
    });
    cat.row(
        "session",
        Kind::Forged,
        "v2 bundle whose KEM prekey another identity signed",
        r,
        SessionError::Pqxdh(PqxdhError::InvalidKemSignature),
        u,
    );
    // A classical first message to bob.2, which holds KEM prekeys.
    let v1_bundle = bob2
        .account()
        .bundle_with(BundlePreKey::None, KemPreKeyChoice::None)
        .unwrap();
    assert_eq!(v1_bundle.version(), 1);
    let classical = first_message(&mut carol, &bob2, &v1_bundle, &mut rng);
    assert_eq!(classical.version(), 1);
    let (r, u) = on_device(&mut bob2, |d| {
        d.decrypt(
            &c,
            &carol_id,
            &SessionMessage::PreKey(Box::new(classical)),
            &mut rng,
        )
    });
    cat.row(
        "session",
        Kind::WrongVersion,
        "v1 first message to a responder with KEM prekeys",
        r.map(|d| d.plaintext),
        SessionError::ClassicalPreKeyRefused,
        u,
    );
    // A version-2 first message: its wire form, then its KEM ciphertext
    // (field 8, tag 0x42, 1568 bytes) tampered with.
    let v2_first = first_message(&mut carol, &bob2, &v2_bundle, &mut rng);
    let (kem_id, ciphertext) = v2_first.kem.clone().unwrap();
    assert_eq!(kem_id, kem_prekey.id);
    let first_wire = v2_first.to_wire();
    let ct_field = field(0x42, ciphertext.as_bytes());
    let with_ciphertext = |ct: &[u8]| replace(&first_wire, &ct_field, &field(0x42, ct));
    cat.row(
        "wire",
        Kind::Truncated,
        "v2 prekey message with a KEM ciphertext of 1567 bytes",
        PreKeyMessage::from_wire(&with_ciphertext(&ciphertext.as_bytes()[..1567])),
        WireError::InvalidLength {
            field: "kem_ciphertext",
            expected: 1568,
            actual: 1567,
        },
        Unchanged::Stateless,
    );
    cat.row(
        "wire",
        Kind::Oversize,
        "v2 prekey message with a KEM ciphertext of 1569 bytes",
        PreKeyMessage::from_wire(&with_ciphertext(&resized(ciphertext.as_bytes(), 1569))),
        WireError::InvalidLength {
            field: "kem_ciphertext",
            expected: 1568,
            actual: 1569,
        },
        Unchanged::Stateless,
    );
    assert_eq!(&first_wire[..2], &[0x08, 0x02]);
    let mut as_v1 = first_wire.clone();
    as_v1[1] = 1;
    cat.row(
        "wire",
        Kind::WrongVersion,
        "v2 prekey message relabelled version 1, KEM fields kept",
        PreKeyMessage::from_wire(&as_v1),
        WireError::VersionMismatch,
        Unchanged::Stateless,
    );
    let mut flipped = *ciphertext.as_bytes();
    flipped[784] ^= 0x01;
    let tampered = PreKeyMessage {
        kem: Some((kem_id, KemCiphertext::try_from_slice(&flipped).unwrap())),
        ..v2_first.clone()
    };
    let (r, u) = on_device(&mut bob2, |d| {
        d.decrypt(
            &c,
            &carol_id,
            &SessionMessage::PreKey(Box::new(tampered)),
            &mut rng,
        )
    });
    assert!(bob2.account().has_one_time_kem_prekey(kem_id), "kept");
    cat.row(
        "session",
        Kind::Forged,
        "v2 prekey message with one KEM ciphertext bit flipped",
        r.map(|d| d.plaintext),
        SessionError::Decrypt(DecryptError::UnknownHeaderKey),
        u,
    );
    // The untampered message opens and spends the one-time KEM prekey; a
    // second first message naming it (another EK_A, from the same bundle
    // handed out twice) is refused.
    let v2_first = SessionMessage::PreKey(Box::new(v2_first));
    bob2.decrypt(&c, &carol_id, &v2_first, &mut rng).unwrap();
    assert!(!bob2.account().has_one_time_kem_prekey(kem_id), "spent");
    let reused = first_message(&mut carol, &bob2, &v2_bundle, &mut rng);
    assert_eq!(reused.kem.as_ref().unwrap().0, kem_id);
    let (r, u) = on_device(&mut bob2, |d| {
        d.decrypt(
            &c,
            &carol_id,
            &SessionMessage::PreKey(Box::new(reused)),
            &mut rng,
        )
    });
    cat.row(
        "session",
        Kind::Replayed,
        "second v2 first message naming a spent one-time KEM prekey",
        r.map(|d| d.plaintext),
        SessionError::UnknownKemPreKey(kem_id),
        u,
    );

    // --- Users and device lists -----------------------------------------
    // A ghost: a stranger's device registered as alice.7, on no list of
    // Alice's user key; its user key is Mallory's.
    let mallory_key = user_key("mallory");
    let mut ghost = device("alice", 7, &mut rng);
    let ghost_id = ghost.account().identity().public_key();
    let ghost_address = ghost.local_address().clone();
    let ghost_list = DeviceList::sign(&mallory_key, "alice", 9, &[(7, ghost_id, 0)]).unwrap();
    ghost.update_device_list(&ghost_list).unwrap();
    trust(&mut ghost, &lists[1..]);
    introduce(&mut ghost, &bob, BundlePreKey::None, &mut rng);
    let ghost_bundle = ghost.account().bundle(BundlePreKey::None).unwrap();
    let (r, u) = on_device(&mut bob, |d| {
        d.process_bundle(&ghost_address, &ghost_bundle, &mut rng)
    });
    cat.row(
        "users",
        Kind::Unlisted,
        "bundle of a device not on Alice's list",
        r,
        SessionError::DeviceNotListed(ghost_address.clone()),
        u,
    );
    let alice_key = user_key("alice").public_key();
    let mallory_conflict = |user: &str| {
        SessionError::UserKeyChanged(Box::new(UserKeyConflict {
            user_id: user.into(),
            trusted: alice_key,
            received: mallory_key.public_key(),
        }))
    };
    let (r, u) = on_device(&mut bob, |d| d.update_device_list(&ghost_list));
    cat.row(
        "users",
        Kind::Impersonation,
        "Alice's list (higher version) signed by Mallory's key",
        r,
        mallory_conflict("alice"),
        u,
    );
    let from_ghost = seal(&mut ghost, &bob, "it is alice", &mut rng);
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&from_ghost, &mut rng));
    cat.row(
        "users",
        Kind::Impersonation,
        "envelope as alice.7, certified by Mallory's key",
        r,
        mallory_conflict("alice"),
        u,
    );
    // The same envelope with a certificate claiming Alice's key, made by
    // Mallory's.
    let ghost_message = envelope::open(bob.account().identity(), &b, &from_ghost)
        .unwrap()
        .message;
    let forged_certificate = DeviceCertificate::issue(&mallory_key, &ghost_address, &ghost_id);
    let forged = envelope::sealed::seal(
        &envelope::sealed::Sender {
            identity: ghost.account().identity(),
            address: &ghost_address,
            user_key: &alice_key,
            certificate: &forged_certificate,
        },
        &bob.account().identity().public_key(),
        &b,
        &ghost_message,
        &mut rng,
    )
    .unwrap();
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&forged, &mut rng));
    cat.row(
        "users",
        Kind::Forged,
        "envelope with a certificate forged for Alice's key",
        r,
        SessionError::Envelope(EnvelopeError::InvalidSenderCertificate),
        u,
    );
    // A user Bob has no list for: the error names the envelope's user key.
    let dave_key = UserKeyPair::from_seed(&[0xda; 32]);
    let mut dave = device("dave", 1, &mut rng);
    let dave_list = DeviceList::sign(
        &dave_key,
        "dave",
        1,
        &[(1, dave.account().identity().public_key(), 0)],
    )
    .unwrap();
    dave.update_device_list(&dave_list).unwrap();
    trust(&mut dave, &lists[1..2]);
    introduce(&mut dave, &bob, BundlePreKey::None, &mut rng);
    let from_dave = seal(&mut dave, &bob, "hi, I am new", &mut rng);
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&from_dave, &mut rng));
    cat.row(
        "users",
        Kind::Unlisted,
        "envelope from a user with no trusted list",
        r,
        SessionError::UnknownUser(Box::new(UnknownUser {
            user_id: "dave".into(),
            user_key: Some(dave_key.public_key()),
        })),
        u,
    );
    // Alice removes her second device (list version 2); its envelopes and
    // the lists that come too late or disagree are refused.
    introduce(&mut alice2, &bob, BundlePreKey::None, &mut rng);
    let from_a2 = seal(&mut alice2, &bob, "before removal", &mut rng);
    bob.open_envelope(&from_a2, &mut rng).unwrap();
    let alice_v2 = list("alice", 2, &[(1, alice_id)]);
    bob.update_device_list(&alice_v2).unwrap();
    let from_removed = seal(&mut alice2, &bob, "after removal", &mut rng);
    let (r, u) = on_device(&mut bob, |d| d.open_envelope(&from_removed, &mut rng));
    cat.row(
        "users",
        Kind::Unlisted,
        "envelope from a device removed from Alice's list",
        r,
        SessionError::DeviceNotListed(a2.clone()),
        u,
    );
    let (r, u) = on_device(&mut bob, |d| d.update_device_list(&lists[0]));
    cat.row(
        "users",
        Kind::Stale,
        "Alice's list version 1 after version 2",
        r,
        SessionError::StaleDeviceList {
            user_id: "alice".into(),
            stored: 2,
            received: 1,
        },
        u,
    );
    let conflicting = list("alice", 2, &[(1, alice_id), (2, ghost_id)]);
    let (r, u) = on_device(&mut bob, |d| d.update_device_list(&conflicting));
    cat.row(
        "users",
        Kind::Stale,
        "another list of Alice's at the trusted version",
        r,
        SessionError::ConflictingDeviceList("alice".into()),
        u,
    );
    // Forged lists do not decode, so no session layer sees them.
    let wire = alice_v2.to_wire();
    let mut bad_signature = wire.clone();
    *bad_signature.last_mut().unwrap() ^= 1;
    cat.row(
        "device list",
        Kind::Forged,
        "Alice's list with a flipped signature bit",
        DeviceList::from_wire(&bad_signature),
        IdentityError::InvalidListSignature,
        Unchanged::Stateless,
    );
    cat.row(
        "device list",
        Kind::Forged,
        "Alice's list with another identity for alice.1",
        DeviceList::from_wire(&replace(&wire, &alice_id.to_bytes(), &ghost_id.to_bytes())),
        IdentityError::InvalidCertificate(1),
        Unchanged::Stateless,
    );

    group_state_rows(&mut cat, &mut rng);

    // --- Ratchet -------------------------------------------------------
    let (mut sender, mut receiver) = ratchet_pair(&mut rng, 4);
    let (mut stranger, _) = ratchet_pair(&mut rng, 4);
    let m: Vec<EncryptedMessage> = (0..8)
        .map(|i| {
            sender
                .encrypt(format!("r{i}").as_bytes(), &mut rng)
                .unwrap()
        })
        .collect();
    receiver.decrypt(&m[0], &mut rng).unwrap();
    cat.row(
        "ratchet",
        Kind::Truncated,
        "message bytes shorter than a header and a tag",
        EncryptedMessage::from_bytes(&m[1].to_bytes()[..40]),
        DecryptError::MessageTooShort,
        Unchanged::Stateless,
    );
    let short = EncryptedMessage::new(
        *m[1].encrypted_header(),
        m[1].ciphertext()[..m[1].ciphertext().len() - 1].to_vec(),
    )
    .unwrap();
    let (r, u) = on_ratchet(&mut receiver, |s| s.decrypt(&short, &mut rng));
    cat.row(
        "ratchet",
        Kind::Truncated,
        "ciphertext without its last byte",
        r,
        DecryptError::AuthenticationFailed,
        u,
    );
    let (r, u) = on_ratchet(&mut receiver, |s| s.decrypt(&m[0], &mut rng));
    cat.row(
        "ratchet",
        Kind::Replayed,
        "message decrypted twice",
        r,
        DecryptError::DuplicateMessage,
        u,
    );
    // m[7] needs keys for 6 skipped messages; max_skip is 4.
    let (r, u) = on_ratchet(&mut receiver, |s| s.decrypt(&m[7], &mut rng));
    cat.row(
        "ratchet",
        Kind::Reordered,
        "message 7 before 1..6 (max_skip 4)",
        r,
        DecryptError::TooManySkipped,
        u,
    );
    let (r, u) = on_ratchet(&mut stranger, |s| s.decrypt(&m[1], &mut rng));
    cat.row(
        "ratchet",
        Kind::CrossSession,
        "message of another session",
        r,
        DecryptError::UnknownHeaderKey,
        u,
    );

    // --- Group sender chains (PROTOCOL 16.5, 16.6) ----------------------
    let group_id = [0x47; 32];
    let old_state = [0x01; 32];
    let new_state = [0x02; 32];
    let alice_owner = Address::new("alice", 1).unwrap();
    let mut alice_chain = OutboundChain::new(group_id, old_state, &alice_owner, &mut rng);
    let mut chains = InboundChains::new();
    // Mallory, who holds Alice's chain, forwards its distribution before
    // Alice sends it: it names Alice, not Mallory, and is refused.
    let forwarded = InboundChain::from_distribution(
        &alice_chain.distribution(),
        &Address::new("mallory", 1).unwrap(),
        ChainConfig::new(4).unwrap(),
    );
    cat.row(
        "group chain",
        Kind::Impersonation,
        "another member's chain distribution, forwarded as the sender's own",
        forwarded,
        GroupDecryptError::ChainOwnerMismatch,
        Unchanged::Stateless,
    );
    chains.insert(
        InboundChain::from_distribution(
            &alice_chain.distribution(),
            &alice_owner,
            ChainConfig::new(4).unwrap(),
        )
        .unwrap(),
    );
    let text = |t: &str, rng: &mut ChaCha20Rng| {
        Content::new(ContentKind::Text, t.as_bytes().to_vec(), 1, rng).unwrap()
    };
    let g: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            alice_chain
                .encrypt(&text(&format!("g{i}"), &mut rng))
                .unwrap()
                .to_bytes()
        })
        .collect();
    chains.decrypt(&g[0]).unwrap();
    let on_chains = |c: &mut InboundChains, bytes: &[u8]| {
        let before = c.clone();
        let out = c.decrypt(bytes).map(|m| m.body().to_vec());
        let same = *c == before;
        (out, Unchanged::Checked(same))
    };
    let (r, u) = on_chains(&mut chains, &g[0]);
    cat.row(
        "group chain",
        Kind::Replayed,
        "group message decrypted twice",
        r,
        GroupDecryptError::DuplicateOrExpired,
        u,
    );
    let (r, u) = on_chains(&mut chains, &g[7]);
    cat.row(
        "group chain",
        Kind::Reordered,
        "iteration 7 before 1..6 (max_skip 4)",
        r,
        GroupDecryptError::TooManySkipped,
        u,
    );
    // A non-member makes its own chain for the group: nobody holds it.
    let mut outsider = OutboundChain::new(
        group_id,
        old_state,
        &Address::new("outsider", 1).unwrap(),
        &mut rng,
    );
    let foreign = outsider
        .encrypt(&text("let me in", &mut rng))
        .unwrap()
        .to_bytes();
    let (r, u) = on_chains(&mut chains, &foreign);
    cat.row(
        "group chain",
        Kind::CrossSession,
        "a non-member's message (chain not held)",
        r,
        GroupDecryptError::UnknownChain,
        u,
    );
    // The same message renamed as Alice's chain: Alice's key does not
    // verify it (a member forging another's message).
    let renamed = replace(
        &foreign,
        &outsider.signing_key().to_bytes(),
        &alice_chain.signing_key().to_bytes(),
    );
    let (r, u) = on_chains(&mut chains, &renamed);
    cat.row(
        "group chain",
        Kind::Forged,
        "message signed by another chain's key",
        r,
        GroupDecryptError::InvalidSignature,
        u,
    );
    let (r, u) = on_chains(&mut chains, &cut(&g[1]));
    cat.row(
        "group chain",
        Kind::Truncated,
        "group message without its last byte",
        r,
        GroupDecryptError::Wire(WireError::Malformed),
        u,
    );
    // After a change that removed the sender, its chain of the old state
    // is dropped: what it still sends there is refused.
    let mut after_change = chains.clone();
    after_change.retain_state(&group_id, &new_state);
    let (r, u) = on_chains(&mut after_change, &g[1]);
    cat.row(
        "group chain",
        Kind::Stale,
        "a removed member's chain of an older state",
        r,
        GroupDecryptError::UnknownChain,
        u,
    );
    assert_eq!(chains.decrypt(&g[1]).unwrap().body(), b"g1");

    // --- Serialized state: ratchet, session record, account ------------
    let state = receiver.to_bytes().to_vec();
    let record = bob.store_record(&a);
    let account = bob.account().to_bytes().to_vec();
    type Reader = fn(&[u8]) -> Result<(), StateError>;
    let inbound_record = chains
        .get(&group_id, &alice_chain.signing_key().to_bytes())
        .unwrap()
        .to_bytes()
        .to_vec();
    let outbound_record = alice_chain.to_bytes().to_vec();
    let readers: [(&'static str, &[u8], Reader); 5] = [
        ("ratchet state", &state, |b| {
            Ratchet::from_bytes(b).map(drop)
        }),
        ("session record", &record, |b| {
            SessionRecord::from_bytes(b).map(drop)
        }),
        ("account record", &account, |b| {
            Account::from_bytes(b).map(drop)
        }),
        ("inbound chain", &inbound_record, |b| {
            InboundChain::from_bytes(b).map(drop)
        }),
        ("outbound chain", &outbound_record, |b| {
            OutboundChain::from_bytes(b).map(drop)
        }),
    ];
    for (layer, bytes, read) in readers {
        assert!(read(bytes).is_ok(), "{layer} round trips");
        cat.row(
            layer,
            Kind::Truncated,
            "empty",
            read(&[]),
            StateError::Empty,
            Unchanged::Stateless,
        );
        cat.row(
            layer,
            Kind::Truncated,
            "without its last byte",
            read(&cut(bytes)),
            StateError::Corrupt,
            Unchanged::Stateless,
        );
        cat.row(
            layer,
            Kind::Oversize,
            "with a trailing byte",
            read(&[bytes, &[0]].concat()),
            StateError::Corrupt,
            Unchanged::Stateless,
        );
        // Ratchet and session records and accounts are at version 2 (and
        // read version 1), chain records at 1; 3 is none of them.
        let mut v3 = bytes.to_vec();
        v3[0] = 3;
        cat.row(
            layer,
            Kind::WrongVersion,
            "version byte 3",
            read(&v3),
            StateError::UnknownVersion(3),
            Unchanged::Stateless,
        );
    }

    // The multi-recipient envelope (16.7): a group message sealed once for
    // Bob's two devices and Carol's. Opening holds no state.
    {
        let layer = "group envelope";
        let members = [&bob, &bob2, &carol];
        let recipients: Vec<(Address, tacit::keys::IdentityKey)> = members
            .iter()
            .map(|d| {
                (
                    d.local_address().clone(),
                    d.account().identity().public_key(),
                )
            })
            .collect();
        let sealed = multi::seal(b"group message", &recipients, &mut rng).unwrap();
        let envelope = |i: usize| {
            sealed
                .shared
                .envelope_for(&sealed.parts[i].wrapped_key)
                .to_bytes()
        };
        let open = |d: &Device, bytes: &[u8]| {
            multi::open(d.account().identity(), d.local_address(), bytes)
        };
        assert_eq!(open(&bob, &envelope(0)).unwrap(), b"group message");
        let too_many: Vec<(Address, tacit::keys::IdentityKey)> = (0..=multi::MAX_RECIPIENTS)
            .map(|i| (Address::new(&format!("m{i}"), 1).unwrap(), alice_id))
            .collect();
        cat.row(
            layer,
            Kind::Oversize,
            "sealed to 1001 recipient devices",
            multi::seal(b"m", &too_many, &mut rng).map(|_| ()),
            MultiError::TooManyRecipients {
                count: multi::MAX_RECIPIENTS + 1,
                max: multi::MAX_RECIPIENTS,
            },
            Unchanged::Stateless,
        );
        let mut tampered = envelope(0);
        tampered[40] ^= 1;
        cat.row(
            layer,
            Kind::WrongKey,
            "wrapped key with one bit flipped",
            open(&bob, &tampered),
            MultiError::DoesNotOpen,
            Unchanged::Stateless,
        );
        cat.row(
            layer,
            Kind::WrongRecipient,
            "Bob's part opened by Bob's other device",
            open(&bob2, &envelope(0)),
            MultiError::DoesNotOpen,
            Unchanged::Stateless,
        );
        let mut small = envelope(2);
        small[4..36].fill(0);
        cat.row(
            layer,
            Kind::WrongKey,
            "ephemeral key of small order (zero)",
            open(&carol, &small),
            MultiError::InvalidEphemeralKey,
            Unchanged::Stateless,
        );
        cat.row(
            layer,
            Kind::Truncated,
            "without its last byte",
            open(&carol, &cut(&envelope(2))),
            MultiError::Malformed(WireError::Malformed),
            Unchanged::Stateless,
        );
        let mut v2 = envelope(2);
        v2[1] = 2;
        cat.row(
            layer,
            Kind::WrongVersion,
            "version 2",
            open(&carol, &v2),
            MultiError::Malformed(WireError::UnknownVersion(2)),
            Unchanged::Stateless,
        );
    }

    // Nothing refused above changed the conversation: Bob still reads
    // Alice's waiting messages in order, and Alice reads Bob's reply.
    for (i, e) in ratchet.iter().enumerate().skip(1) {
        let got = bob.open_envelope(e, &mut rng).unwrap();
        assert_eq!(got.content.body(), format!("m{i}").as_bytes());
    }
    let back = seal(&mut bob, &alice, "still here", &mut rng);
    assert_eq!(
        alice.open_envelope(&back, &mut rng).unwrap().content.body(),
        b"still here"
    );

    cat.finish();
}

/// A member's group record, by value, and whether `f` left it unchanged.
fn on_group<T>(g: &mut Group, f: impl FnOnce(&mut Group) -> T) -> (T, Unchanged) {
    let before = g.to_bytes();
    let out = f(g);
    (out, Unchanged::Checked(g.to_bytes() == before))
}

/// Signed group states (`docs/PROTOCOL.md` 16.2, 16.3): Alice (admin) and
/// Bob (member) in a group; each row is applied to Bob's record.
fn group_state_rows(cat: &mut Catalogue, rng: &mut ChaCha20Rng) {
    struct Member {
        key: UserKeyPair,
        device: IdentityKeyPair,
        address: Address,
        certificate: DeviceCertificate,
    }
    let member = |name: &str, key: UserKeyPair, rng: &mut ChaCha20Rng| {
        let device = IdentityKeyPair::generate(rng);
        let address = Address::new(name, 1).unwrap();
        let certificate = DeviceCertificate::issue(&key, &address, &device.public_key());
        Member {
            key,
            device,
            address,
            certificate,
        }
    };
    let alice = member("alice", UserKeyPair::generate(rng), rng);
    let bob = member("bob", UserKeyPair::generate(rng), rng);
    let carol = member("carol", UserKeyPair::generate(rng), rng);
    fn signer(m: &Member) -> GroupSigner<'_> {
        GroupSigner::new(&m.device, &m.address, m.certificate)
    }
    let as_member =
        |m: &Member, role| GroupMember::new(m.address.user_id(), m.key.public_key(), role);
    let mut group = Group::create(
        GroupId::generate(rng),
        "hostile",
        vec![
            as_member(&alice, Role::Admin),
            as_member(&bob, Role::Member),
        ],
        &signer(&alice),
    )
    .unwrap();
    let first = group.current().clone();
    let mut bob_group = Group::join(
        "bob",
        &bob.key.public_key(),
        std::slice::from_ref(&first),
        &alice.address,
        &alice.device.public_key(),
    )
    .unwrap();
    let add_carol = [GroupChange::Add(as_member(&carol, Role::Member))];
    let real = group.propose(&add_carol, &signer(&alice)).unwrap();
    let wire = real.to_wire();

    cat.row(
        "group state",
        Kind::Truncated,
        "signed state without its last byte",
        SignedGroupState::from_wire(&cut(&wire)),
        GroupStateError::Wire(WireError::Malformed),
        Unchanged::Stateless,
    );
    cat.row(
        "group state",
        Kind::Oversize,
        "signed state of MAX_SIGNED_GROUP_STATE_LEN + 1 bytes",
        SignedGroupState::from_wire(&vec![0; MAX_SIGNED_GROUP_STATE_LEN + 1]),
        GroupStateError::Wire(WireError::Oversize {
            len: MAX_SIGNED_GROUP_STATE_LEN + 1,
            max: MAX_SIGNED_GROUP_STATE_LEN,
        }),
        Unchanged::Stateless,
    );
    cat.row(
        "group state",
        Kind::WrongVersion,
        "signed state of version 3",
        SignedGroupState::from_wire(&with_version_3(&wire, 0)),
        GroupStateError::Wire(WireError::UnknownVersion(3)),
        Unchanged::Stateless,
    );
    let mut flipped = wire.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let flipped = SignedGroupState::from_wire(&flipped).unwrap();
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&flipped));
    cat.row(
        "group state",
        Kind::Forged,
        "Alice's change with a flipped signature bit",
        r,
        GroupStateError::InvalidSignature,
        u,
    );
    // Alice's device certified by another user key.
    let mallory = UserKeyPair::generate(rng);
    let impostor = Member {
        certificate: DeviceCertificate::issue(&mallory, &alice.address, &alice.device.public_key()),
        key: mallory,
        device: alice.device.clone(),
        address: alice.address.clone(),
    };
    let by_impostor = SignedGroupState::sign(real.state().clone(), &signer(&impostor));
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&by_impostor));
    cat.row(
        "group state",
        Kind::Forged,
        "Alice's change, her device certified by another user key",
        r,
        GroupStateError::InvalidCertificate,
        u,
    );
    let by_carol = SignedGroupState::sign(real.state().clone(), &signer(&carol));
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&by_carol));
    cat.row(
        "group state",
        Kind::Unlisted,
        "a change signed by a non-member (Carol)",
        r,
        GroupStateError::SignerNotMember("carol".into()),
        u,
    );
    let by_bob = SignedGroupState::sign(real.state().clone(), &signer(&bob));
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&by_bob));
    cat.row(
        "group state",
        Kind::Impersonation,
        "a plain member (Bob) adding a user",
        r,
        GroupStateError::Unauthorised,
        u,
    );
    bob_group.apply(&real).unwrap();
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&real));
    cat.row(
        "group state",
        Kind::Replayed,
        "Alice's change applied twice",
        r,
        GroupStateError::AlreadyApplied,
        u,
    );
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&first));
    cat.row(
        "group state",
        Kind::Replayed,
        "the group's first state again",
        r,
        GroupStateError::AlreadyApplied,
        u,
    );
    // Bob moves on by MAX_STATE_HISTORY states; then a change Alice made
    // on the first state arrives (the parent no longer held).
    group.apply(&real).unwrap();
    let late = Group::join(
        "bob",
        &bob.key.public_key(),
        std::slice::from_ref(&first),
        &alice.address,
        &alice.device.public_key(),
    )
    .unwrap()
    .propose(&[GroupChange::Retitle("late".into())], &signer(&alice))
    .unwrap();
    for i in 0..MAX_STATE_HISTORY {
        let next = group
            .propose(&[GroupChange::Retitle(format!("t{i}"))], &signer(&alice))
            .unwrap();
        group.apply(&next).unwrap();
        bob_group.apply(&next).unwrap();
    }
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&late));
    cat.row(
        "group state",
        Kind::Stale,
        "a change of epoch 1 after 9 more (8 states kept)",
        r,
        GroupStateError::Stale {
            epoch: 1,
            oldest: 2,
        },
        u,
    );
    let mut other_group = Group::create(
        GroupId::generate(rng),
        "other",
        vec![
            as_member(&alice, Role::Admin),
            as_member(&bob, Role::Member),
        ],
        &signer(&alice),
    )
    .unwrap();
    let other = other_group
        .propose(&[GroupChange::Retitle("x".into())], &signer(&alice))
        .unwrap();
    other_group.apply(&other).unwrap();
    let (r, u) = on_group(&mut bob_group, |g| g.apply(&other));
    cat.row(
        "group state",
        Kind::CrossSession,
        "a state of another group with the same members",
        r,
        GroupStateError::WrongGroup,
        u,
    );
    // Carol is sent `[parent, new]` whose parent is a first state "signed"
    // by Bob, a plain member of it: not a valid first state.
    let forged_first = SignedGroupState::sign(first.state().clone(), &signer(&bob));
    let mut adding = first.state().members().to_vec();
    adding.push(as_member(&carol, Role::Member));
    tacit::group::GroupState::sort_members(&mut adding);
    let forged_add = SignedGroupState::sign(
        tacit::group::GroupState::new(
            first.state().group_id(),
            1,
            Some(forged_first.hash()),
            "hostile".into(),
            adding,
        )
        .unwrap(),
        &signer(&alice),
    );
    cat.row(
        "group state",
        Kind::Forged,
        "a join whose parent is a first state signed by a plain member",
        Group::join(
            "carol",
            &carol.key.public_key(),
            &[forged_first, forged_add],
            &alice.address,
            &alice.device.public_key(),
        ),
        GroupStateError::Unauthorised,
        Unchanged::Stateless,
    );
}

/// A ratchet pair from X3DH, both sides with `max_skip`.
fn ratchet_pair(rng: &mut ChaCha20Rng, max_skip: u32) -> (Ratchet, Ratchet) {
    let config = RatchetConfig::default().with_max_skip(max_skip).unwrap();
    let a = IdentityKeyPair::generate(rng);
    let b = IdentityKeyPair::generate(rng);
    let spk = KeyPair::generate(rng);
    let bundle = PreKeyBundle {
        identity_key: b.public_key(),
        signed_prekey: spk.public_key(),
        signed_prekey_signature: b.sign_prekey(&spk.public_key()),
        one_time_prekey: None,
        kem_prekey: None,
    };
    let init = x3dh::initiate(&a, &bundle, rng).unwrap();
    let sender = Ratchet::new_initiator(
        init.agreement.session_keys(),
        &bundle.signed_prekey,
        config,
        rng,
    )
    .unwrap();
    let agreement = x3dh::respond(&b, &spk, None, &a.public_key(), &init.ephemeral_key).unwrap();
    let receiver = Ratchet::new_responder(agreement.session_keys(), spk, config);
    (sender, receiver)
}

trait StoreRecord {
    fn store_record(&self, peer: &Address) -> Vec<u8>;
}

impl StoreRecord for Device {
    fn store_record(&self, peer: &Address) -> Vec<u8> {
        use tacit::store::SessionStore;
        self.store()
            .load_session(peer)
            .unwrap()
            .unwrap()
            .to_bytes()
            .to_vec()
    }
}
