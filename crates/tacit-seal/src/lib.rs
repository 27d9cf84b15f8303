//! Records of tacit stores sealed at rest: the construction that
//! `tacit-sqlite` and `tacit-wasm` share, each under its own label.
//!
//! ```text
//! record_key = HMAC-SHA256(app_key, label || "/record")
//! index_key  = HMAC-SHA256(app_key, label || "/index")
//! aad        = label || 0x00 || table || 0x00 || row key
//!              || gen (u64 big-endian: the generation that wrote the row)
//! sealed     = 0x02 || nonce (24 random bytes)
//!              || XChaCha20-Poly1305(record_key, nonce, record, aad)
//! ```
//!
//! The associated data binds a record to its table and row, so a record
//! copied to another row does not open. The index key makes tags
//! ([`RecordSealer::tag`]): row keys that do not show a user id in clear.
//! Version 1 (the same without the generation) is still opened for rows of
//! generation 0.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Why a record could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The random number generator failed to give a nonce.
    Randomness,
    /// The record is longer than the AEAD can seal.
    TooLong,
}

impl core::fmt::Display for SealError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Randomness => "randomness failed",
            Self::TooLong => "record too long",
        })
    }
}

impl core::error::Error for SealError {}

/// The version byte of a sealed record: its associated data ends with the
/// row's generation. (Version 1, without it, is read for rows of
/// generation 0.)
pub const SEAL_VERSION: u8 = 2;
/// The length of a sealed record's nonce.
pub const NONCE_LEN: usize = 24;

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac(key: &[u8; 32], message: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Zeroizing::new([0u8; 32]),
    };
    mac.update(message);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The keys a store derives from its application key, and its label.
#[derive(Clone)]
pub struct RecordSealer {
    label: &'static str,
    record_key: Zeroizing<[u8; 32]>,
    index_key: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecordSealer")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    /// Derives the record and index keys of `app_key` under `label` (for
    /// example `"tacit-sqlite/v1"`).
    pub fn new(app_key: &[u8; 32], label: &'static str) -> Self {
        let derive = |purpose: &[u8]| {
            let mut message = Vec::with_capacity(label.len() + purpose.len());
            message.extend_from_slice(label.as_bytes());
            message.extend_from_slice(purpose);
            hmac(app_key, &message)
        };
        Self {
            label,
            record_key: derive(b"/record"),
            index_key: derive(b"/index"),
        }
    }

    /// The index key, for tags and digests of the store's own.
    pub fn index_key(&self) -> &[u8; 32] {
        &self.index_key
    }

    /// `HMAC-SHA256(index_key, message)`: a row key that does not show
    /// `message` (a user id, say).
    pub fn tag(&self, message: &[u8]) -> [u8; 32] {
        *hmac(&self.index_key, message)
    }

    fn aad(&self, table: &str, row: &[u8], generation: Option<u64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.label.len() + table.len() + row.len() + 10);
        out.extend_from_slice(self.label.as_bytes());
        out.push(0);
        out.extend_from_slice(table.as_bytes());
        out.push(0);
        out.extend_from_slice(row);
        if let Some(generation) = generation {
            out.extend_from_slice(&generation.to_be_bytes());
        }
        out
    }

    /// Seals `plaintext` for `row` of `table` at `generation`, under a
    /// fresh nonce from `rng`.
    pub fn seal(
        &self,
        table: &str,
        row: &[u8],
        generation: u64,
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.try_fill_bytes(&mut nonce)
            .map_err(|_| SealError::Randomness)?;
        let cipher = XChaCha20Poly1305::new(self.record_key.as_ref().into());
        let aad = self.aad(table, row, Some(generation));
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLong)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens the record sealed at `row` of `table` by generation
    /// `generation`; `None` when it does not authenticate there.
    pub fn open(
        &self,
        table: &str,
        row: &[u8],
        generation: u64,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let (&version, rest) = sealed.split_first()?;
        let aad = match version {
            SEAL_VERSION => self.aad(table, row, Some(generation)),
            1 if generation == 0 => self.aad(table, row, None),
            _ => return None,
        };
        if rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.record_key.as_ref().into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const KEY: [u8; 32] = [7; 32];

    fn sealed() -> (RecordSealer, Vec<u8>) {
        let sealer = RecordSealer::new(&KEY, "test/v1");
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let sealed = sealer.seal("sessions", b"row", 3, b"record", &mut rng);
        (sealer, sealed.unwrap_or_default())
    }

    #[test]
    fn opens_where_it_was_sealed() {
        let (sealer, sealed) = sealed();
        let opened = sealer.open("sessions", b"row", 3, &sealed);
        assert_eq!(opened.as_deref().map(Vec::as_slice), Some(&b"record"[..]));
    }

    #[test]
    fn moved_renumbered_flipped_or_rekeyed_does_not_open() {
        let (sealer, sealed) = sealed();
        assert!(sealer.open("identities", b"row", 3, &sealed).is_none());
        assert!(sealer.open("sessions", b"rox", 3, &sealed).is_none());
        assert!(sealer.open("sessions", b"row", 2, &sealed).is_none());
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert!(sealer.open("sessions", b"row", 3, &flipped).is_none());
        }
        assert!(sealer.open("sessions", b"row", 3, &sealed[..20]).is_none());
        let other_label = RecordSealer::new(&KEY, "test/v2");
        assert!(other_label.open("sessions", b"row", 3, &sealed).is_none());
        let other_key = RecordSealer::new(&[8; 32], "test/v1");
        assert!(other_key.open("sessions", b"row", 3, &sealed).is_none());
    }

    #[test]
    fn keys_are_the_documented_hmacs() {
        let sealer = RecordSealer::new(&KEY, "test/v1");
        assert_eq!(sealer.index_key(), &*hmac(&KEY, b"test/v1/index"));
        assert_eq!(
            sealer.tag(b"alice"),
            *hmac(&hmac(&KEY, b"test/v1/index"), b"alice")
        );
    }
}
