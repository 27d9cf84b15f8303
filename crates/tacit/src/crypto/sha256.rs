//! SHA-256 (FIPS 180-4) driven over `sha2`'s compression function, with the
//! chaining state and the buffered partial block in one type that is
//! zeroized when dropped.
//!
//! The `sha2` 0.10 hasher keeps its state in `digest`'s buffers, which are
//! not wiped (its `zeroize` feature exists only from `digest` 0.11, which
//! needs a newer Rust than the crate supports). Keyed with a chain key, that
//! state is as secret as the key, so HMAC is built on this type instead;
//! the compression function (with its SHA-NI and AVX2 paths) is `sha2`'s.

use sha2::digest::generic_array::GenericArray;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The SHA-256 block length in bytes.
pub(crate) const BLOCK_LEN: usize = 64;

/// The initial hash value `H(0)` of SHA-256.
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// An incremental SHA-256 computation, wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Sha256 {
    /// The chaining value after `blocks` compressed blocks.
    state: [u32; 8],
    /// Bytes not yet compressed (the first `buffered`).
    block: [u8; BLOCK_LEN],
    /// How many bytes of `block` are in use, always below `BLOCK_LEN`.
    buffered: usize,
    /// How many blocks have been compressed.
    blocks: u64,
}

impl Sha256 {
    /// An empty computation.
    pub(crate) fn new() -> Self {
        Self {
            state: IV,
            block: [0; BLOCK_LEN],
            buffered: 0,
            blocks: 0,
        }
    }

    /// Appends `data` to the message.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        if self.buffered > 0 {
            let take = (BLOCK_LEN - self.buffered).min(data.len());
            let (head, rest) = data.split_at(take);
            self.block[self.buffered..self.buffered + take].copy_from_slice(head);
            self.buffered += take;
            data = rest;
            if self.buffered < BLOCK_LEN {
                return;
            }
            self.compress_buffered();
        }
        let mut blocks = data.chunks_exact(BLOCK_LEN);
        for block in &mut blocks {
            self.compress(block);
        }
        let tail = blocks.remainder();
        self.block[..tail.len()].copy_from_slice(tail);
        self.buffered = tail.len();
    }

    /// The digest of the message (the padding of FIPS 180-4, 5.1.1).
    pub(crate) fn finalize(mut self) -> Zeroizing<[u8; 32]> {
        // Cannot overflow for any message this crate hashes (under 2^61 bytes).
        let bit_len = (self.blocks * BLOCK_LEN as u64 + self.buffered as u64) * 8;
        self.block[self.buffered] = 0x80;
        self.block[self.buffered + 1..].fill(0);
        if self.buffered + 1 > BLOCK_LEN - 8 {
            self.compress_buffered();
            self.block.fill(0);
        }
        self.block[BLOCK_LEN - 8..].copy_from_slice(&bit_len.to_be_bytes());
        self.compress_buffered();
        let mut digest = Zeroizing::new([0u8; 32]);
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }

    /// Compresses the buffered block, which is full.
    fn compress_buffered(&mut self) {
        // By reference: a copy of the block on the stack would not be wiped.
        sha2::compress256(
            &mut self.state,
            core::slice::from_ref(GenericArray::from_slice(&self.block)),
        );
        self.blocks += 1;
        self.buffered = 0;
    }

    /// Compresses one 64-byte block of the message.
    fn compress(&mut self, block: &[u8]) {
        sha2::compress256(
            &mut self.state,
            core::slice::from_ref(GenericArray::from_slice(block)),
        );
        self.blocks += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// Every length from 0 to 300 bytes, fed whole and in pieces of every
    /// size, against `sha2`'s own hasher.
    #[test]
    fn matches_sha2_at_every_length_and_split() {
        let message: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..message.len() {
            let expected: [u8; 32] = sha2::Sha256::digest(&message[..len]).into();
            let mut whole = Sha256::new();
            whole.update(&message[..len]);
            assert_eq!(*whole.finalize(), expected, "length {len}");
            for piece in [1, 3, 63, 64, 65] {
                let mut split = Sha256::new();
                for chunk in message[..len].chunks(piece) {
                    split.update(chunk);
                }
                assert_eq!(*split.finalize(), expected, "length {len}, pieces {piece}");
            }
        }
    }

    #[test]
    fn fips_180_abc() {
        let mut hash = Sha256::new();
        hash.update(b"abc");
        assert_eq!(
            hex::encode(*hash.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
