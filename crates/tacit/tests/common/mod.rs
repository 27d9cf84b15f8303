//! Helpers shared by the integration tests: deterministic and counting RNGs,
//! session set-up through X3DH, state snapshots, a mirror of the session
//! record (version 1) and an independent implementation of the profile's
//! primitives for crafting messages.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use tacit::keys::{IdentityKeyPair, KeyPair, PublicKey};
use tacit::ratchet::{
    EncryptedMessage, Header, Ratchet, RatchetConfig, SessionKeys, ENCRYPTED_HEADER_LEN,
    STATE_VERSION,
};
use tacit::x3dh;
use tacit::DecryptError;
use tacit::PreKeyBundle;

/// A deterministic RNG.
pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A ChaCha20 RNG that counts what is drawn from it.
#[derive(Debug, Clone)]
pub(crate) struct CountingRng {
    inner: ChaCha20Rng,
    /// Bytes drawn so far.
    pub(crate) bytes: usize,
    /// Calls made so far (of any of the `RngCore` methods).
    pub(crate) calls: usize,
}

impl CountingRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            inner: ChaCha20Rng::seed_from_u64(seed),
            bytes: 0,
            calls: 0,
        }
    }
}

impl RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.bytes += 4;
        self.calls += 1;
        self.inner.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.bytes += 8;
        self.calls += 1;
        self.inner.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.bytes += dest.len();
        self.calls += 1;
        self.inner.fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.bytes += dest.len();
        self.calls += 1;
        self.inner.try_fill_bytes(dest)
    }
}

impl CryptoRng for CountingRng {}

/// A generator that must not be drawn from: a test of a refusal that has
/// to come before any randomness is drawn passes it, and a draw panics.
#[derive(Debug)]
pub(crate) struct MustNotDraw;

impl RngCore for MustNotDraw {
    fn next_u32(&mut self) -> u32 {
        panic!("drew randomness")
    }
    fn next_u64(&mut self) -> u64 {
        panic!("drew randomness")
    }
    fn fill_bytes(&mut self, _: &mut [u8]) {
        panic!("drew randomness")
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), rand_core::Error> {
        panic!("drew randomness")
    }
}

impl CryptoRng for MustNotDraw {}

/// The two sides of a fresh session, set up through X3DH from seeded keys,
/// with what a test may need to craft messages.
pub(crate) struct Session {
    pub(crate) alice: Ratchet,
    pub(crate) bob: Ratchet,
    /// The session keys (both sides derive the same ones).
    pub(crate) keys: SessionKeys,
    /// Bob's signed prekey, his first ratchet key.
    pub(crate) bob_signed_prekey: PublicKey,
    /// An RNG for the encryptions of the test.
    pub(crate) rng: ChaCha20Rng,
}

impl Session {
    /// Alice encrypts `text`.
    pub(crate) fn a(&mut self, text: &str) -> EncryptedMessage {
        self.alice
            .encrypt(text.as_bytes(), &mut self.rng)
            .expect("alice encrypts")
    }

    /// Bob encrypts `text`.
    pub(crate) fn b(&mut self, text: &str) -> EncryptedMessage {
        self.bob
            .encrypt(text.as_bytes(), &mut self.rng)
            .expect("bob encrypts")
    }
}

/// A session between two seeded identities, with `config` on both sides.
pub(crate) fn session(config: RatchetConfig, seed: u64) -> Session {
    let mut rng = rng(seed);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let bob_id = IdentityKeyPair::generate(&mut rng);
    let spk = KeyPair::generate(&mut rng);
    let bundle = PreKeyBundle {
        identity_key: bob_id.public_key(),
        signed_prekey: spk.public_key(),
        signed_prekey_signature: bob_id.sign_prekey(&spk.public_key()),
        one_time_prekey: None,
        kem_prekey: None,
    };
    let init = x3dh::initiate(&alice_id, &bundle, &mut rng).expect("initiate");
    let agreement = x3dh::respond(
        &bob_id,
        &spk,
        None,
        &alice_id.public_key(),
        &init.ephemeral_key,
    )
    .expect("respond");
    let alice = Ratchet::new_initiator(
        init.agreement.session_keys(),
        &spk.public_key(),
        config,
        &mut rng,
    )
    .expect("initiator");
    let bob_signed_prekey = spk.public_key();
    let bob = Ratchet::new_responder(agreement.session_keys(), spk, config);
    Session {
        alice,
        bob,
        keys: agreement.session_keys(),
        bob_signed_prekey,
        rng,
    }
}

/// The serialized state, as a plain vector.
pub(crate) fn state(r: &Ratchet) -> Vec<u8> {
    r.to_bytes().to_vec()
}

/// Decrypts with a fresh counting RNG; returns the result and the bytes
/// drawn.
pub(crate) fn decrypt_counting(
    r: &mut Ratchet,
    message: &EncryptedMessage,
    seed: u64,
) -> (Result<Vec<u8>, DecryptError>, CountingRng) {
    let mut rng = CountingRng::new(seed);
    let result = r.decrypt(message, &mut rng);
    (result, rng)
}

/// Asserts that `message` fails with `expected`, that the serialized state
/// is byte-for-byte what it was, and that no randomness was drawn.
#[track_caller]
pub(crate) fn assert_rejected(r: &mut Ratchet, message: &EncryptedMessage, expected: DecryptError) {
    let before = state(r);
    let count = r.skipped_key_count();
    let (result, rng) = decrypt_counting(r, message, 0xdead);
    assert_eq!(result, Err(expected));
    assert_eq!(state(r), before, "state changed by a failed decryption");
    assert_eq!(r.skipped_key_count(), count);
    assert_eq!(rng.bytes, 0, "a failed decryption drew randomness");
}

/// Asserts that `message` decrypts to `expected`, drawing exactly 32 bytes
/// in one call when it opens a new chain and nothing otherwise.
#[track_caller]
pub(crate) fn assert_decrypts(
    r: &mut Ratchet,
    message: &EncryptedMessage,
    expected: &str,
    opens_new_chain: bool,
) {
    // A seed of the message's own (random) header nonce: distinct steps get
    // distinct ratchet keys, and a rerun gets the same ones.
    let seed = u64::from_le_bytes(message.encrypted_header()[..8].try_into().expect("8 bytes"));
    let (result, rng) = decrypt_counting(r, message, seed);
    assert_eq!(
        result.as_deref(),
        Ok(expected.as_bytes()),
        "message {expected:?} did not decrypt"
    );
    let (bytes, calls) = if opens_new_chain { (32, 1) } else { (0, 0) };
    assert_eq!((rng.bytes, rng.calls), (bytes, calls), "randomness drawn");
}

/// Flips every bit of byte `index` of `enc_header || ciphertext`.
pub(crate) fn flip(message: &EncryptedMessage, index: usize, mask: u8) -> EncryptedMessage {
    let mut bytes = message.to_bytes();
    bytes[index] ^= mask;
    EncryptedMessage::from_bytes(&bytes).expect("same length")
}

/// `HENCRYPT(hk, H)` computed independently of the crate.
pub(crate) fn seal_header(
    header_key: &[u8; 32],
    nonce: [u8; 24],
    header: &Header,
    associated_data: &[u8],
) -> [u8; ENCRYPTED_HEADER_LEN] {
    let mut body = header.to_bytes();
    let tag = XChaCha20Poly1305::new(header_key.into())
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), associated_data, &mut body)
        .expect("seal header");
    let mut out = [0u8; ENCRYPTED_HEADER_LEN];
    out[..24].copy_from_slice(&nonce);
    out[24..64].copy_from_slice(&body);
    out[64..].copy_from_slice(&tag);
    out
}

/// `HDECRYPT(hk, enc_header)` computed independently of the crate.
pub(crate) fn open_header(
    header_key: &[u8; 32],
    encrypted: &[u8; ENCRYPTED_HEADER_LEN],
    associated_data: &[u8],
) -> Option<Header> {
    let mut body: [u8; 40] = encrypted[24..64].try_into().expect("40 bytes");
    XChaCha20Poly1305::new(header_key.into())
        .decrypt_in_place_detached(
            XNonce::from_slice(&encrypted[..24]),
            associated_data,
            &mut body,
            Tag::from_slice(&encrypted[64..]),
        )
        .ok()?;
    Some(Header::from_bytes(&body))
}

/// A message whose header is sealed under `header_key` (known to the test)
/// and whose body is `body_len` arbitrary bytes.
pub(crate) fn crafted(
    header_key: &[u8; 32],
    header: &Header,
    associated_data: &[u8],
    body_len: usize,
) -> EncryptedMessage {
    let enc = seal_header(header_key, [7; 24], header, associated_data);
    EncryptedMessage::new(enc, vec![0x5a; body_len]).expect("long enough")
}

// ---------------------------------------------------------------------------
// A mirror of the session record, version 1: one version byte, then the
// postcard encoding of these fields in this order.

/// A chain in the record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainRec {
    pub(crate) chain_key: [u8; 32],
    pub(crate) header_key: [u8; 32],
}

/// One stored skipped key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SkippedKeyRec {
    pub(crate) n: u32,
    pub(crate) message_key: [u8; 32],
}

/// A run of skipped keys sharing a header key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SkippedRunRec {
    pub(crate) header_key: [u8; 32],
    pub(crate) keys: Vec<SkippedKeyRec>,
}

/// The whole record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) max_skip: u32,
    pub(crate) max_stored_skipped_keys: u32,
    pub(crate) associated_data: Vec<u8>,
    pub(crate) root_key: [u8; 32],
    pub(crate) ratchet_private_key: [u8; 32],
    pub(crate) ratchet_public_key: [u8; 32],
    pub(crate) sending: Option<ChainRec>,
    pub(crate) sent: u32,
    pub(crate) previous_sent: u32,
    pub(crate) receiving: Option<ChainRec>,
    pub(crate) received: u64,
    pub(crate) next_sending_header_key: [u8; 32],
    pub(crate) next_receiving_header_key: [u8; 32],
    pub(crate) skipped: Vec<SkippedRunRec>,
}

impl Record {
    /// Reads a session's record, checking that the mirror re-encodes it to
    /// exactly the same bytes.
    pub(crate) fn of(r: &Ratchet) -> Self {
        let bytes = state(r);
        assert_eq!(bytes[0], STATE_VERSION);
        let record: Record = postcard::from_bytes(&bytes[1..]).expect("mirror decodes the record");
        assert_eq!(record.encode(), bytes, "mirror re-encodes the record");
        record
    }

    /// The record's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        out.extend(postcard::to_allocvec(self).expect("encode"));
        out
    }

    /// Every secret of the record.
    pub(crate) fn secrets(&self) -> Vec<[u8; 32]> {
        let mut out = vec![
            self.root_key,
            self.ratchet_private_key,
            self.next_sending_header_key,
            self.next_receiving_header_key,
        ];
        for chain in self.sending.iter().chain(self.receiving.iter()) {
            out.push(chain.chain_key);
            out.push(chain.header_key);
        }
        for run in &self.skipped {
            out.push(run.header_key);
            out.extend(run.keys.iter().map(|k| k.message_key));
        }
        out
    }
}

/// A proptest configuration with an explicit case count, a fixed seed (a
/// failure reproduces on every run) and no persistence files.
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7ac1_7000 + u64::from(cases)),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..proptest::test_runner::Config::default()
    }
}

// ---------------------------------------------------------------------------
// Users: a deterministic user key per user id, device lists signed with it,
// and managers trusting them.

/// The user key of `user_id`, derived from the id (another user id, another
/// key).
pub(crate) fn user_key(user_id: &str) -> tacit::identity::UserKeyPair {
    let mut seed = [0x42u8; 32];
    for (i, b) in user_id.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    seed[31] ^= u8::try_from(user_id.len()).unwrap_or(u8::MAX);
    tacit::identity::UserKeyPair::from_seed(&seed)
}

/// `user_id`'s list at `version` with `devices`, signed by [`user_key`].
pub(crate) fn list(
    user_id: &str,
    version: u64,
    devices: &[(u32, tacit::keys::IdentityKey)],
) -> tacit::identity::DeviceList {
    let devices: Vec<_> = devices.iter().map(|(d, k)| (*d, *k, 0)).collect();
    tacit::identity::DeviceList::sign(&user_key(user_id), user_id, version, &devices)
        .expect("list signs")
}

/// The lists of the users of `devices` (each device's address and identity
/// key), one per user at `version`, sorted by user id.
pub(crate) fn lists_of(
    version: u64,
    devices: &[(&tacit::Address, tacit::keys::IdentityKey)],
) -> Vec<tacit::identity::DeviceList> {
    let mut users: Vec<&str> = devices.iter().map(|(a, _)| a.user_id()).collect();
    users.sort_unstable();
    users.dedup();
    users
        .into_iter()
        .map(|user| {
            let mine: Vec<_> = devices
                .iter()
                .filter(|(a, _)| a.user_id() == user)
                .map(|(a, k)| (a.device_id(), *k))
                .collect();
            list(user, version, &mine)
        })
        .collect()
}

/// `manager` trusts each of `lists` (each must be new or newer).
#[track_caller]
pub(crate) fn trust<S: tacit::store::Store>(
    manager: &mut tacit::session::SessionManager<S>,
    lists: &[tacit::identity::DeviceList],
) {
    for list in lists {
        manager.update_device_list(list).expect("list trusted");
    }
}

/// The devices of every user of a test, as the users' own devices would
/// publish them: each change signs a new version of every list (one version
/// counter for all users, so a version never names two contents).
#[derive(Debug, Default)]
pub(crate) struct Directory {
    devices:
        std::cell::RefCell<std::collections::BTreeMap<tacit::Address, tacit::keys::IdentityKey>>,
    version: std::cell::Cell<u64>,
    signed: std::cell::RefCell<Option<(u64, Vec<tacit::identity::DeviceList>)>>,
}

impl Directory {
    /// An empty directory, shared by the devices of a test.
    pub(crate) fn new() -> std::rc::Rc<Self> {
        std::rc::Rc::new(Self::default())
    }

    /// Lists `address` with `identity`, replacing the identity it had.
    pub(crate) fn register(&self, address: &tacit::Address, identity: tacit::keys::IdentityKey) {
        self.devices.borrow_mut().insert(address.clone(), identity);
        self.version.set(self.version.get() + 1);
    }

    /// Takes `address` off its user's list.
    pub(crate) fn remove(&self, address: &tacit::Address) {
        self.devices.borrow_mut().remove(address);
        self.version.set(self.version.get() + 1);
    }

    /// The current version.
    pub(crate) fn version(&self) -> u64 {
        self.version.get()
    }

    /// Every user's current list.
    pub(crate) fn lists(&self) -> Vec<tacit::identity::DeviceList> {
        let version = self.version.get();
        if let Some((v, lists)) = &*self.signed.borrow() {
            if *v == version {
                return lists.clone();
            }
        }
        let devices = self.devices.borrow();
        let refs: Vec<_> = devices.iter().map(|(a, k)| (a, *k)).collect();
        let lists = lists_of(version, &refs);
        *self.signed.borrow_mut() = Some((version, lists.clone()));
        lists
    }

    /// The current list of `user_id`.
    pub(crate) fn list(&self, user_id: &str) -> tacit::identity::DeviceList {
        self.lists()
            .into_iter()
            .find(|l| l.user_id() == user_id)
            .expect("user has devices")
    }

    /// `manager` trusts every user's current list.
    #[track_caller]
    pub(crate) fn trust<S: tacit::store::Store>(
        &self,
        manager: &mut tacit::session::SessionManager<S>,
    ) {
        trust(manager, &self.lists());
    }
}
