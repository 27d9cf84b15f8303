//! Fields of a `Content` that this build does not know: how a later
//! version adds to a content without older receivers losing the message
//! (`docs/PROTOCOL.md` section 10, "Forward compatibility").
//!
//! A content's encoding is its known fields (1 to 6) in canonical form,
//! then any number of fields numbered [`FIRST_UNKNOWN_FIELD`] or above, in
//! non-decreasing field-number order, each canonical on its own: a minimal
//! tag varint, a wire type of 0 (a minimal varint), 1 (8 bytes), 2 (a
//! minimal varint length, then that many bytes) or 5 (4 bytes). Groups
//! (wire types 3 and 4), a field number of 0 or above `2^29 - 1`, and a
//! record cut short are malformed. The unknown part is kept byte for byte,
//! so re-encoding a decoded content gives the same bytes.

use crate::error::WireError;

/// The first field number a `Content` leaves to later versions.
pub const FIRST_UNKNOWN_FIELD: u32 = 7;

/// The largest protobuf field number.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// A minimal varint at `bytes[*at..]`, advancing `at`.
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *bytes.get(*at + i).ok_or(WireError::Malformed)?;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(WireError::Malformed);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(WireError::NonCanonical);
            }
            *at += i + 1;
            return Ok(value);
        }
    }
    Err(WireError::Malformed)
}

/// Skips the value of a record of `wire_type` at `bytes[*at..]`.
fn skip_value(bytes: &[u8], at: &mut usize, wire_type: u64) -> Result<(), WireError> {
    let len = match wire_type {
        0 => return varint(bytes, at).map(|_| ()),
        1 => 8,
        2 => usize::try_from(varint(bytes, at)?).map_err(|_| WireError::Malformed)?,
        5 => 4,
        _ => return Err(WireError::Malformed),
    };
    let end = at
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or(WireError::Malformed)?;
    *at = end;
    Ok(())
}

/// The offset at which the unknown fields of an encoded `Content` start
/// (`bytes.len()` when there are none), after checking that every record
/// from there on is an unknown field as the module documentation says, in
/// order. Records before it are left to the known fields' strict decoding.
pub(crate) fn split(bytes: &[u8]) -> Result<usize, WireError> {
    let mut at = 0;
    let mut start = None;
    let mut last_number = 0;
    while at < bytes.len() {
        let record = at;
        let tag = varint(bytes, &mut at)?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireError::Malformed);
        }
        skip_value(bytes, &mut at, tag & 7)?;
        if number >= u64::from(FIRST_UNKNOWN_FIELD) {
            start.get_or_insert(record);
            if number < last_number {
                return Err(WireError::NonCanonical);
            }
            last_number = number;
        } else if start.is_some() {
            // A known field after an unknown one.
            return Err(WireError::NonCanonical);
        }
    }
    Ok(start.unwrap_or(bytes.len()))
}

/// The value of the only record of field `number` in `unknown` (unknown
/// fields that [`split`] accepted), if there is exactly one and it is of
/// wire type 2; `None` otherwise.
pub(crate) fn only_bytes_field(unknown: &[u8], number: u32) -> Option<&[u8]> {
    let mut at = 0;
    let mut found = None;
    let mut count = 0usize;
    while at < unknown.len() {
        let tag = varint(unknown, &mut at).ok()?;
        let start = at;
        skip_value(unknown, &mut at, tag & 7).ok()?;
        if tag >> 3 == u64::from(number) {
            count += 1;
            if tag & 7 == 2 {
                // The value is what follows its length.
                let mut value_at = start;
                varint(unknown, &mut value_at).ok()?;
                found = unknown.get(value_at..at);
            }
        }
    }
    if count == 1 {
        found
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_after_the_known_fields() {
        // Field 1 = 1, then field 7 = 1, field 7 = bytes "a", field 9 fixed32.
        let bytes = [0x08, 0x01, 0x38, 0x01, 0x3a, 0x01, b'a', 0x4d, 0, 0, 0, 0];
        assert_eq!(split(&bytes), Ok(2));
        assert_eq!(split(&bytes[..2]), Ok(2));
        assert_eq!(split(&[]), Ok(0));
        // A fixed64 field.
        assert_eq!(split(&[0x39, 1, 2, 3, 4, 5, 6, 7, 8]), Ok(0));
    }

    #[test]
    fn refuses_what_is_not_canonical_or_not_a_record() {
        let cases: [(&[u8], WireError); 11] = [
            // A known field after an unknown one.
            (&[0x38, 0x01, 0x08, 0x01], WireError::NonCanonical),
            // Unknown fields out of order.
            (&[0x48, 0x01, 0x38, 0x01], WireError::NonCanonical),
            // A non-minimal varint value, length and tag.
            (&[0x38, 0x81, 0x00], WireError::NonCanonical),
            (&[0x3a, 0x80, 0x00], WireError::NonCanonical),
            (&[0xb8, 0x80, 0x00, 0x01], WireError::NonCanonical),
            // A group, field number 0, a record cut short.
            (&[0x3b, 0x3c], WireError::Malformed),
            (&[0x00, 0x01], WireError::Malformed),
            (&[0x3a, 0x02, b'a'], WireError::Malformed),
            (&[0x39, 1, 2, 3], WireError::Malformed),
            (&[0x38], WireError::Malformed),
            // A varint of 11 bytes.
            (
                &[
                    0x38, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                WireError::Malformed,
            ),
        ];
        for (i, (bytes, error)) in cases.iter().enumerate() {
            assert_eq!(split(bytes).as_ref(), Err(error), "case {i}");
        }
    }

    #[test]
    fn finds_the_only_bytes_record_of_a_field() {
        // Field 7 varint, field 16 bytes "ab", field 17 bytes "c".
        let bytes = [0x38, 0x00, 0x82, 0x01, 2, b'a', b'b', 0x8a, 0x01, 1, b'c'];
        assert_eq!(only_bytes_field(&bytes, 16), Some(&b"ab"[..]));
        assert_eq!(only_bytes_field(&bytes, 17), Some(&b"c"[..]));
        assert_eq!(only_bytes_field(&bytes, 7), None, "not of wire type 2");
        assert_eq!(only_bytes_field(&bytes, 8), None, "absent");
        // Twice: neither is taken.
        let twice = [0x82, 0x01, 1, b'a', 0x82, 0x01, 1, b'b'];
        assert_eq!(only_bytes_field(&twice, 16), None);
        // Once as bytes and once as a varint: a repeat too.
        let mixed = [0x80, 0x01, 5, 0x82, 0x01, 1, b'b'];
        assert_eq!(only_bytes_field(&mixed, 16), None);
        assert_eq!(only_bytes_field(&[0x82, 0x01, 0], 16), Some(&b""[..]));
    }
}
