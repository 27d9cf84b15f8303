//! Versioned records kept in storage (sessions, session records,
//! accounts): one version byte, then the postcard encoding of the body.
//!
//! Reading checks the version and refuses trailing bytes; each record type
//! then checks its invariants and that it is in its canonical encoding
//! (postcard itself accepts non-minimal varints): by re-encoding it, or,
//! where every other field has a single encoding, by
//! [`decode_canonical`]'s length check.

use alloc::vec::Vec;

use postcard::ser_flavors::Size;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::StateError;

/// `version || postcard(body)`, zeroized when dropped (records hold secrets).
///
/// A first pass measures the encoding, so the buffer is allocated once at
/// its exact length and never grows: a growing buffer would leave copies of
/// the root, chain and private keys in freed memory on every reallocation.
pub(crate) fn encode<T: Serialize>(version: u8, body: &T) -> Zeroizing<Vec<u8>> {
    // Serializing the record types cannot fail (no map without a length,
    // no custom error), whatever the flavor.
    let len = postcard::serialize_with_flavor::<T, _, usize>(body, Size::default()).unwrap_or(0);
    let mut out = Zeroizing::new(Vec::new());
    out.reserve_exact(1 + len);
    out.push(version);
    let _ = postcard::to_extend(body, Append(&mut out));
    out
}

/// Appends to a buffer by reference, so that it never leaves the zeroizing
/// wrapper (not even on an error inside postcard).
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

/// The body of a record of `version`: `Empty`, `UnknownVersion`, or
/// `Corrupt` when it does not decode or has trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, StateError> {
    let (&found, body) = bytes.split_first().ok_or(StateError::Empty)?;
    if found != version {
        return Err(StateError::UnknownVersion(found));
    }
    let (record, rest): (T, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| StateError::Corrupt)?;
    if !rest.is_empty() {
        return Err(StateError::Corrupt);
    }
    Ok(record)
}

/// [`decode`], and refuses a body that is not postcard's canonical
/// encoding of what it decodes to, without re-encoding it.
///
/// Postcard's encoding of a value is unique except for varints, which it
/// reads in any length; and it is a concatenation, so a body is as long as
/// the sum of its fields' encodings. The canonical (minimal) encoding is
/// therefore the shortest of a value's encodings, and any non-minimal
/// varint makes the body longer: the body is canonical exactly when its
/// length is the measured length of the canonical encoding. Measuring
/// writes nothing and allocates nothing.
///
/// Canonical for `T`'s postcard form only: a record whose fields are
/// converted further (and could be normalized by that) must refuse any
/// value that would not convert back to the same field.
pub(crate) fn decode_canonical<T: DeserializeOwned + Serialize>(
    version: u8,
    bytes: &[u8],
) -> Result<T, StateError> {
    let record: T = decode(version, bytes)?;
    let canonical_len = postcard::serialize_with_flavor::<T, _, usize>(&record, Size::default())
        .map_err(|_| StateError::Corrupt)?;
    if canonical_len + 1 != bytes.len() {
        return Err(StateError::Corrupt);
    }
    Ok(record)
}

/// Refuses a record that does not re-encode to the bytes it was read from.
pub(crate) fn ensure_canonical(re_encoded: &[u8], bytes: &[u8]) -> Result<(), StateError> {
    if re_encoded == bytes {
        Ok(())
    } else {
        Err(StateError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[derive(serde::Serialize)]
    struct Body {
        key: [u8; 32],
        chain: Vec<[u8; 32]>,
    }

    /// The buffer is allocated once at the final length: with a growing
    /// buffer (`Vec::new` or a guessed capacity) the capacity exceeds the
    /// length for most sizes, and each reallocation left a copy behind.
    #[test]
    fn encoding_is_allocated_at_its_exact_length() {
        for chains in [0, 1, 7, 8, 100, 1000] {
            let body = Body {
                key: [0x42; 32],
                chain: vec![[0x17; 32]; chains],
            };
            let encoded = encode(3, &body);
            assert_eq!(encoded.capacity(), encoded.len(), "{chains} chains");
            let mut expected = vec![3u8];
            expected.extend_from_slice(&postcard::to_allocvec(&body).unwrap());
            assert_eq!(*encoded, expected);
        }
    }
}
