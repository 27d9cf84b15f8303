//! HKDF-SHA256 and HMAC-SHA256 with output sizes fixed at compile time.
//!
//! Shared by the handshake and the ratchet; their key schedules (labels and
//! splits) live in those modules.
//!
//! Both run on [`sha256::Sha256`], whose state is wiped when dropped, so no
//! keyed hash state (as secret as a chain or root key) outlives its use.

mod sha256;

use zeroize::{ZeroizeOnDrop, Zeroizing};

use sha256::{Sha256, BLOCK_LEN};

/// `HKDF(salt, ikm, info, L)` with HKDF-SHA256 (RFC 5869) and `L` known at
/// compile time. The pseudorandom key, the keyed HMAC states and every
/// output block are wiped when dropped.
pub(crate) fn hkdf<const L: usize>(salt: &[u8; 32], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; L]> {
    const { assert!(L <= 255 * 32, "HKDF-SHA256 output is at most 8160 bytes") };
    let prk = HmacSha256::new(salt).mac(ikm);
    let prf = HmacSha256::new(&prk);
    let mut okm = Zeroizing::new([0u8; L]);
    let mut previous = Zeroizing::new([0u8; 32]);
    // The assertion above bounds the blocks to 255, so the counter never wraps.
    for (counter, chunk) in (1u8..=255).zip(okm.chunks_mut(32)) {
        let t = if counter == 1 {
            prf.mac_parts(&[info, &[counter]])
        } else {
            prf.mac_parts(&[previous.as_ref(), info, &[counter]])
        };
        chunk.copy_from_slice(&t[..chunk.len()]);
        *previous = *t;
    }
    okm
}

/// An HMAC-SHA256 instance keyed with a 32-byte key, ready for several
/// messages under the same key. Its two keyed hash states are as secret as
/// the key and wipe themselves when dropped.
#[derive(Clone)]
pub(crate) struct HmacSha256 {
    /// SHA-256 after absorbing `key XOR ipad`.
    inner: Sha256,
    /// SHA-256 after absorbing `key XOR opad`.
    outer: Sha256,
}

/// Both fields are [`ZeroizeOnDrop`], so dropping the pair wipes it.
impl ZeroizeOnDrop for HmacSha256 {}

impl HmacSha256 {
    /// Keys HMAC-SHA256 (RFC 2104): a 32-byte key is shorter than the
    /// 64-byte block, so it is padded with zeros before the XOR with ipad
    /// (0x36) and opad (0x5c).
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let mut pad = Zeroizing::new([0x36u8; BLOCK_LEN]);
        for (byte, key_byte) in pad.iter_mut().zip(key) {
            *byte ^= key_byte;
        }
        let mut inner = Sha256::new();
        inner.update(pad.as_ref());
        for byte in pad.iter_mut() {
            *byte ^= 0x36 ^ 0x5c;
        }
        let mut outer = Sha256::new();
        outer.update(pad.as_ref());
        Self { inner, outer }
    }

    /// The MAC of `message` under this key.
    pub(crate) fn mac(&self, message: &[u8]) -> Zeroizing<[u8; 32]> {
        self.mac_parts(&[message])
    }

    /// The MAC of the concatenation of `parts` under this key.
    fn mac_parts(&self, parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut inner = self.inner.clone();
        for part in parts {
            inner.update(part);
        }
        let inner_hash = inner.finalize();
        let mut outer = self.outer.clone();
        outer.update(inner_hash.as_ref());
        outer.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hkdf::Hkdf;

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0b; 22];
        let salt: [u8; 13] = core::array::from_fn(|i| i as u8);
        let info: [u8; 10] = core::array::from_fn(|i| 0xf0 + i as u8);
        // Our helper takes a 32-byte salt; check the crate path with the RFC's
        // salt and our helper with a zero salt against the crate directly.
        let mut okm = [0u8; 42];
        Hkdf::<sha2::Sha256>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        let mut direct = [0u8; 42];
        Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), &ikm)
            .expand(&info, &mut direct)
            .unwrap();
        assert_eq!(*hkdf::<42>(&[0u8; 32], &ikm, &info), direct);
    }

    #[test]
    fn hmac_rfc4231_style_short_key_matches_slice_keying() {
        let key = [0x42u8; 32];
        let mut reference = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
        hmac::Mac::update(&mut reference, &[0x01]);
        let expected: [u8; 32] = hmac::Mac::finalize(reference).into_bytes().into();
        assert_eq!(*HmacSha256::new(&key).mac(&[0x01]), expected);
    }

    #[test]
    fn hmac_rfc4231_test_case_2() {
        // Key "Jefe" padded: RFC 4231 test case 2 uses a 4-byte key; zero
        // padding to 32 bytes gives the same MAC.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(*HmacSha256::new(&key).mac(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

/// The wiping itself: a state that does not zeroize on drop (as the
/// `hmac` 0.12 state does not) fails to compile here.
const _: () = {
    const fn wiped_on_drop<T: ZeroizeOnDrop>() {}
    wiped_on_drop::<HmacSha256>();
    wiped_on_drop::<Sha256>();
};

#[cfg(test)]
mod reference {
    use super::*;
    use hkdf::Hkdf;
    use proptest::prelude::*;

    proptest! {
        /// HMAC and HKDF agree with the RustCrypto crates on any key, salt,
        /// message and info, up to several blocks long.
        #[test]
        fn matches_rustcrypto(
            key in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..300),
            info in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut reference = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
            hmac::Mac::update(&mut reference, &message);
            let expected: [u8; 32] = hmac::Mac::finalize(reference).into_bytes().into();
            prop_assert_eq!(*HmacSha256::new(&key).mac(&message), expected);

            let mut okm = [0u8; 200];
            Hkdf::<sha2::Sha256>::new(Some(&key), &message).expand(&info, &mut okm).unwrap();
            prop_assert_eq!(&hkdf::<200>(&key, &message, &info)[..], &okm[..]);
            prop_assert_eq!(&hkdf::<33>(&key, &message, &info)[..], &okm[..33]);
        }
    }
}
