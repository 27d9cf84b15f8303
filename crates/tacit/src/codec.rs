//! A strict reader and an exact-size writer for records in postcard's
//! layout (unsigned LEB128 varints, raw fixed-size arrays, `0x00`/`0x01`
//! option tags, length-prefixed sequences).
//!
//! The writer fills a [`Zeroizing`] buffer allocated once at the exact
//! length the caller computed, so no reallocation leaves a copy of a secret
//! in freed memory. The reader accepts only the canonical encoding (minimal
//! varints, option tags 0 or 1), so a record read needs no re-encoding to
//! check it.

use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::error::StateError;

/// The length of `value` as a varint.
pub(crate) const fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// Writes into a buffer of a fixed, exact capacity.
pub(crate) struct Writer {
    out: Zeroizing<Vec<u8>>,
}

impl Writer {
    /// A writer for exactly `len` bytes.
    pub(crate) fn with_len(len: usize) -> Self {
        Self {
            out: Zeroizing::new(Vec::with_capacity(len)),
        }
    }

    /// One byte.
    pub(crate) fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    /// Raw bytes, no length.
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// An unsigned LEB128 varint.
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // The low 7 bits, with the continuation bit.
            self.out.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    /// The bytes written. In debug builds, checks that the length computed
    /// up front was exact.
    pub(crate) fn finish(self) -> Zeroizing<Vec<u8>> {
        debug_assert_eq!(self.out.len(), self.out.capacity());
        self.out
    }
}

/// Reads a canonical encoding; every error is [`StateError::Corrupt`].
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// One byte.
    pub(crate) fn byte(&mut self) -> Result<u8, StateError> {
        let (&b, rest) = self.rest.split_first().ok_or(StateError::Corrupt)?;
        self.rest = rest;
        Ok(b)
    }

    /// `n` raw bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.rest.len() < n {
            return Err(StateError::Corrupt);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// A 32-byte array.
    pub(crate) fn array32(&mut self) -> Result<[u8; 32], StateError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    /// A minimal varint of at most `max_bytes` bytes whose value is at
    /// most `max`.
    fn varint(&mut self, max_bytes: usize, max: u64) -> Result<u64, StateError> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            // The tenth byte of a u64 holds its top bit only.
            if i == 9 && b > 1 {
                return Err(StateError::Corrupt);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // A last byte of zero after the first is a redundant group.
                if i > 0 && b == 0 {
                    return Err(StateError::Corrupt);
                }
                return if value <= max {
                    Ok(value)
                } else {
                    Err(StateError::Corrupt)
                };
            }
        }
        Err(StateError::Corrupt)
    }

    /// A `u32` varint.
    pub(crate) fn u32(&mut self) -> Result<u32, StateError> {
        let v = self.varint(5, u64::from(u32::MAX))?;
        u32::try_from(v).map_err(|_| StateError::Corrupt)
    }

    /// A `u64` varint.
    pub(crate) fn u64(&mut self) -> Result<u64, StateError> {
        self.varint(10, u64::MAX)
    }

    /// A sequence length, refused when it exceeds `max`.
    pub(crate) fn len(&mut self, max: usize) -> Result<usize, StateError> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(StateError::Corrupt)
    }

    /// An option tag: `false` for `0x00`, `true` for `0x01`.
    pub(crate) fn option(&mut self) -> Result<bool, StateError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StateError::Corrupt),
        }
    }

    /// Refuses trailing bytes.
    pub(crate) fn finish(self) -> Result<(), StateError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(StateError::Corrupt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_only_minimal_ones_are_read() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut w = Writer::with_len(varint_len(v));
            w.varint(v);
            let bytes = w.finish();
            assert_eq!(bytes.len(), varint_len(v));
            assert_eq!(Reader::new(&bytes).u64(), Ok(v));
        }
        // 0 in two bytes, 1000 with a redundant group, u32 overflow.
        assert!(Reader::new(&[0x80, 0x00]).u64().is_err());
        assert!(Reader::new(&[0xe8, 0x87, 0x00]).u32().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x10]).u32().is_err());
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).u32(),
            Ok(u32::MAX)
        );
        assert!(Reader::new(&[0x80; 11]).u64().is_err());
        assert!(Reader::new(&[2]).option().is_err());
    }
}
