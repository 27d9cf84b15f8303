//! Sealed sender: an envelope the relay can route to its recipient without
//! learning who sent it, following the structure of Signal's sealed sender
//! v1 with this profile's primitives.
//!
//! ```text
//! RA   = u8(len(user_id_R)) || user_id_R || u32be(device_id_R)
//! ctx  = Enc(E) || Enc(IK_R) || RA
//! E    = X25519 key pair from 32 bytes drawn from the caller's RNG (one call)
//!
//! CK || K_s || N_s = HKDF(0^32, DH(E, IK_R), "tacit/sealed/v1/ephemeral" || ctx, 76)
//! encrypted_sender  = ChaCha20-Poly1305(K_s, N_s, Enc(IK_S), aad = ctx)           48 bytes
//!
//! K_m || N_m = HKDF(CK, DH(IK_S, IK_R), "tacit/sealed/v1/static" || ctx || encrypted_sender, 44)
//! inner      = SealedContent { version 2, sender address, session message,
//!                              sender user key, sender certificate } || 0x80 || 0x00...
//!              of exactly len(ratchet ciphertext) + INNER_RESERVE bytes
//! encrypted_message = ChaCha20-Poly1305(K_m, N_m, inner, aad = ctx || encrypted_sender)
//! ```
//!
//! `DH` with an identity key uses its X25519 view. The ephemeral-static DH
//! hides the sender's identity from everyone but the holder of `IK_R`; the
//! static-static DH authenticates the content as coming from `IK_S` (only
//! the sender and the recipient can compute it). The recipient's identity
//! key and address are in every key derivation and associated data, so an
//! envelope opens only for the device it was sealed to. The recipient
//! address itself is not in the envelope: the relay protocol carries it
//! beside the envelope.
//!
//! The sender certificate (`docs/PROTOCOL.md` 14.2) is the sender's user
//! key's signature on its device: `open` verifies it, so the recipient knows
//! offline which user key the sending device belongs to.
//!
//! The inner padding depends only on the ratchet ciphertext's length (itself
//! padded, see [`super::padding`]), so prekey and ratchet messages, and
//! senders with user ids of any length, give envelopes of the same size.

use alloc::vec::Vec;

use prost::Message as _;
use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::padding;
use super::proto;
use crate::address::Address;
use crate::aead::{chacha20poly1305_open, chacha20poly1305_seal};
use crate::crypto::hkdf;
use crate::error::{EnvelopeError, WireError};
use crate::identity::{DeviceCertificate, UserKey};
use crate::keys::{
    IdentityKey, IdentityKeyPair, KeyPair, PublicKey, SecretKey32, KEY_LEN, SIGNATURE_LEN,
};
use crate::ratchet::TAG_LEN;
use crate::wire::{
    check_version, decode_canonical, fixed, public_key, SessionMessage, WireMessage,
    MAX_MESSAGE_LEN, WIRE_VERSION,
};

/// Length of `encrypted_sender`: an identity key and a tag.
pub const ENCRYPTED_SENDER_LEN: usize = KEY_LEN + TAG_LEN;
/// The inner plaintext is the ratchet ciphertext's length plus this many
/// bytes: room for the largest sender address and prekey-message framing,
/// the rest padding.
pub const INNER_RESERVE: usize = 420;
/// The version of `SealedContent`: 2, with the sender's user key and
/// certificate.
pub const SEALED_CONTENT_VERSION: u32 = 2;
/// The shortest `encrypted_message`: an inner plaintext for a ratchet
/// ciphertext of one tag, and the tag.
pub const MIN_ENCRYPTED_MESSAGE_LEN: usize = TAG_LEN + INNER_RESERVE + TAG_LEN;
/// Extra inner room for the KEM fields of a `tacit-v2` prekey message
/// (`docs/PROTOCOL.md` 15.10): its inner plaintext is the ratchet
/// ciphertext's length plus `INNER_RESERVE + KEM_INNER_RESERVE` bytes.
pub const KEM_INNER_RESERVE: usize = 1600;
/// The longest sealed envelope accepted.
pub const MAX_ENVELOPE_LEN: usize = MAX_MESSAGE_LEN + INNER_RESERVE + KEM_INNER_RESERVE + 256;

/// HKDF info label of the ephemeral-static stage.
pub const LABEL_EPHEMERAL: &[u8] = b"tacit/sealed/v1/ephemeral";
/// HKDF info label of the static-static stage.
pub const LABEL_STATIC: &[u8] = b"tacit/sealed/v1/static";

/// The outer envelope, as the relay sees it: a version, the ephemeral key
/// and two ciphertexts. Decoding it ([`WireMessage::from_wire`]) is the
/// whole of what a relay can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    ephemeral_key: PublicKey,
    encrypted_sender: [u8; ENCRYPTED_SENDER_LEN],
    encrypted_message: Vec<u8>,
}

impl SealedEnvelope {
    /// The sender's ephemeral X25519 key `E`.
    pub fn ephemeral_key(&self) -> &PublicKey {
        &self.ephemeral_key
    }

    /// The sender's encrypted identity key and its tag.
    pub fn encrypted_sender(&self) -> &[u8; ENCRYPTED_SENDER_LEN] {
        &self.encrypted_sender
    }

    /// The encrypted, padded inner content and its tag.
    pub fn encrypted_message(&self) -> &[u8] {
        &self.encrypted_message
    }
}

impl WireMessage for SealedEnvelope {
    fn to_wire(&self) -> Vec<u8> {
        proto::SealedEnvelope {
            version: WIRE_VERSION,
            ephemeral_key: self.ephemeral_key.to_bytes().to_vec(),
            encrypted_sender: self.encrypted_sender.to_vec(),
            encrypted_message: self.encrypted_message.clone(),
        }
        .encode_to_vec()
    }

    /// Strict decoding: at most [`MAX_ENVELOPE_LEN`] bytes, canonical,
    /// version 1, a 32-byte ephemeral key, a 48-byte `encrypted_sender` and
    /// an `encrypted_message` of at least [`MIN_ENCRYPTED_MESSAGE_LEN`]
    /// bytes.
    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        let m: proto::SealedEnvelope = decode_canonical(bytes, MAX_ENVELOPE_LEN)?;
        check_version(m.version)?;
        let ephemeral_key = public_key("ephemeral_key", &m.ephemeral_key)?;
        let encrypted_sender =
            fixed::<ENCRYPTED_SENDER_LEN>("encrypted_sender", &m.encrypted_sender)?;
        if m.encrypted_message.is_empty() {
            return Err(WireError::MissingField("encrypted_message"));
        }
        if m.encrypted_message.len() < MIN_ENCRYPTED_MESSAGE_LEN {
            return Err(WireError::InvalidLength {
                field: "encrypted_message",
                expected: MIN_ENCRYPTED_MESSAGE_LEN,
                actual: m.encrypted_message.len(),
            });
        }
        Ok(Self {
            ephemeral_key,
            encrypted_sender,
            encrypted_message: m.encrypted_message,
        })
    }
}

/// The sending device, as a sealed envelope names it: its identity key
/// pair, its address, its user's key and the user key's certificate of it.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The device's identity key pair.
    pub identity: &'a IdentityKeyPair,
    /// The device's address.
    pub address: &'a Address,
    /// The device's user key.
    pub user_key: &'a UserKey,
    /// The user key's certificate of this device.
    pub certificate: &'a DeviceCertificate,
}

/// An opened envelope: who sent it (authenticated) and the session message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    /// The sender's identity key, authenticated by the static-static DH.
    pub sender_identity: IdentityKey,
    /// The user key the sender's certificate names; the certificate was
    /// checked, so this user key signed the sending device. Whether that
    /// user key is the one trusted for the sender's user id, and whether
    /// the device is still on its list, is the session layer's check.
    pub sender_user_key: UserKey,
    /// The sender's address, as the sender states it: trust it only after
    /// [`check_sender_identity`](Self::check_sender_identity) against the
    /// identity known for that address.
    pub sender_address: Address,
    /// The session message.
    pub message: SessionMessage,
}

impl Unsealed {
    /// Checks that the sealed sender identity is `expected`, the identity
    /// the recipient's session with [`sender_address`](Self::sender_address)
    /// holds (compared in constant time).
    pub fn check_sender_identity(&self, expected: &IdentityKey) -> Result<(), EnvelopeError> {
        if bool::from(self.sender_identity.to_bytes().ct_eq(&expected.to_bytes())) {
            Ok(())
        } else {
            Err(EnvelopeError::SenderIdentityMismatch)
        }
    }
}

/// `ctx = Enc(E) || Enc(IK_R) || RA`.
fn context(ephemeral: &PublicKey, recipient: &IdentityKey, address: &Address) -> Vec<u8> {
    let user_id = address.user_id().as_bytes();
    let mut ctx = Vec::with_capacity(2 * KEY_LEN + 1 + user_id.len() + 4);
    ctx.extend_from_slice(ephemeral.as_bytes());
    ctx.extend_from_slice(&recipient.to_bytes());
    address.encode_ra(&mut ctx);
    ctx
}

/// The ephemeral stage's chain key, and the sender part's key and nonce.
struct EphemeralKeys {
    chain_key: [u8; 32],
    key: [u8; 32],
    nonce: [u8; 12],
}

fn ephemeral_keys(dh: &SecretKey32, ctx: &[u8]) -> Zeroizing<EphemeralKeys> {
    let okm = hkdf::<76>(&[0u8; 32], dh.as_bytes(), &[LABEL_EPHEMERAL, ctx].concat());
    let mut keys = Zeroizing::new(EphemeralKeys {
        chain_key: [0; 32],
        key: [0; 32],
        nonce: [0; 12],
    });
    keys.chain_key.copy_from_slice(&okm[..32]);
    keys.key.copy_from_slice(&okm[32..64]);
    keys.nonce.copy_from_slice(&okm[64..]);
    keys
}

impl zeroize::Zeroize for EphemeralKeys {
    fn zeroize(&mut self) {
        self.chain_key.zeroize();
        self.key.zeroize();
        self.nonce.zeroize();
    }
}

/// `K_m || N_m`.
fn static_keys(
    chain_key: &[u8; 32],
    dh: &SecretKey32,
    ctx: &[u8],
    encrypted_sender: &[u8],
) -> Zeroizing<[u8; 44]> {
    hkdf::<44>(
        chain_key,
        dh.as_bytes(),
        &[LABEL_STATIC, ctx, encrypted_sender].concat(),
    )
}

/// ChaCha20-Poly1305 in place, the tag appended. It fails only for inputs
/// far over any envelope's size.
fn aead_seal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let tag =
        chacha20poly1305_seal(key, nonce, aad, buffer).map_err(|_| EnvelopeError::TooLarge {
            len: buffer.len(),
            max: MAX_ENVELOPE_LEN,
        })?;
    buffer.extend_from_slice(&tag);
    Ok(())
}

fn aead_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let (body, tag) = sealed.split_last_chunk::<TAG_LEN>()?;
    let mut out = Zeroizing::new(body.to_vec());
    chacha20poly1305_open(key, nonce, aad, &mut out, tag).ok()?;
    Some(out)
}

/// `K_m || N_m` split into the key and the nonce.
fn key_and_nonce(okm: &[u8; 44]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// The ratchet ciphertext's length, which the inner padding follows.
fn ciphertext_len(message: &SessionMessage) -> usize {
    match message {
        SessionMessage::PreKey(m) => m.message.ciphertext().len(),
        SessionMessage::Ratchet(m) => m.ciphertext().len(),
    }
}

/// The exact inner plaintext length of the envelope of `message`.
fn inner_len(message: &SessionMessage) -> usize {
    let reserve = match message {
        SessionMessage::PreKey(m) if m.kem.is_some() => INNER_RESERVE + KEM_INNER_RESERVE,
        _ => INNER_RESERVE,
    };
    ciphertext_len(message) + reserve
}

/// Seals `message` from `sender` to the identity `recipient_identity` at
/// `recipient_address`. Draws exactly 32 bytes from `rng`, in one call: the
/// ephemeral private key.
pub fn seal(
    sender: &Sender<'_>,
    recipient_identity: &IdentityKey,
    recipient_address: &Address,
    message: &SessionMessage,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, EnvelopeError> {
    let encoded_message = message.to_wire();
    if encoded_message.len() > MAX_MESSAGE_LEN {
        return Err(EnvelopeError::TooLarge {
            len: encoded_message.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let inner = Zeroizing::new(
        proto::SealedContent {
            version: SEALED_CONTENT_VERSION,
            sender_user_id: sender.address.user_id().into(),
            sender_device_id: sender.address.device_id(),
            message: encoded_message,
            sender_user_key: sender.user_key.to_bytes().to_vec(),
            sender_certificate: sender.certificate.to_bytes().to_vec(),
        }
        .encode_to_vec(),
    );
    let target = inner_len(message);
    if inner.len() >= target {
        // Unreachable for valid addresses and messages; see the tests.
        return Err(EnvelopeError::TooLarge {
            len: inner.len(),
            max: target - 1,
        });
    }
    let mut buffer = Zeroizing::new(padding::pad_to(&inner, target));
    seal_padded(
        sender.identity,
        &sender.identity.public_key().to_bytes(),
        recipient_identity,
        recipient_address,
        &mut buffer,
        rng,
    )
}

/// Both stages over an already padded inner plaintext, sealing
/// `sender_identity` as the sender part (the sender's own key, except in
/// tests of malformed envelopes).
fn seal_padded(
    sender: &IdentityKeyPair,
    sender_identity: &[u8; KEY_LEN],
    recipient_identity: &IdentityKey,
    recipient_address: &Address,
    buffer: &mut Vec<u8>,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, EnvelopeError> {
    let ephemeral = KeyPair::generate(rng);
    let recipient_x25519 = recipient_identity.to_x25519();
    let ctx = context(
        &ephemeral.public_key(),
        recipient_identity,
        recipient_address,
    );

    let dh_e = ephemeral
        .diffie_hellman(&recipient_x25519)
        .map_err(EnvelopeError::InvalidRecipientIdentity)?;
    let first = ephemeral_keys(&dh_e, &ctx);
    let mut sender_part = sender_identity.to_vec();
    aead_seal(&first.key, &first.nonce, &ctx, &mut sender_part)?;

    let dh_s = sender
        .diffie_hellman(&recipient_x25519)
        .map_err(EnvelopeError::InvalidRecipientIdentity)?;
    let second = static_keys(&first.chain_key, &dh_s, &ctx, &sender_part);
    let aad = [&ctx[..], &sender_part].concat();
    let (key, nonce) = key_and_nonce(&second);
    aead_seal(&key, &nonce, &aad, buffer)?;

    let mut encrypted_sender = [0u8; ENCRYPTED_SENDER_LEN];
    encrypted_sender.copy_from_slice(&sender_part);
    Ok(SealedEnvelope {
        ephemeral_key: ephemeral.public_key(),
        encrypted_sender,
        encrypted_message: core::mem::take(buffer),
    }
    .to_wire())
}

/// Opens an envelope sealed to `recipient` at `recipient_address`.
///
/// Checks, in order: the outer encoding ([`EnvelopeError::Malformed`]), the
/// ephemeral key, the sender part, the sender's identity key, the content
/// part, the inner padding and encoding, the sender certificate
/// ([`EnvelopeError::InvalidSenderCertificate`]), and, for a prekey message,
/// that the identity key it carries is the sealed sender's
/// ([`EnvelopeError::SenderIdentityMismatch`]). For a ratchet message the
/// caller checks the sealed identity against its session's with
/// [`Unsealed::check_sender_identity`].
pub fn open(
    recipient: &IdentityKeyPair,
    recipient_address: &Address,
    envelope: &[u8],
) -> Result<Unsealed, EnvelopeError> {
    let outer = SealedEnvelope::from_wire(envelope).map_err(EnvelopeError::Malformed)?;
    let recipient_identity = recipient.public_key();
    let ctx = context(&outer.ephemeral_key, &recipient_identity, recipient_address);

    let dh_e = recipient
        .diffie_hellman(&outer.ephemeral_key)
        .map_err(|_| EnvelopeError::InvalidEphemeralKey)?;
    let first = ephemeral_keys(&dh_e, &ctx);
    let sender_bytes = aead_open(&first.key, &first.nonce, &ctx, &outer.encrypted_sender)
        .ok_or(EnvelopeError::SenderDoesNotOpen)?;
    let sender_identity =
        IdentityKey::try_from_slice(&sender_bytes).map_err(EnvelopeError::InvalidSenderIdentity)?;

    let dh_s = recipient
        .diffie_hellman(&sender_identity.to_x25519())
        .map_err(EnvelopeError::InvalidSenderIdentity)?;
    let second = static_keys(&first.chain_key, &dh_s, &ctx, &outer.encrypted_sender);
    let aad = [&ctx[..], &outer.encrypted_sender].concat();
    let (key, nonce) = key_and_nonce(&second);
    let padded = aead_open(&key, &nonce, &aad, &outer.encrypted_message)
        .ok_or(EnvelopeError::ContentDoesNotOpen)?;

    let inner = padding::strip(&padded).map_err(|_| EnvelopeError::InnerPadding)?;
    let m: proto::SealedContent =
        decode_canonical(inner, MAX_ENVELOPE_LEN).map_err(EnvelopeError::InnerMalformed)?;
    if m.version != SEALED_CONTENT_VERSION {
        return Err(EnvelopeError::InnerMalformed(WireError::UnknownVersion(
            m.version,
        )));
    }
    let sender_address = Address::new(&m.sender_user_id, m.sender_device_id)
        .map_err(|_| EnvelopeError::InnerMalformed(WireError::InvalidValue("sender_address")))?;
    let message = SessionMessage::from_wire(&m.message).map_err(EnvelopeError::InnerMalformed)?;
    let sender_user_key = UserKey::from_bytes(
        &fixed::<KEY_LEN>("sender_user_key", &m.sender_user_key)
            .map_err(EnvelopeError::InnerMalformed)?,
    )
    .map_err(|error| {
        EnvelopeError::InnerMalformed(WireError::InvalidKey {
            field: "sender_user_key",
            error,
        })
    })?;
    let certificate = DeviceCertificate::from_bytes(
        fixed::<SIGNATURE_LEN>("sender_certificate", &m.sender_certificate)
            .map_err(EnvelopeError::InnerMalformed)?,
    );
    if padded.len() != inner_len(&message) {
        return Err(EnvelopeError::InnerPadding);
    }
    certificate
        .verify(&sender_user_key, &sender_address, &sender_identity)
        .map_err(|_| EnvelopeError::InvalidSenderCertificate)?;
    if let SessionMessage::PreKey(prekey) = &message {
        if !bool::from(
            prekey
                .identity_key
                .to_bytes()
                .ct_eq(&sender_identity.to_bytes()),
        ) {
            return Err(EnvelopeError::SenderIdentityMismatch);
        }
    }
    Ok(Unsealed {
        sender_identity,
        sender_user_key,
        sender_address,
        message,
    })
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::string::String;
    use alloc::vec;

    use super::*;
    use crate::error::KeyError;
    use crate::identity::UserKeyPair;
    use crate::ratchet::{EncryptedMessage, ENCRYPTED_HEADER_LEN};
    use crate::wire::PreKeyMessage;

    /// Hands out the same byte for every request.
    struct FixedRng(u8);

    impl rand_core::RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            u32::from_le_bytes([self.0; 4])
        }
        fn next_u64(&mut self) -> u64 {
            u64::from_le_bytes([self.0; 8])
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl rand_core::CryptoRng for FixedRng {}

    fn parties() -> (IdentityKeyPair, Address, IdentityKeyPair, Address) {
        (
            IdentityKeyPair::from_seed(&[1; 32]),
            Address::new("alice", 1).unwrap(),
            IdentityKeyPair::from_seed(&[2; 32]),
            Address::new("bob", 7).unwrap(),
        )
    }

    fn user() -> UserKeyPair {
        UserKeyPair::from_seed(&[21; 32])
    }

    /// Alice's certificate from her user key.
    fn alice_cert() -> DeviceCertificate {
        let (alice, alice_address, _, _) = parties();
        DeviceCertificate::issue(&user(), &alice_address, &alice.public_key())
    }

    /// Seals from Alice, with her user key and certificate.
    fn seal_alice(message: &SessionMessage, rng: &mut FixedRng) -> Result<Vec<u8>, EnvelopeError> {
        let (alice, alice_address, bob, bob_address) = parties();
        let (user_key, certificate) = (user().public_key(), alice_cert());
        let sender = Sender {
            identity: &alice,
            address: &alice_address,
            user_key: &user_key,
            certificate: &certificate,
        };
        seal(&sender, &bob.public_key(), &bob_address, message, rng)
    }

    fn ratchet(len: usize) -> SessionMessage {
        SessionMessage::Ratchet(
            EncryptedMessage::new([5; ENCRYPTED_HEADER_LEN], vec![6; len]).unwrap(),
        )
    }

    fn prekey(identity: IdentityKey, len: usize, ids: u32) -> SessionMessage {
        SessionMessage::PreKey(Box::new(PreKeyMessage {
            identity_key: identity,
            ephemeral_key: PublicKey::from_bytes([8; 32]),
            signed_prekey_id: ids,
            one_time_prekey_id: Some(ids),
            message: EncryptedMessage::new([5; ENCRYPTED_HEADER_LEN], vec![6; len]).unwrap(),
            kem: None,
        }))
    }

    /// Seals a hand-made inner plaintext and sender part.
    fn seal_raw(sender_identity: &[u8; KEY_LEN], mut inner: Vec<u8>) -> Vec<u8> {
        let (alice, _, bob, bob_address) = parties();
        seal_padded(
            &alice,
            sender_identity,
            &bob.public_key(),
            &bob_address,
            &mut inner,
            &mut FixedRng(3),
        )
        .unwrap()
    }

    fn open_bob(envelope: &[u8]) -> Result<Unsealed, EnvelopeError> {
        let (_, _, bob, bob_address) = parties();
        open(&bob, &bob_address, envelope)
    }

    fn inner(user_id: &str, device_id: u32, message: &[u8]) -> Vec<u8> {
        content(user_id, device_id, message).encode_to_vec()
    }

    fn content(user_id: &str, device_id: u32, message: &[u8]) -> proto::SealedContent {
        proto::SealedContent {
            version: SEALED_CONTENT_VERSION,
            sender_user_id: String::from(user_id),
            sender_device_id: device_id,
            message: message.to_vec(),
            sender_user_key: user().public_key().to_bytes().to_vec(),
            sender_certificate: alice_cert().to_bytes().to_vec(),
        }
    }

    #[test]
    fn the_reserve_fits_the_largest_address_and_prekey_framing() {
        let longest = Address::new(&"u".repeat(64), u32::MAX).unwrap();
        let identity = IdentityKeyPair::from_seed(&[1; 32]).public_key();
        let mut worst_margin = usize::MAX;
        for len in [
            16,
            127,
            128,
            200,
            16_383,
            16_384,
            131_088,
            MAX_MESSAGE_LEN - 400,
        ] {
            for message in [ratchet(len), prekey(identity, len, u32::MAX)] {
                let encoded = inner(longest.user_id(), longest.device_id(), &message.to_wire());
                let room = ciphertext_len(&message) + INNER_RESERVE;
                assert!(encoded.len() < room, "{len}");
                worst_margin = worst_margin.min(room - encoded.len());
            }
        }
        // The worst case leaves room to spare, but not a wasteful amount.
        assert!((2..=96).contains(&worst_margin), "{worst_margin}");
    }

    #[test]
    fn round_trip_and_fixed_draw() {
        let (alice, alice_address, bob, bob_address) = parties();
        let message = ratchet(176);
        let envelope = seal_alice(&message, &mut FixedRng(3)).unwrap();
        let again = seal_alice(&message, &mut FixedRng(3)).unwrap();
        assert_eq!(envelope, again, "only the RNG's 32 bytes vary an envelope");
        let opened = open(&bob, &bob_address, &envelope).unwrap();
        assert_eq!(opened.sender_identity, alice.public_key());
        assert_eq!(opened.sender_address, alice_address);
        assert_eq!(opened.sender_user_key, user().public_key());
        assert_eq!(opened.message, message);
    }

    #[test]
    fn the_sender_certificate_must_verify() {
        let alice = IdentityKeyPair::from_seed(&[1; 32]).public_key().to_bytes();
        let message = ratchet(16).to_wire();
        let room = 16 + INNER_RESERVE;
        let good = content("alice", 1, &message);
        assert!(open_bob(&seal_raw(
            &alice,
            padding::pad_to(&good.encode_to_vec(), room)
        ))
        .is_ok());
        // Another user key than the one that signed; another device id or
        // user id than certified; a changed signature byte.
        let mut other_key = good.clone();
        other_key.sender_user_key = UserKeyPair::from_seed(&[22; 32])
            .public_key()
            .to_bytes()
            .to_vec();
        let mut bad_signature = good.clone();
        bad_signature.sender_certificate[5] ^= 1;
        for c in [
            other_key,
            content("alice", 2, &message),
            content("alicf", 1, &message),
            bad_signature,
        ] {
            assert_eq!(
                open_bob(&seal_raw(&alice, padding::pad_to(&c.encode_to_vec(), room))),
                Err(EnvelopeError::InvalidSenderCertificate)
            );
        }
        // A sender part naming another identity than the certified one.
        let carol = IdentityKeyPair::from_seed(&[23; 32]);
        let (_, _, bob, bob_address) = parties();
        let mut padded = padding::pad_to(&good.encode_to_vec(), room);
        let envelope = seal_padded(
            &carol,
            &carol.public_key().to_bytes(),
            &bob.public_key(),
            &bob_address,
            &mut padded,
            &mut FixedRng(3),
        )
        .unwrap();
        assert_eq!(
            open_bob(&envelope),
            Err(EnvelopeError::InvalidSenderCertificate)
        );
        // Missing or malformed user key and certificate fields.
        let mut no_key = good.clone();
        no_key.sender_user_key.clear();
        let mut short_cert = good.clone();
        short_cert.sender_certificate.pop();
        let mut weak_key = good;
        weak_key.sender_user_key = [0u8; 32].to_vec();
        weak_key.sender_user_key[0] = 1;
        for (c, e) in [
            (no_key, WireError::MissingField("sender_user_key")),
            (
                short_cert,
                WireError::InvalidLength {
                    field: "sender_certificate",
                    expected: 64,
                    actual: 63,
                },
            ),
            (
                weak_key,
                WireError::InvalidKey {
                    field: "sender_user_key",
                    error: KeyError::WeakIdentityKey,
                },
            ),
        ] {
            assert_eq!(
                open_bob(&seal_raw(&alice, padding::pad_to(&c.encode_to_vec(), room))),
                Err(EnvelopeError::InnerMalformed(e))
            );
        }
    }

    #[test]
    fn a_sender_part_that_is_not_an_identity_key_is_refused() {
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let message = ratchet(16).to_wire();
        let body = inner("alice", 1, &message);
        let envelope = seal_raw(&not_a_point, padding::pad_to(&body, 16 + INNER_RESERVE));
        assert_eq!(
            open_bob(&envelope),
            Err(EnvelopeError::InvalidSenderIdentity(
                KeyError::InvalidIdentityKey
            ))
        );
        let mut small_order = [0u8; 32];
        small_order[0] = 1;
        let envelope = seal_raw(&small_order, padding::pad_to(&body, 16 + INNER_RESERVE));
        assert_eq!(
            open_bob(&envelope),
            Err(EnvelopeError::InvalidSenderIdentity(
                KeyError::WeakIdentityKey
            ))
        );
    }

    #[test]
    fn malformed_inner_content_is_refused() {
        let alice = IdentityKeyPair::from_seed(&[1; 32]).public_key().to_bytes();
        let message = ratchet(16).to_wire();
        let room = 16 + INNER_RESERVE;
        let cases: [(Vec<u8>, EnvelopeError); 6] = [
            (vec![0; room], EnvelopeError::InnerPadding),
            (
                padding::pad_to(&[0xff, 0xff, 0xff], room),
                EnvelopeError::InnerMalformed(WireError::Malformed),
            ),
            (
                padding::pad_to(&inner("alice", 1, &message), room + 1),
                EnvelopeError::InnerPadding,
            ),
            (
                padding::pad_to(&inner("", 1, &message), room),
                EnvelopeError::InnerMalformed(WireError::InvalidValue("sender_address")),
            ),
            (
                padding::pad_to(&inner("alice", 0, &message), room),
                EnvelopeError::InnerMalformed(WireError::InvalidValue("sender_address")),
            ),
            (
                padding::pad_to(&inner("alice", 1, &[1, 2, 3]), room),
                EnvelopeError::InnerMalformed(WireError::Malformed),
            ),
        ];
        for (i, (padded, error)) in cases.into_iter().enumerate() {
            assert_eq!(open_bob(&seal_raw(&alice, padded)), Err(error), "case {i}");
        }
        let mut wrong_version =
            proto::SealedContent::decode(&inner("alice", 1, &message)[..]).unwrap();
        for version in [1, 3] {
            wrong_version.version = version;
            assert_eq!(
                open_bob(&seal_raw(
                    &alice,
                    padding::pad_to(&wrong_version.encode_to_vec(), room)
                )),
                Err(EnvelopeError::InnerMalformed(WireError::UnknownVersion(
                    version
                )))
            );
        }
    }

    #[test]
    fn a_prekey_message_must_carry_the_sealed_identity() {
        let (alice, _, bob, bob_address) = parties();
        let mallory = IdentityKeyPair::from_seed(&[9; 32]).public_key();
        for (claimed, expected) in [
            (alice.public_key(), Ok(())),
            (mallory, Err(EnvelopeError::SenderIdentityMismatch)),
        ] {
            let envelope = seal_alice(&prekey(claimed, 176, 3), &mut FixedRng(4)).unwrap();
            assert_eq!(open(&bob, &bob_address, &envelope).map(|_| ()), expected);
        }
    }

    #[test]
    fn oversize_session_messages_are_not_sealed() {
        let result = seal_alice(&ratchet(MAX_MESSAGE_LEN), &mut FixedRng(4));
        assert!(
            matches!(result, Err(EnvelopeError::TooLarge { .. })),
            "{result:?}"
        );
    }
}
