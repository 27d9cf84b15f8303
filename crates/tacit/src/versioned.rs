//! Versioned records kept in storage (sessions, session records,
//! accounts): one version byte, then the postcard encoding of the body.
//!
//! Reading checks the version and refuses trailing bytes; each record type
//! then checks its invariants and that it re-encodes to exactly the bytes
//! read (postcard itself accepts non-minimal varints).

use alloc::vec::Vec;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::StateError;

/// `version || postcard(body)`, zeroized when dropped (records hold secrets).
pub(crate) fn encode<T: Serialize>(version: u8, body: &T) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    out.push(version);
    // Serializing into a Vec cannot fail for the record types.
    if let Ok(encoded) = postcard::to_allocvec(body) {
        let encoded = Zeroizing::new(encoded);
        out.extend_from_slice(&encoded);
    }
    out
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

/// Refuses a record that does not re-encode to the bytes it was read from.
pub(crate) fn ensure_canonical(re_encoded: &[u8], bytes: &[u8]) -> Result<(), StateError> {
    if re_encoded == bytes {
        Ok(())
    } else {
        Err(StateError::Corrupt)
    }
}
