//! Shared input shaping for the fuzz targets.

/// A real `sample` damaged as the fuzz input says: `rest` starts with a
/// little-endian `u16` offset (0 when `rest` is shorter); with bit `0x40`
/// of `selector` set, the sample is first cut to `offset % (len + 1)`
/// bytes; then the bytes of `rest` after the offset are XORed in from
/// `offset % len` on.
pub fn mutate(selector: u8, rest: &[u8], sample: &[u8]) -> Vec<u8> {
    let mut out = sample.to_vec();
    let (offset, xor) = match rest.split_first_chunk::<2>() {
        Some((o, x)) => (usize::from(u16::from_le_bytes(*o)), x),
        None => (0, rest),
    };
    if selector & 0x40 != 0 {
        out.truncate(offset % (out.len() + 1));
    }
    let start = offset % out.len().max(1);
    for (dst, src) in out.iter_mut().skip(start).zip(xor) {
        *dst ^= src;
    }
    out
}
