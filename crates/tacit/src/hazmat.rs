//! The AEAD, HKDF and HMAC functions exactly as the protocol code calls
//! them, for checking against external corpora of test cases (the
//! `wycheproof` tests in `tests/`).
//!
//! Not a stable API: compiled only with the `hazmat` feature, which the
//! crate's own tests turn on, and hidden from the documentation. These are
//! thin forwards to the crate-private functions, so that a test exercises
//! the same code the ratchet, sealed sender and linking run; nothing here
//! adds behaviour.

use zeroize::Zeroizing;

use crate::aead;
use crate::crypto;
use crate::keys::SecretKey32;

/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = aead::TAG_LEN;

/// ChaCha20-Poly1305 in place (the ratchet's message body, sealed sender):
/// encrypts `buffer` and returns the tag, or `None` past the keystream.
pub fn chacha20poly1305_seal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buffer: &mut [u8],
) -> Option<[u8; TAG_LEN]> {
    aead::chacha20poly1305_seal(key, nonce, aad, buffer).ok()
}

/// ChaCha20-Poly1305 in place: `true` if `tag` authenticates, and then
/// `buffer` is decrypted; on `false` it is left as it was.
pub fn chacha20poly1305_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buffer: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    aead::chacha20poly1305_open(key, nonce, aad, buffer, tag).is_ok()
}

/// XChaCha20-Poly1305 in place (the ratchet's header, link blobs): encrypts
/// `buffer` and returns the tag, or `None` past the keystream.
pub fn xchacha20poly1305_seal(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buffer: &mut [u8],
) -> Option<[u8; TAG_LEN]> {
    aead::xchacha20poly1305_seal(key, nonce, aad, buffer).ok()
}

/// XChaCha20-Poly1305 in place: `true` if `tag` authenticates, and then
/// `buffer` is decrypted; on `false` it is left as it was.
pub fn xchacha20poly1305_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buffer: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    aead::xchacha20poly1305_open(key, nonce, aad, buffer, tag).is_ok()
}

/// HKDF-SHA256 with a 32-byte salt and `L` output bytes fixed at compile
/// time (`L` over 8160 does not compile).
pub fn hkdf_sha256<const L: usize>(salt: &[u8; 32], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; L]> {
    crypto::hkdf::<L>(salt, ikm, info)
}

/// HMAC-SHA256 of `message` under a 32-byte key (the ratchet's chain step).
pub fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> Zeroizing<[u8; 32]> {
    crypto::HmacSha256::new(key).mac(message)
}

/// The ratchet's chain step `KDF_CK(ck)`: the message key and the next
/// chain key, in that order (for benchmarks).
pub fn ratchet_chain_step(chain_key: &SecretKey32) -> (SecretKey32, SecretKey32) {
    crate::ratchet::kdf::kdf_ck(chain_key)
}
