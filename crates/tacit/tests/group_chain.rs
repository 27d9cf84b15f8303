#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Sender chains and group messages (`docs/PROTOCOL.md` 16.5, 16.6): round
//! trips, order, the skipped-key bounds, every refusal with the chain
//! unchanged byte for byte, forward secrecy, and a known-answer test of the
//! key schedule computed here with the RustCrypto crates.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ed25519_dalek::{Signer, SigningKey};
use hmac::Mac;
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{Content, ContentKind};
use tacit::error::{ConfigError, GroupDecryptError, StateError, WireError};
use tacit::group::{
    ChainConfig, GroupMessage, InboundChain, InboundChains, OutboundChain, SenderChainDistribution,
    MAX_STORED_CHAIN_KEYS,
};
use tacit::Address;

const GROUP: [u8; 32] = [0x61; 32];
const STATE: [u8; 32] = [0x73; 32];
const SEED: [u8; 32] = [0x5e; 32];
const CK0: [u8; 32] = [0xc0; 32];

/// `RA` of the chains' owner, alice.1: `u8(5) || "alice" || u32be(1)`.
const OWNER_RA: [u8; 10] = [5, b'a', b'l', b'i', b'c', b'e', 0, 0, 0, 1];
/// The length of `RA` in the records below.
const RA: usize = OWNER_RA.len();

fn alice() -> Address {
    Address::new("alice", 1).unwrap()
}

fn mallory() -> Address {
    Address::new("mallory", 1).unwrap()
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

// ---- the key schedule, computed independently ----

fn hmac(key: &[u8; 32], byte: u8) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap();
    mac.update(&[byte]);
    mac.finalize().into_bytes().into()
}

/// `CK_i` from `CK_0`.
fn chain_key(i: u32) -> [u8; 32] {
    let mut ck = CK0;
    for _ in 0..i {
        ck = hmac(&ck, 0x02);
    }
    ck
}

/// `K || N` of iteration `i`.
fn message_keys(i: u32) -> ([u8; 32], [u8; 12]) {
    let mk = hmac(&chain_key(i), 0x01);
    let mut okm = [0u8; 44];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), &mk)
        .expand(b"tacit/group/message/v1", &mut okm)
        .unwrap();
    (okm[..32].try_into().unwrap(), okm[32..].try_into().unwrap())
}

fn ad(state: &[u8; 32], signing_key: &[u8; 32], i: u32) -> Vec<u8> {
    [&GROUP[..], state, signing_key, &i.to_be_bytes()].concat()
}

/// The outbound record of a chain at iteration `i` (16.5, Records).
fn outbound_record(state: &[u8; 32], seed: &[u8; 32], i: u32) -> Vec<u8> {
    let mut r = vec![2u8, 1];
    r.extend_from_slice(&GROUP);
    r.extend_from_slice(state);
    r.extend_from_slice(&OWNER_RA);
    r.extend_from_slice(seed);
    let mut v = i;
    while v >= 0x80 {
        r.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    r.push(v as u8);
    r.extend_from_slice(&chain_key(i));
    r
}

/// The chain of `SEED` and `CK0`, at iteration `i`.
fn sender_at(i: u32) -> OutboundChain {
    OutboundChain::from_bytes(&outbound_record(&STATE, &SEED, i)).unwrap()
}

fn receiver(config: ChainConfig) -> InboundChain {
    InboundChain::from_distribution(&sender_at(0).distribution(), &alice(), config).unwrap()
}

fn content(text: &str, rng: &mut ChaCha20Rng) -> Content {
    Content::new(ContentKind::Text, text.as_bytes().to_vec(), 7, rng).unwrap()
}

fn message_at(i: u32, text: &str) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(i));
    sender_at(i)
        .encrypt(&content(text, &mut rng))
        .unwrap()
        .to_bytes()
}

/// Fields of a message built by hand, so that each can be wrong on its own.
#[derive(Clone, PartialEq, prost::Message)]
struct RawMessage {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    group_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    state_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    signing_key: Vec<u8>,
    #[prost(uint32, tag = "5")]
    iteration: u32,
    #[prost(bytes = "vec", tag = "6")]
    ciphertext: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    signature: Vec<u8>,
}

/// A message whose every input is chosen: the ciphertext of `padded`
/// under the keys of `key_iteration` with the AD of `ad_iteration`, named
/// `named_key`, at `iteration`, signed by `signer`.
struct Forge<'a> {
    padded: &'a [u8],
    key_iteration: u32,
    ad_iteration: u32,
    iteration: u32,
    named_key: [u8; 32],
    signer: &'a SigningKey,
}

impl Forge<'_> {
    fn build(&self) -> Vec<u8> {
        let (k, n) = message_keys(self.key_iteration);
        let mut ct = self.padded.to_vec();
        let tag = ChaCha20Poly1305::new(&k.into())
            .encrypt_in_place_detached(
                &n.into(),
                &ad(&STATE, &self.named_key, self.ad_iteration),
                &mut ct,
            )
            .unwrap();
        ct.extend_from_slice(&tag);
        let mut m = RawMessage {
            version: 1,
            group_id: GROUP.to_vec(),
            state_hash: STATE.to_vec(),
            signing_key: self.named_key.to_vec(),
            iteration: self.iteration,
            ciphertext: ct,
            signature: Vec::new(),
        };
        let body = m.encode_to_vec();
        m.signature = self.signer.sign(&signed_bytes(&body)).to_bytes().to_vec();
        m.encode_to_vec()
    }
}

/// What a chain signs: the context, then SHA-256 of the encoding without
/// field 7.
fn signed_bytes(body: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    [
        &b"tacit/group/v1/message"[..],
        &sha2::Sha256::digest(body)[..],
    ]
    .concat()
}

fn chain_key_of_sender() -> [u8; 32] {
    SigningKey::from_bytes(&SEED).verifying_key().to_bytes()
}

/// Decrypting `bytes` fails with `expected` and leaves the record as it was.
fn refused(chain: &mut InboundChain, bytes: &[u8], expected: GroupDecryptError) {
    let before = chain.to_bytes();
    assert_eq!(
        chain.decrypt(bytes).map(|c| c.body().to_vec()),
        Err(expected)
    );
    assert_eq!(*chain.to_bytes(), *before, "the chain changed on a refusal");
}

fn body(chain: &mut InboundChain, bytes: &[u8]) -> String {
    String::from_utf8(chain.decrypt(bytes).unwrap().body().to_vec()).unwrap()
}

// ---- tests ----

#[test]
fn known_answer_of_the_key_schedule_and_signature() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut sender = sender_at(0);
    for i in 0..3u32 {
        let c = content(&format!("kat {i}"), &mut rng);
        let message = sender.encrypt(&c).unwrap();
        assert_eq!(message.iteration(), i);
        assert_eq!(message.signing_key(), &chain_key_of_sender());
        // The ciphertext opens under the keys computed here.
        let (k, n) = message_keys(i);
        let (sealed, tag) = message
            .ciphertext()
            .split_at(message.ciphertext().len() - 16);
        let mut pt = sealed.to_vec();
        ChaCha20Poly1305::new(&k.into())
            .decrypt_in_place_detached(
                &n.into(),
                &ad(&STATE, &chain_key_of_sender(), i),
                &mut pt,
                tag.into(),
            )
            .unwrap();
        assert_eq!(pt, c.to_padded().unwrap());
        // The signature covers the context and the SHA-256 hash of the
        // encoding without field 7.
        let bytes = message.to_bytes();
        let body = &bytes[..bytes.len() - 66];
        let vk = SigningKey::from_bytes(&SEED).verifying_key();
        let sig = ed25519_dalek::Signature::from_bytes(&message.signature().to_bytes());
        vk.verify_strict(&signed_bytes(body), &sig).unwrap();
        // A hand-built message of the same inputs is the same bytes.
        let forged = Forge {
            padded: &c.to_padded().unwrap(),
            key_iteration: i,
            ad_iteration: i,
            iteration: i,
            named_key: chain_key_of_sender(),
            signer: &SigningKey::from_bytes(&SEED),
        };
        assert_eq!(forged.build(), bytes);
    }
    // The record holds CK_3 and iteration 3.
    assert_eq!(*sender.to_bytes(), outbound_record(&STATE, &SEED, 3));
}

#[test]
fn round_trip_to_several_receivers_and_records() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut sender = OutboundChain::new(GROUP, STATE, &alice(), &mut rng);
    let mut bob =
        InboundChain::from_distribution(&sender.distribution(), &alice(), ChainConfig::default())
            .unwrap();
    let mut carol = bob.clone();
    for i in 0..5 {
        let text = format!("hello {i}");
        let m = sender
            .encrypt(&content(&text, &mut rng))
            .unwrap()
            .to_bytes();
        assert_eq!(body(&mut bob, &m), text);
        assert_eq!(body(&mut carol, &m), text);
        // Records read back to the same chains.
        let record = bob.to_bytes();
        assert_eq!(record.len(), record.capacity());
        bob = InboundChain::from_bytes(&record).unwrap();
        sender = OutboundChain::from_bytes(&sender.to_bytes()).unwrap();
    }
    assert_eq!(bob, carol);
    assert_eq!(sender.iteration(), 5);
    assert_eq!(bob.next_iteration(), 5);
}

#[test]
fn distribution_codec_and_a_late_joiner() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut sender = OutboundChain::new(GROUP, STATE, &alice(), &mut rng);
    let early = sender
        .encrypt(&content("before", &mut rng))
        .unwrap()
        .to_bytes();
    let d = sender.distribution();
    let bytes = d.to_bytes();
    assert_eq!(bytes.len(), bytes.capacity());
    let back = SenderChainDistribution::from_bytes(&bytes).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.iteration(), 1);
    let mut late =
        InboundChain::from_distribution(&back, &alice(), ChainConfig::default()).unwrap();
    assert_eq!(late.owner(), &alice());
    refused(&mut late, &early, GroupDecryptError::DuplicateOrExpired);
    let m = sender
        .encrypt(&content("after", &mut rng))
        .unwrap()
        .to_bytes();
    assert_eq!(body(&mut late, &m), "after");
    // Strict decoding: a trailing byte, a short key, iteration 2^32 - 1.
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert!(SenderChainDistribution::from_bytes(&trailing).is_err());
    assert_eq!(
        SenderChainDistribution::from_bytes(&[0x08, 0x02]),
        Err(WireError::UnknownVersion(2))
    );
}

#[test]
fn out_of_order_delivery() {
    let mut bob = receiver(ChainConfig::default());
    let messages: Vec<Vec<u8>> = (0..6).map(|i| message_at(i, &format!("m{i}"))).collect();
    for i in [4usize, 1, 0, 3, 2, 5] {
        assert_eq!(body(&mut bob, &messages[i]), format!("m{i}"));
    }
    assert_eq!(bob.stored_iterations().count(), 0);
    assert_eq!(bob.next_iteration(), 6);
    for m in &messages {
        refused(&mut bob, m, GroupDecryptError::DuplicateOrExpired);
    }
}

#[test]
fn duplicates_are_refused_and_stored_keys_used_once() {
    let mut bob = receiver(ChainConfig::default());
    let m0 = message_at(0, "zero");
    let m2 = message_at(2, "two");
    assert_eq!(body(&mut bob, &m2), "two");
    assert_eq!(bob.stored_iterations().collect::<Vec<_>>(), vec![0, 1]);
    refused(&mut bob, &m2, GroupDecryptError::DuplicateOrExpired);
    assert_eq!(body(&mut bob, &m0), "zero");
    assert_eq!(bob.stored_iterations().collect::<Vec<_>>(), vec![1]);
    refused(&mut bob, &m0, GroupDecryptError::DuplicateOrExpired);
}

#[test]
fn max_skip_bounds_a_jump_and_is_configurable() {
    let mut bob = receiver(ChainConfig::default());
    refused(
        &mut bob,
        &message_at(1001, "far"),
        GroupDecryptError::TooManySkipped,
    );
    assert_eq!(body(&mut bob, &message_at(1000, "just")), "just");
    assert_eq!(bob.stored_iterations().count(), 1000);

    assert_eq!(
        ChainConfig::new(25_001),
        Err(ConfigError::MaxSkipTooLarge(25_001))
    );
    let mut tight = receiver(ChainConfig::new(3).unwrap());
    refused(
        &mut tight,
        &message_at(4, "x"),
        GroupDecryptError::TooManySkipped,
    );
    assert_eq!(body(&mut tight, &message_at(3, "y")), "y");
    refused(
        &mut tight,
        &message_at(8, "z"),
        GroupDecryptError::TooManySkipped,
    );
    assert_eq!(body(&mut tight, &message_at(7, "w")), "w");
}

#[test]
fn stored_keys_are_capped_oldest_evicted_first() {
    let mut bob = receiver(ChainConfig::new(25_000).unwrap());
    let far = MAX_STORED_CHAIN_KEYS as u32 + 100;
    assert_eq!(body(&mut bob, &message_at(far, "far")), "far");
    let stored: Vec<u32> = bob.stored_iterations().collect();
    assert_eq!(stored.len(), MAX_STORED_CHAIN_KEYS);
    assert_eq!(stored.first(), Some(&100));
    assert_eq!(stored.last(), Some(&(far - 1)));
    refused(
        &mut bob,
        &message_at(99, "gone"),
        GroupDecryptError::DuplicateOrExpired,
    );
    assert_eq!(body(&mut bob, &message_at(100, "kept")), "kept");
    // 100 was used (1999 left); four more skipped keys evict the three
    // oldest left (101..=103).
    assert_eq!(body(&mut bob, &message_at(far + 5, "next")), "next");
    assert_eq!(bob.stored_iterations().count(), MAX_STORED_CHAIN_KEYS);
    refused(
        &mut bob,
        &message_at(103, "gone"),
        GroupDecryptError::DuplicateOrExpired,
    );
    assert_eq!(body(&mut bob, &message_at(104, "kept")), "kept");
    assert_eq!(body(&mut bob, &message_at(far + 1, "new")), "new");
    // The full record reads back to the same chain.
    assert_eq!(InboundChain::from_bytes(&bob.to_bytes()).unwrap(), bob);
}

#[test]
fn a_signature_by_another_chain_is_refused_before_any_key_use() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let padded = content("forged", &mut rng).to_padded().unwrap();
    let mallory = SigningKey::from_bytes(&[0x4d; 32]);
    let alice = SigningKey::from_bytes(&SEED);
    let forge = |iteration: u32, signer: &SigningKey| {
        Forge {
            padded: &padded,
            key_iteration: iteration,
            ad_iteration: iteration,
            iteration,
            named_key: chain_key_of_sender(),
            signer,
        }
        .build()
    };
    let mut bob = receiver(ChainConfig::default());
    assert_eq!(body(&mut bob, &message_at(0, "first")), "first");
    // Correct keys, Alice's name, Mallory's signature: at a fresh
    // iteration, at a used one, and beyond max_skip, the signature is what
    // refuses them.
    for iteration in [1, 0, 5000] {
        refused(
            &mut bob,
            &forge(iteration, &mallory),
            GroupDecryptError::InvalidSignature,
        );
    }
    // Control: the same bytes signed by Alice's key are accepted.
    assert_eq!(body(&mut bob, &forge(1, &alice)), "forged");
    // Mallory's own chain named as Mallory: no such chain is held.
    let own = Forge {
        padded: &padded,
        key_iteration: 2,
        ad_iteration: 2,
        iteration: 2,
        named_key: mallory.verifying_key().to_bytes(),
        signer: &mallory,
    }
    .build();
    refused(&mut bob, &own, GroupDecryptError::UnknownChain);
}

#[test]
fn tampering_is_refused_and_the_ad_binds_the_iteration() {
    let mut bob = receiver(ChainConfig::default());
    let m = message_at(0, "intact");
    // Any changed byte (ciphertext, iteration, state hash, group id, key,
    // signature) is refused, the chain unchanged.
    for at in 0..m.len() {
        let mut t = m.clone();
        t[at] ^= 0x01;
        let before = bob.to_bytes();
        assert!(bob.decrypt(&t).is_err(), "byte {at} changed and accepted");
        assert_eq!(*bob.to_bytes(), *before);
    }
    // Signed by the chain, but sealed with the AD of another iteration or
    // under another iteration's key: the AEAD refuses it.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let padded = content("moved", &mut rng).to_padded().unwrap();
    let alice = SigningKey::from_bytes(&SEED);
    for (key_iteration, ad_iteration) in [(0, 1), (1, 0)] {
        let f = Forge {
            padded: &padded,
            key_iteration,
            ad_iteration,
            iteration: 0,
            named_key: chain_key_of_sender(),
            signer: &alice,
        };
        refused(
            &mut bob,
            &f.build(),
            GroupDecryptError::AuthenticationFailed,
        );
    }
    // Authentic but not a padded content: refused after the AEAD.
    let f = Forge {
        padded: &[0u8; 160],
        key_iteration: 0,
        ad_iteration: 0,
        iteration: 0,
        named_key: chain_key_of_sender(),
        signer: &alice,
    };
    assert!(matches!(
        bob.decrypt(&f.build()),
        Err(GroupDecryptError::Content(_))
    ));
    assert_eq!(body(&mut bob, &m), "intact");
}

#[test]
fn unknown_chains_and_other_states() {
    let mut chains = InboundChains::new();
    let m = message_at(0, "hi");
    let before = chains.clone();
    assert_eq!(
        chains.decrypt(&m).map(|c| c.body().to_vec()),
        Err(GroupDecryptError::UnknownChain)
    );
    assert_eq!(chains, before);
    assert!(chains.insert(receiver(ChainConfig::default())));
    // The same chain again (a distribution replayed) is not taken.
    let m1 = message_at(1, "one");
    assert_eq!(chains.decrypt(&m1).unwrap().body(), b"one");
    assert!(!chains.insert(receiver(ChainConfig::default())));
    assert_eq!(
        chains.decrypt(&m1).map(|c| c.body().to_vec()),
        Err(GroupDecryptError::DuplicateOrExpired)
    );
    // The same signing key in another state: WrongState.
    let other_state = [0x99; 32];
    let mut other = OutboundChain::from_bytes(&outbound_record(&other_state, &SEED, 2)).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let wrong = other.encrypt(&content("x", &mut rng)).unwrap().to_bytes();
    let before = chains.clone();
    assert_eq!(
        chains.decrypt(&wrong).map(|c| c.body().to_vec()),
        Err(GroupDecryptError::WrongState)
    );
    assert_eq!(chains, before);
    // After a change, the chains of the old state are dropped.
    chains.retain_state(&GROUP, &other_state);
    assert!(chains.is_empty());
    assert_eq!(
        chains
            .decrypt(&message_at(3, "late"))
            .map(|c| c.body().to_vec()),
        Err(GroupDecryptError::UnknownChain)
    );
}

#[test]
fn a_captured_chain_does_not_read_earlier_messages() {
    let mut bob = receiver(ChainConfig::default());
    let messages: Vec<Vec<u8>> = (0..4).map(|i| message_at(i, &format!("m{i}"))).collect();
    for m in &messages[..3] {
        body(&mut bob, m);
    }
    let captured = bob.to_bytes();
    let mut thief = InboundChain::from_bytes(&captured).unwrap();
    for m in &messages[..3] {
        refused(&mut thief, m, GroupDecryptError::DuplicateOrExpired);
    }
    assert_eq!(body(&mut thief, &messages[3]), "m3");
    // The record holds none of the earlier chain or message keys.
    for i in 0..3 {
        for secret in [chain_key(i), hmac(&chain_key(i), 0x01)] {
            assert!(
                !captured.windows(32).any(|w| w == secret),
                "key of iteration {i} kept"
            );
        }
    }
    assert!(captured.windows(32).any(|w| w == chain_key(3)));
}

#[test]
fn records_are_read_strictly() {
    let mut bob = receiver(ChainConfig::default());
    body(&mut bob, &message_at(3, "three"));
    let record = bob.to_bytes().to_vec();
    assert_eq!(InboundChain::from_bytes(&[]), Err(StateError::Empty));
    // Version 1 records, which do not name the owner, are refused.
    let mut v = record.clone();
    v[0] = 1;
    assert_eq!(
        InboundChain::from_bytes(&v),
        Err(StateError::UnknownVersion(1))
    );
    let mut v = sender_at(0).to_bytes().to_vec();
    v[0] = 1;
    assert_eq!(
        OutboundChain::from_bytes(&v).map(|_| ()),
        Err(StateError::UnknownVersion(1))
    );
    // The owner's address as written, and an invalid one (device 0, an
    // empty user id) refused.
    assert_eq!(&record[2 + 64..2 + 64 + RA], &OWNER_RA);
    let mut device_zero = record.clone();
    device_zero[2 + 64 + RA - 1] = 0;
    assert_eq!(
        InboundChain::from_bytes(&device_zero),
        Err(StateError::Corrupt)
    );
    let mut empty_user = record.clone();
    empty_user[2 + 64] = 0;
    assert_eq!(
        InboundChain::from_bytes(&empty_user),
        Err(StateError::Corrupt)
    );
    assert_eq!(
        InboundChain::from_bytes(&record[..record.len() - 1]),
        Err(StateError::Corrupt)
    );
    assert_eq!(
        InboundChain::from_bytes(&[&record[..], &[0]].concat()),
        Err(StateError::Corrupt)
    );
    // An outbound record is not an inbound one, nor the reverse.
    let out = sender_at(0).to_bytes();
    assert_eq!(InboundChain::from_bytes(&out), Err(StateError::Corrupt));
    assert_eq!(
        OutboundChain::from_bytes(&record).map(|_| ()),
        Err(StateError::Corrupt)
    );
    // Stored iterations out of order: swap the first two (0 and 1).
    // Layout: 2 + 32 * 2, RA, 32, varint next (1), 32, varint max_skip (2),
    // count (1).
    let keys_at = 2 + 96 + RA + 1 + 32 + 2 + 1;
    let mut swapped = record.clone();
    swapped[keys_at] = 1;
    swapped[keys_at + 33] = 0;
    assert_eq!(InboundChain::from_bytes(&swapped), Err(StateError::Corrupt));
    // A stored iteration not below the next one.
    let mut ahead = record.clone();
    ahead[keys_at + 66] = 4;
    assert_eq!(InboundChain::from_bytes(&ahead), Err(StateError::Corrupt));
    // max_skip above the limit (25001 = 0xa9 0xc3 0x01 is three bytes: use
    // a record whose max_skip is 25000 and bump it).
    let wide = InboundChain::from_distribution(
        &sender_at(0).distribution(),
        &alice(),
        ChainConfig::new(25_000).unwrap(),
    )
    .unwrap();
    let mut w = wide.to_bytes().to_vec();
    let at = 2 + 96 + RA + 1 + 32;
    assert_eq!(&w[at..at + 3], &[0xa8, 0xc3, 0x01]);
    w[at] = 0xa9;
    assert_eq!(InboundChain::from_bytes(&w), Err(StateError::Corrupt));
    // A small-order signing key.
    let mut weak = record.clone();
    weak[2 + 64 + RA..2 + 96 + RA].copy_from_slice(&[0; 32]);
    weak[2 + 64 + RA] = 1;
    assert_eq!(InboundChain::from_bytes(&weak), Err(StateError::Corrupt));
}

#[test]
fn group_message_decoding_is_strict() {
    let m = message_at(0, "x");
    assert!(GroupMessage::from_bytes(&m).is_ok());
    assert!(matches!(
        GroupMessage::from_bytes(&[&m[..], &[0x08, 0x01]].concat()),
        Err(WireError::NonCanonical | WireError::Malformed)
    ));
    assert_eq!(
        GroupMessage::from_bytes(&vec![0; tacit::group::MAX_GROUP_MESSAGE_LEN + 1]),
        Err(WireError::Oversize {
            len: tacit::group::MAX_GROUP_MESSAGE_LEN + 1,
            max: tacit::group::MAX_GROUP_MESSAGE_LEN
        })
    );
    let mut raw = RawMessage::decode(&m[..]).unwrap();
    raw.iteration = u32::MAX;
    assert_eq!(
        GroupMessage::from_bytes(&raw.encode_to_vec()),
        Err(WireError::InvalidValue("iteration"))
    );
    let mut raw = RawMessage::decode(&m[..]).unwrap();
    raw.signature.pop();
    assert!(matches!(
        GroupMessage::from_bytes(&raw.encode_to_vec()),
        Err(WireError::InvalidLength {
            field: "signature",
            ..
        })
    ));
    let mut raw = RawMessage::decode(&m[..]).unwrap();
    raw.version = 2;
    assert_eq!(
        GroupMessage::from_bytes(&raw.encode_to_vec()),
        Err(WireError::UnknownVersion(2))
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
    /// Any delivery order, with repeats: each message decrypts exactly once,
    /// to its own text, and every repeat is refused with the chain unchanged.
    #[test]
    fn any_order_with_repeats_decrypts_each_message_once(
        order in proptest::collection::vec(0u32..24, 1..40),
    ) {
        let mut bob = receiver(ChainConfig::new(30).unwrap());
        static MESSAGES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let messages =
            MESSAGES.get_or_init(|| (0..24).map(|i| message_at(i, &format!("p{i}"))).collect());
        let mut seen = std::collections::BTreeSet::new();
        for i in order {
            let before = bob.to_bytes();
            let result = bob.decrypt(&messages[i as usize]).map(|c| c.body().to_vec());
            if seen.insert(i) {
                proptest::prop_assert_eq!(result, Ok(format!("p{i}").into_bytes()));
            } else {
                proptest::prop_assert_eq!(result, Err(GroupDecryptError::DuplicateOrExpired));
                proptest::prop_assert_eq!(&*bob.to_bytes(), &*before);
            }
        }
    }
}

/// The owner signature of 16.5, computed here with ed25519-dalek.
fn owner_signature(group: &[u8; 32], state: &[u8; 32], ra: &[u8]) -> Vec<u8> {
    let statement = [b"tacit/group/v1/chain-owner".as_slice(), group, state, ra].concat();
    SigningKey::from_bytes(&SEED)
        .sign(&statement)
        .to_bytes()
        .to_vec()
}

/// `SenderChainDistribution` built by hand.
#[derive(Clone, PartialEq, prost::Message)]
struct RawDistribution {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    group_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    state_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    signing_key: Vec<u8>,
    #[prost(uint32, tag = "5")]
    iteration: u32,
    #[prost(bytes = "vec", tag = "6")]
    chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    owner_signature: Vec<u8>,
}

#[test]
fn a_distribution_proves_its_owner() {
    let d = sender_at(0).distribution();
    // The signature is the one 16.5 defines, over alice.1.
    assert_eq!(
        d.owner_signature().to_bytes().to_vec(),
        owner_signature(&GROUP, &STATE, &OWNER_RA)
    );
    // The owner's own distribution is accepted, and names her.
    let chain = InboundChain::from_distribution(&d, &alice(), ChainConfig::default()).unwrap();
    assert_eq!(chain.owner(), &alice());
    // Forwarded by another device (mallory holds alice's chain and sends it
    // first): refused, so alice's messages are never mallory's.
    assert_eq!(
        InboundChain::from_distribution(&d, &mallory(), ChainConfig::default()),
        Err(GroupDecryptError::ChainOwnerMismatch)
    );
    // alice's other device is another owner.
    assert_eq!(
        InboundChain::from_distribution(
            &d,
            &Address::new("alice", 2).unwrap(),
            ChainConfig::default()
        ),
        Err(GroupDecryptError::ChainOwnerMismatch)
    );
    // A signature by the chain's key over another group, another state or
    // another address, put in a distribution from alice: refused.
    let raw = RawDistribution::decode(&d.to_bytes()[..]).unwrap();
    let mallory_ra = [&[7u8][..], b"mallory", &[0, 0, 0, 1]].concat();
    for signature in [
        owner_signature(&[0x62; 32], &STATE, &OWNER_RA),
        owner_signature(&GROUP, &[0x74; 32], &OWNER_RA),
        owner_signature(&GROUP, &STATE, &mallory_ra),
    ] {
        let mut forged = raw.clone();
        forged.owner_signature = signature;
        let forged = SenderChainDistribution::from_bytes(&forged.encode_to_vec()).unwrap();
        assert_eq!(
            InboundChain::from_distribution(&forged, &alice(), ChainConfig::default()),
            Err(GroupDecryptError::ChainOwnerMismatch)
        );
    }
    // The one over mallory's address is hers to present, not alice's.
    let mut for_mallory = raw.clone();
    for_mallory.owner_signature = owner_signature(&GROUP, &STATE, &mallory_ra);
    let for_mallory = SenderChainDistribution::from_bytes(&for_mallory.encode_to_vec()).unwrap();
    assert!(
        InboundChain::from_distribution(&for_mallory, &mallory(), ChainConfig::default()).is_ok()
    );
    // The signature is a required field of 64 bytes.
    let mut none = raw.clone();
    none.owner_signature.clear();
    assert_eq!(
        SenderChainDistribution::from_bytes(&none.encode_to_vec()),
        Err(WireError::MissingField("owner_signature"))
    );
    let mut short = raw;
    short.owner_signature.pop();
    assert!(matches!(
        SenderChainDistribution::from_bytes(&short.encode_to_vec()),
        Err(WireError::InvalidLength {
            field: "owner_signature",
            ..
        })
    ));
}

/// The attack end to end: mallory forwards alice's distribution before
/// alice does. Refused, bob then takes alice's own, and alice's messages
/// are read as alice's.
#[test]
fn a_forwarded_distribution_does_not_take_the_chain() {
    let d = sender_at(0).distribution();
    let mut chains = InboundChains::new();
    let forwarded = SenderChainDistribution::from_bytes(&d.to_bytes()).unwrap();
    assert_eq!(
        InboundChain::from_distribution(&forwarded, &mallory(), ChainConfig::default()),
        Err(GroupDecryptError::ChainOwnerMismatch)
    );
    assert!(chains.is_empty());
    assert!(chains
        .insert(InboundChain::from_distribution(&d, &alice(), ChainConfig::default()).unwrap()));
    let m = message_at(0, "from alice");
    let message = GroupMessage::from_bytes(&m).unwrap();
    let chain = chains
        .get(message.group_id(), message.signing_key())
        .unwrap();
    assert_eq!(chain.owner(), &alice());
    assert_eq!(chains.decrypt(&m).unwrap().body(), b"from alice");
}
