//! Safety numbers: a numeric fingerprint of two users' keys, compared out
//! of band (read aloud, or on both screens).
//!
//! Exactly libsignal's displayable fingerprint, version 1
//! (`docs/PROTOCOL.md` 14.6):
//!
//! ```text
//! fingerprint(iterations, id, key):
//!     h = SHA-512(0x00 0x00 || key || id || key)
//!     repeat iterations - 1 times: h = SHA-512(h || key)
//!     the first 30 bytes of h as six 5-byte big-endian integers,
//!     each mod 100000, as 5 decimal digits                    -> 30 digits
//! number = the two fingerprints, the smaller string first     -> 60 digits
//! ```
//!
//! Tacit computes it over user keys (`key` = `Enc(UK)`, 32 bytes) and user
//! ids (`id` = UTF-8), with 5200 iterations: one number per pair of users,
//! whatever devices they have.

use alloc::string::String;
use core::fmt;

use sha2::{Digest, Sha512};

use crate::error::IdentityError;
use crate::identity::UserKey;

/// Hash iterations per fingerprint, as libsignal.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5200;
/// The number of digits of a safety number.
pub const SAFETY_NUMBER_DIGITS: usize = 60;
/// The fingerprint format's version bytes.
const VERSION: [u8; 2] = [0, 0];
/// The most iterations [`fingerprint_digits`] accepts (libsignal's bound).
const MAX_ITERATIONS: u32 = 1_000_000;

/// A 60-digit safety number. [`fmt::Display`] groups the digits in twelve
/// blocks of five.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber {
    digits: String,
}

impl SafetyNumber {
    /// The safety number of two users, each given by its user id and user
    /// key. The order of the two does not matter.
    pub fn new(
        local_user_id: &str,
        local_key: &UserKey,
        remote_user_id: &str,
        remote_key: &UserKey,
    ) -> Self {
        let digits = pair(
            fingerprint(
                SAFETY_NUMBER_ITERATIONS,
                local_user_id.as_bytes(),
                &local_key.to_bytes(),
            ),
            fingerprint(
                SAFETY_NUMBER_ITERATIONS,
                remote_user_id.as_bytes(),
                &remote_key.to_bytes(),
            ),
        );
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

/// The raw displayable fingerprint over byte strings: `iterations` rounds
/// (2 to 1,000,000), each party's id and key bytes as given. With libsignal's
/// inputs (33-byte keys with their type byte) this reproduces libsignal's
/// published vectors.
pub fn fingerprint_digits(
    iterations: u32,
    local_id: &[u8],
    local_key: &[u8],
    remote_id: &[u8],
    remote_key: &[u8],
) -> Result<String, IdentityError> {
    if !(2..=MAX_ITERATIONS).contains(&iterations) {
        return Err(IdentityError::InvalidIterations(iterations));
    }
    Ok(pair(
        fingerprint(iterations, local_id, local_key),
        fingerprint(iterations, remote_id, remote_key),
    ))
}

/// The two halves, the smaller first.
fn pair(local: String, remote: String) -> String {
    let (first, second) = if local <= remote {
        (local, remote)
    } else {
        (remote, local)
    };
    let mut digits = String::with_capacity(SAFETY_NUMBER_DIGITS);
    digits.push_str(&first);
    digits.push_str(&second);
    digits
}

/// One party's 30 digits.
fn fingerprint(iterations: u32, id: &[u8], key: &[u8]) -> String {
    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(key)
        .chain_update(id)
        .chain_update(key)
        .finalize();
    for _ in 1..iterations {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key)
            .finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in hash[..30].chunks_exact(5) {
        let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) % 100_000;
        let mut div = 10_000;
        while div > 0 {
            out.push(char::from(b'0' + ((value / div) % 10) as u8));
            div /= 10;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::identity::UserKeyPair;

    fn key(seed: u8) -> UserKey {
        UserKeyPair::from_seed(&[seed; 32]).public_key()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// libsignal's published vector (`fingerprint_test_v1`): Alice and Bob's
    /// 33-byte Curve25519 identity keys, phone numbers as stable ids, 5200
    /// iterations.
    #[test]
    fn libsignal_vector_reproduces() {
        let alice = unhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868");
        let bob = unhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b");
        let expected = "300354477692869396892869876765458257569162576843440918079131";
        let a = fingerprint_digits(5200, b"+14152222222", &alice, b"+14153333333", &bob).unwrap();
        let b = fingerprint_digits(5200, b"+14153333333", &bob, b"+14152222222", &alice).unwrap();
        assert_eq!(a, expected);
        assert_eq!(b, expected);
        // A changed id or key changes it.
        let c = fingerprint_digits(5200, b"+141512222222", &alice, b"+14153333333", &bob).unwrap();
        assert_ne!(c, expected);
    }

    #[test]
    fn iterations_are_bounded() {
        assert_eq!(
            fingerprint_digits(1, b"a", b"k", b"b", b"k"),
            Err(IdentityError::InvalidIterations(1))
        );
        assert_eq!(
            fingerprint_digits(1_000_001, b"a", b"k", b"b", b"k"),
            Err(IdentityError::InvalidIterations(1_000_001))
        );
    }

    #[test]
    fn symmetric_and_sixty_digits() {
        let ab = SafetyNumber::new("alice", &key(1), "bob", &key(2));
        let ba = SafetyNumber::new("bob", &key(2), "alice", &key(1));
        assert_eq!(ab, ba);
        assert_eq!(ab.as_str().len(), 60);
        assert!(ab.as_str().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(ab.to_string().len(), 60 + 11);
        assert_eq!(
            ab.as_str(),
            fingerprint_digits(
                5200,
                b"alice",
                &key(1).to_bytes(),
                b"bob",
                &key(2).to_bytes()
            )
            .unwrap()
        );
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
}
