//! Message headers and their encryption (`HENCRYPT` / `HDECRYPT`).
//!
//! A header is `DHs_pub (32) || PN (u32) || N (u32)`, 40 bytes, big-endian.
//! It travels as `n (24) || XChaCha20-Poly1305(hk, n, H, aad = AD)`, 80
//! bytes, with a fresh random 24-byte nonce `n`.

use crate::aead::{xchacha20poly1305_open, xchacha20poly1305_seal};
use crate::keys::{PublicKey, SecretKey32};

/// Length of a plaintext header.
pub const HEADER_LEN: usize = 40;
/// Length of the random nonce in front of an encrypted header.
pub const HEADER_NONCE_LEN: usize = 24;
/// Length of an encrypted header: nonce, encrypted header, tag.
pub const ENCRYPTED_HEADER_LEN: usize = HEADER_NONCE_LEN + HEADER_LEN + TAG_LEN;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;

/// A plaintext message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's current ratchet public key, `DHs_pub`.
    pub ratchet_key: PublicKey,
    /// `PN`: the number of messages in the sender's previous sending chain.
    pub previous_chain_length: u32,
    /// `N`: this message's number in the current sending chain.
    pub message_number: u32,
}

impl Header {
    /// The 40-byte encoding `DHs_pub || PN || N`.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(self.ratchet_key.as_bytes());
        out[32..36].copy_from_slice(&self.previous_chain_length.to_be_bytes());
        out[36..].copy_from_slice(&self.message_number.to_be_bytes());
        out
    }

    /// Decodes the 40-byte encoding. Every 40-byte string is a header.
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Self {
        let (key, counters) = bytes.split_at(32);
        let (pn, n) = counters.split_at(4);
        Self {
            ratchet_key: PublicKey::from_bytes(to_array(key)),
            previous_chain_length: u32::from_be_bytes(to_array(pn)),
            message_number: u32::from_be_bytes(to_array(n)),
        }
    }
}

/// `HENCRYPT(hk, H)` with the given nonce: `nonce || ciphertext || tag`.
pub(crate) fn seal(
    header_key: &SecretKey32,
    nonce: &[u8; HEADER_NONCE_LEN],
    header: &Header,
    associated_data: &[u8],
) -> [u8; ENCRYPTED_HEADER_LEN] {
    let mut out = [0u8; ENCRYPTED_HEADER_LEN];
    out[..HEADER_NONCE_LEN].copy_from_slice(nonce);
    let body = &mut out[HEADER_NONCE_LEN..HEADER_NONCE_LEN + HEADER_LEN];
    body.copy_from_slice(&header.to_bytes());
    // Encrypting 40 bytes cannot exceed the AEAD's length limit.
    let tag = xchacha20poly1305_seal(header_key.as_bytes(), nonce, associated_data, body)
        .unwrap_or_default();
    out[HEADER_NONCE_LEN + HEADER_LEN..].copy_from_slice(&tag);
    out
}

/// `HDECRYPT(hk, enc_header)`: the header, or `None` when it does not
/// authenticate under `header_key`.
pub(crate) fn open(
    header_key: &SecretKey32,
    encrypted: &[u8; ENCRYPTED_HEADER_LEN],
    associated_data: &[u8],
) -> Option<Header> {
    let (nonce, rest) = encrypted.split_at(HEADER_NONCE_LEN);
    let (body, tag) = rest.split_at(HEADER_LEN);
    let mut plain: [u8; HEADER_LEN] = to_array(body);
    xchacha20poly1305_open(
        header_key.as_bytes(),
        &to_array(nonce),
        associated_data,
        &mut plain,
        &to_array(tag),
    )
    .ok()?;
    Some(Header::from_bytes(&plain))
}

/// Copies a slice whose length the caller has fixed into an array.
fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            ratchet_key: PublicKey::from_bytes([7; 32]),
            previous_chain_length: 0x0102_0304,
            message_number: u32::MAX,
        }
    }

    #[test]
    fn header_encoding_is_big_endian_and_round_trips() {
        let bytes = sample().to_bytes();
        assert_eq!(&bytes[32..], &[1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(Header::from_bytes(&bytes), sample());
    }

    #[test]
    fn sealed_header_opens_only_with_its_key_and_ad() {
        let hk = SecretKey32::from_bytes([1; 32]);
        let sealed = seal(&hk, &[9; 24], &sample(), b"ad");
        assert_eq!(&sealed[..24], &[9; 24]);
        assert_eq!(open(&hk, &sealed, b"ad"), Some(sample()));
        assert_eq!(open(&hk, &sealed, b"ax"), None);
        assert_eq!(
            open(&SecretKey32::from_bytes([2; 32]), &sealed, b"ad"),
            None
        );
        for i in 0..ENCRYPTED_HEADER_LEN {
            let mut tampered = sealed;
            tampered[i] ^= 0x01;
            assert_eq!(open(&hk, &tampered, b"ad"), None, "byte {i}");
        }
    }
}
