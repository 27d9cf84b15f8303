//! Length-hiding padding: `data || 0x80 || 0x00...` up to a bucket.
//!
//! # The bucket rule
//!
//! With `n = len(data) + 1` (the data and its `0x80` marker):
//!
//! - `n <= 5120`: the next multiple of 160 bytes ([`PADDING_BLOCK`]);
//! - `5120 < n <= 131072`: Padmé (Nikitin et al., "Reducing Metadata Leakage
//!   from Encrypted Files and Communication with PURBs", PETS 2019): with
//!   `E = floor(log2 n)` and `S = floor(log2 E) + 1`, round `n` up to a
//!   multiple of `2^(E - S)`;
//! - longer inputs are refused ([`MAX_UNPADDED_LEN`]).
//!
//! Why: most messages are short texts, receipts and typing notifications.
//! Blocks of 160 bytes (what Signal clients use) put every text of up to
//! 159 bytes in one bucket and cost at most 159 bytes. For long messages a
//! fixed block leaks more and more (the number of buckets grows with the
//! size), while Padmé leaks `O(log log n)` bits with at most about 12%
//! overhead. The switch is at 5120 bytes, where Padmé's step (256 bytes)
//! is first at least one block, so buckets never get finer as sizes grow.
//!
//! Unpadding is strict: the padded length must be exactly the bucket of the
//! content it holds, the last non-zero byte must be `0x80`, and everything
//! after it zero.

use alloc::vec::Vec;

use crate::error::PaddingError;

/// The block of the small-message buckets.
pub const PADDING_BLOCK: usize = 160;
/// Up to this padded length, buckets are multiples of [`PADDING_BLOCK`];
/// above it, Padmé.
pub const PADME_THRESHOLD: usize = 32 * PADDING_BLOCK;
/// The largest padded length (128 KiB, itself a Padmé bucket).
pub const MAX_PADDED_LEN: usize = 128 * 1024;
/// The longest input [`pad`] accepts.
pub const MAX_UNPADDED_LEN: usize = MAX_PADDED_LEN - 1;

/// The padding marker.
const MARKER: u8 = 0x80;

/// Padmé: rounds `n` up so that only its top `floor(log2 E) + 1` bits after
/// the leading one may be set, `E = floor(log2 n)`.
fn padme(n: usize) -> usize {
    if n < 2 {
        return n;
    }
    let e = usize::BITS - 1 - n.leading_zeros();
    let s = u32::BITS - e.leading_zeros();
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    (n + mask) & !mask
}

/// The padded length of `len` bytes of data, marker included.
pub fn padded_len(len: usize) -> Result<usize, PaddingError> {
    if len > MAX_UNPADDED_LEN {
        return Err(PaddingError::TooLong {
            len,
            max: MAX_UNPADDED_LEN,
        });
    }
    let n = len + 1;
    Ok(if n <= PADME_THRESHOLD {
        n.div_ceil(PADDING_BLOCK) * PADDING_BLOCK
    } else {
        padme(n)
    })
}

/// `data || 0x80 || 0x00...` up to the bucket of `data`'s length.
pub fn pad(data: &[u8]) -> Result<Vec<u8>, PaddingError> {
    let target = padded_len(data.len())?;
    Ok(pad_to(data, target))
}

/// `data || 0x80 || 0x00...` of exactly `target` bytes; the caller ensures
/// `target > data.len()`.
pub(crate) fn pad_to(data: &[u8], target: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.max(data.len() + 1));
    out.extend_from_slice(data);
    out.push(MARKER);
    out.resize(target.max(data.len() + 1), 0);
    out
}

/// The data before the marker, for any padded length.
pub(crate) fn strip(padded: &[u8]) -> Result<&[u8], PaddingError> {
    let end = padded
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(PaddingError::MissingMarker)?;
    if padded[end] != MARKER {
        return Err(PaddingError::NonZeroPadding);
    }
    Ok(&padded[..end])
}

/// Strictly removes padding added by [`pad`]: refuses a missing marker,
/// non-zero bytes after the content, and a length that is not the content's
/// bucket.
pub fn unpad(padded: &[u8]) -> Result<&[u8], PaddingError> {
    if padded.len() > MAX_PADDED_LEN {
        return Err(PaddingError::WrongLength(padded.len()));
    }
    let data = strip(padded)?;
    if padded_len(data.len()) != Ok(padded.len()) {
        return Err(PaddingError::WrongLength(padded.len()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn small_messages_pad_to_blocks_of_160() {
        assert_eq!(padded_len(0), Ok(160));
        assert_eq!(padded_len(159), Ok(160));
        assert_eq!(padded_len(160), Ok(320));
        assert_eq!(padded_len(5119), Ok(5120));
    }

    #[test]
    fn large_messages_use_padme() {
        assert_eq!(padded_len(5120), Ok(5376));
        assert_eq!(padded_len(8191), Ok(8192));
        assert_eq!(padded_len(8192), Ok(8704));
        assert_eq!(padded_len(MAX_UNPADDED_LEN), Ok(MAX_PADDED_LEN));
        assert_eq!(
            padded_len(MAX_PADDED_LEN),
            Err(PaddingError::TooLong {
                len: MAX_PADDED_LEN,
                max: MAX_UNPADDED_LEN
            })
        );
        // Padmé's published examples.
        assert_eq!(padme(9), 10);
        assert_eq!(padme(1000), 1024);
    }

    #[test]
    fn buckets_are_monotone_and_never_finer_than_a_block() {
        let mut previous = 0;
        let mut step_floor = 0;
        for len in 0..=MAX_UNPADDED_LEN {
            let p = padded_len(len).unwrap();
            assert!(p > len && p >= previous, "{len}");
            if p != previous {
                let step = p - previous;
                if previous >= PADME_THRESHOLD {
                    assert!(step >= step_floor, "buckets got finer at {len}");
                    step_floor = step;
                } else {
                    assert!(step == PADDING_BLOCK || previous == 0, "{len}");
                    step_floor = PADDING_BLOCK;
                }
                previous = p;
            }
            // At most 159 bytes below the threshold, 12% above.
            let overhead = p - len - 1;
            if p <= PADME_THRESHOLD {
                assert!(overhead < PADDING_BLOCK);
            } else {
                assert!(overhead * 100 <= 12 * (len + 1), "{len}");
            }
        }
    }

    #[test]
    fn pad_and_unpad_round_trip() {
        for len in [0, 1, 158, 159, 160, 5119, 5120, 70_000, MAX_UNPADDED_LEN] {
            let data = vec![0xa5; len];
            let padded = pad(&data).unwrap();
            assert_eq!(padded.len(), padded_len(len).unwrap());
            assert_eq!(unpad(&padded), Ok(&data[..]));
        }
        // Data that ends in zeros or in the marker itself.
        for data in [vec![0u8; 10], vec![0x80; 10], vec![1, 0, 0x80, 0]] {
            assert_eq!(unpad(&pad(&data).unwrap()), Ok(&data[..]));
        }
    }

    #[test]
    fn unpad_is_strict() {
        assert_eq!(unpad(&[]), Err(PaddingError::MissingMarker));
        assert_eq!(unpad(&[0; 160]), Err(PaddingError::MissingMarker));
        let mut bad = pad(b"hello").unwrap();
        bad[100] = 1;
        assert_eq!(unpad(&bad), Err(PaddingError::NonZeroPadding));
        let mut no_marker = pad(b"hello").unwrap();
        no_marker[5] = 0x7f;
        assert_eq!(unpad(&no_marker), Err(PaddingError::NonZeroPadding));
        // A valid marker but a bucket too large or not a bucket at all.
        let mut long = pad(b"hello").unwrap();
        long.resize(320, 0);
        assert_eq!(unpad(&long), Err(PaddingError::WrongLength(320)));
        let mut short = pad(b"hello").unwrap();
        short.truncate(100);
        assert_eq!(unpad(&short), Err(PaddingError::WrongLength(100)));
        assert_eq!(
            unpad(&vec![0; MAX_PADDED_LEN + 1]),
            Err(PaddingError::WrongLength(MAX_PADDED_LEN + 1))
        );
    }
}
