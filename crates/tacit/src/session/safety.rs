//! Safety numbers: a numeric fingerprint of two devices' identity keys for
//! out-of-band verification (read aloud, or compared on both screens).
//!
//! The construction follows the description of Signal's numeric
//! fingerprint, version 1:
//!
//! ```text
//! half(IK, id) : h = SHA-512(0x00 0x00 || Enc(IK) || id)
//!                repeat 5200 times: h = SHA-512(h || Enc(IK))
//!                bytes 0..30 of h, as six 5-byte big-endian integers,
//!                each taken mod 100000 and written as 5 decimal digits
//!                -> 30 digits
//! number       : the two halves (local and remote) sorted as strings and
//!                concatenated, smaller first -> 60 digits
//! ```
//!
//! `Enc(IK)` is the 32-byte Ed25519 identity key and `id` the user id in
//! UTF-8. Sorting makes both sides compute the same number. Identity keys are
//! per device, so a safety number verifies one pair of devices.

use alloc::string::String;
use core::fmt;

use sha2::{Digest, Sha512};

use crate::keys::IdentityKey;

/// Hash iterations per half, as Signal's version 1.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5200;
/// The number of digits of a safety number.
pub const SAFETY_NUMBER_DIGITS: usize = 60;
const VERSION: [u8; 2] = [0, 0];

/// A 60-digit safety number. [`fmt::Display`] groups the digits in twelve
/// blocks of five.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber {
    digits: String,
}

impl SafetyNumber {
    /// The safety number of two devices, each given by its user id and
    /// identity key. The order of the two does not matter.
    pub fn new(
        local_user_id: &str,
        local_identity: &IdentityKey,
        remote_user_id: &str,
        remote_identity: &IdentityKey,
    ) -> Self {
        let local = half(local_identity, local_user_id);
        let remote = half(remote_identity, remote_user_id);
        let (first, second) = if local <= remote {
            (local, remote)
        } else {
            (remote, local)
        };
        let mut digits = String::with_capacity(SAFETY_NUMBER_DIGITS);
        digits.push_str(&first);
        digits.push_str(&second);
        Self { digits }
    }

    /// The 60 digits, without spaces.
    pub fn as_str(&self) -> &str {
        &self.digits
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.digits.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            // The digits are ASCII.
            f.write_str(core::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

/// One side's 30 digits.
fn half(identity: &IdentityKey, user_id: &str) -> String {
    let key = identity.to_bytes();
    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(key)
        .chain_update(user_id.as_bytes())
        .finalize();
    for _ in 0..SAFETY_NUMBER_ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key)
            .finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in hash[..30].chunks_exact(5) {
        let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) % 100_000;
        // Five digits, zero-padded.
        let mut div = 10_000;
        while div > 0 {
            let digit = (value / div) % 10;
            out.push(char::from(b'0' + digit as u8));
            div /= 10;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdentityKeyPair;

    fn key(seed: u8) -> IdentityKey {
        IdentityKeyPair::from_seed(&[seed; 32]).public_key()
    }

    #[test]
    fn symmetric_and_sixty_digits() {
        let ab = SafetyNumber::new("alice", &key(1), "bob", &key(2));
        let ba = SafetyNumber::new("bob", &key(2), "alice", &key(1));
        assert_eq!(ab, ba);
        assert_eq!(ab.as_str().len(), 60);
        assert!(ab.as_str().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(ab.to_string().len(), 60 + 11);
    }

    #[test]
    fn any_change_changes_the_number() {
        let base = SafetyNumber::new("alice", &key(1), "bob", &key(2));
        for other in [
            SafetyNumber::new("alice", &key(3), "bob", &key(2)),
            SafetyNumber::new("alice", &key(1), "bob", &key(3)),
            SafetyNumber::new("alicf", &key(1), "bob", &key(2)),
            SafetyNumber::new("alice", &key(1), "bob2", &key(2)),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn half_is_five_digit_groups_of_the_iterated_hash() {
        // An independent computation of one half, written out longhand.
        let k = key(1).to_bytes();
        let mut h: [u8; 64] = {
            let mut d = Sha512::new();
            d.update([0u8, 0u8]);
            d.update(k);
            d.update(b"alice");
            d.finalize().into()
        };
        for _ in 0..5200 {
            let mut d = Sha512::new();
            d.update(h);
            d.update(k);
            h = d.finalize().into();
        }
        let mut expected = String::new();
        for i in 0..6 {
            let mut v = 0u64;
            for b in &h[5 * i..5 * i + 5] {
                v = v * 256 + u64::from(*b);
            }
            expected.push_str(&alloc::format!("{:05}", v % 100_000));
        }
        assert_eq!(half(&key(1), "alice"), expected);
    }
}
