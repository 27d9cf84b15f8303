//! ChaCha20-Poly1305 (RFC 8439, section 2.8) and XChaCha20-Poly1305
//! (draft-irtf-cfrg-xchacha-03), composed from the `chacha20` crate's
//! keystream and orion's Poly1305.
//!
//! The bytes are exactly those of the `chacha20poly1305` crate's
//! `ChaCha20Poly1305` and `XChaCha20Poly1305` (the tests below compare
//! them). The composition exists for speed on the ratchet's short messages:
//! `poly1305` 0.8 (and 0.9) picks an AVX2 backend at run time whose key
//! setup and finalisation cost about 1.7 µs a call whatever the length,
//! because its helpers are not compiled with the `avx2` target feature.
//! orion's Poly1305 is portable code over fiat-crypto's verified field
//! arithmetic and has no such fixed cost; `chacha20` keeps its SIMD
//! keystream.
//!
//! The construction: the Poly1305 one-time key is the first 32 bytes of the
//! keystream block with counter 0; the message is encrypted from counter 1;
//! the tag is Poly1305 over `aad || pad16 || ciphertext || pad16 ||
//! le64(len(aad)) || le64(len(ciphertext))`. Opening checks the tag (in
//! constant time) before it decrypts anything.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::{ChaCha20, XChaCha20};
use orion::hazardous::mac::poly1305::{OneTimeKey, Poly1305};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of a Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// Why an AEAD operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AeadError {
    /// The message is longer than the keystream (about 256 GiB).
    TooLong,
    /// The tag does not authenticate the ciphertext and associated data.
    Authentication,
}

/// ChaCha20-Poly1305 in place: encrypts `buffer` and returns the tag.
pub(crate) fn chacha20poly1305_seal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buffer: &mut [u8],
) -> Result<[u8; TAG_LEN], AeadError> {
    seal(ChaCha20::new(key.into(), nonce.into()), aad, buffer)
}

/// ChaCha20-Poly1305 in place: checks `tag`, then decrypts `buffer`. On
/// failure `buffer` is left as it was.
pub(crate) fn chacha20poly1305_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buffer: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    open(ChaCha20::new(key.into(), nonce.into()), aad, buffer, tag)
}

/// XChaCha20-Poly1305 in place: encrypts `buffer` and returns the tag.
pub(crate) fn xchacha20poly1305_seal(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buffer: &mut [u8],
) -> Result<[u8; TAG_LEN], AeadError> {
    seal(XChaCha20::new(key.into(), nonce.into()), aad, buffer)
}

/// XChaCha20-Poly1305 in place: checks `tag`, then decrypts `buffer`. On
/// failure `buffer` is left as it was.
pub(crate) fn xchacha20poly1305_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buffer: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    open(XChaCha20::new(key.into(), nonce.into()), aad, buffer, tag)
}

/// Takes the Poly1305 key from keystream block 0 and leaves the cipher at
/// block 1.
fn mac_key<C: StreamCipher + StreamCipherSeek>(cipher: &mut C) -> Result<Poly1305, AeadError> {
    let mut block = Zeroizing::new([0u8; 64]);
    cipher
        .try_apply_keystream(block.as_mut())
        .map_err(|_| AeadError::TooLong)?;
    // A 32-byte slice is always a valid one-time key.
    let key = OneTimeKey::from_slice(&block[..32]).map_err(|_| AeadError::TooLong)?;
    Ok(Poly1305::new(&key))
}

/// The tag over `aad` and `ciphertext`.
fn tag(mut mac: Poly1305, aad: &[u8], ciphertext: &[u8]) -> Result<[u8; TAG_LEN], AeadError> {
    const ZEROS: [u8; 16] = [0; 16];
    let mut lengths = [0u8; 16];
    // usize fits in u64 on every supported target.
    lengths[..8].copy_from_slice(&(aad.len() as u64).to_le_bytes());
    lengths[8..].copy_from_slice(&(ciphertext.len() as u64).to_le_bytes());
    // `update` and `finalize` fail only on a finalised state.
    let mut absorb = |data: &[u8]| mac.update(data).map_err(|_| AeadError::Authentication);
    absorb(aad)?;
    absorb(&ZEROS[..(16 - aad.len() % 16) % 16])?;
    absorb(ciphertext)?;
    absorb(&ZEROS[..(16 - ciphertext.len() % 16) % 16])?;
    absorb(&lengths)?;
    let tag = mac.finalize().map_err(|_| AeadError::Authentication)?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.unprotected_as_bytes());
    Ok(out)
}

fn seal<C: StreamCipher + StreamCipherSeek>(
    mut cipher: C,
    aad: &[u8],
    buffer: &mut [u8],
) -> Result<[u8; TAG_LEN], AeadError> {
    let mac = mac_key(&mut cipher)?;
    cipher
        .try_apply_keystream(buffer)
        .map_err(|_| AeadError::TooLong)?;
    tag(mac, aad, buffer)
}

fn open<C: StreamCipher + StreamCipherSeek>(
    mut cipher: C,
    aad: &[u8],
    buffer: &mut [u8],
    expected: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    let mac = mac_key(&mut cipher)?;
    let computed = tag(mac, aad, buffer)?;
    if !bool::from(computed.ct_eq(expected)) {
        return Err(AeadError::Authentication);
    }
    cipher
        .try_apply_keystream(buffer)
        .map_err(|_| AeadError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit, XChaCha20Poly1305};
    use proptest::prelude::*;

    #[test]
    fn rfc8439_section_2_8_2() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut buffer = plaintext.to_vec();
        let tag = chacha20poly1305_seal(&key, &nonce, &aad, &mut buffer).unwrap();
        assert_eq!(
            hex::encode(&buffer),
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
        );
        assert_eq!(hex::encode(tag), "1ae10b594f09e26a7e902ecbd0600691");
        chacha20poly1305_open(&key, &nonce, &aad, &mut buffer, &tag).unwrap();
        assert_eq!(buffer, plaintext);
    }

    #[test]
    fn xchacha_draft_03_appendix_a_3_1() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 24] = core::array::from_fn(|i| 0x40 + i as u8);
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut buffer = plaintext.to_vec();
        let tag = xchacha20poly1305_seal(&key, &nonce, &aad, &mut buffer).unwrap();
        assert_eq!(
            hex::encode(&buffer),
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
        );
        assert_eq!(hex::encode(tag), "c0875924c1c7987947deafd8780acf49");
    }

    #[test]
    fn a_bad_tag_leaves_the_buffer_as_it_was() {
        let mut buffer = *b"some ciphertext";
        let before = buffer;
        let mut tag = chacha20poly1305_seal(&[1; 32], &[2; 12], b"ad", &mut buffer).unwrap();
        let sealed = buffer;
        tag[0] ^= 1;
        let opened = chacha20poly1305_open(&[1; 32], &[2; 12], b"ad", &mut buffer, &tag);
        assert_eq!(opened, Err(AeadError::Authentication));
        assert_eq!(buffer, sealed);
        assert_ne!(buffer, before);
    }

    proptest! {
        #[test]
        fn same_bytes_as_the_chacha20poly1305_crate(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..200),
            plaintext in proptest::collection::vec(any::<u8>(), 0..700),
        ) {
            let mut ours = plaintext.clone();
            let short: [u8; 12] = core::array::from_fn(|i| nonce[i]);
            let tag = chacha20poly1305_seal(&key, &short, &aad, &mut ours).unwrap();
            let mut theirs = plaintext.clone();
            let their_tag = ChaCha20Poly1305::new(&key.into())
                .encrypt_in_place_detached(&short.into(), &aad, &mut theirs)
                .unwrap();
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(&tag[..], &their_tag[..]);
            chacha20poly1305_open(&key, &short, &aad, &mut ours, &tag).unwrap();
            prop_assert_eq!(&ours, &plaintext);

            let mut ours: Vec<u8> = plaintext.clone();
            let tag = xchacha20poly1305_seal(&key, &nonce, &aad, &mut ours).unwrap();
            let mut theirs = plaintext.clone();
            let their_tag = XChaCha20Poly1305::new(&key.into())
                .encrypt_in_place_detached(&nonce.into(), &aad, &mut theirs)
                .unwrap();
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(&tag[..], &their_tag[..]);
            xchacha20poly1305_open(&key, &nonce, &aad, &mut ours, &tag).unwrap();
            prop_assert_eq!(&ours, &plaintext);
        }
    }
}
