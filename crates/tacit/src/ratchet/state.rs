//! The serialized form of a [`Ratchet`]: a version byte followed by the
//! session state in postcard's layout (`docs/PROTOCOL.md` section 7).
//!
//! Version 2 holds every field of the profile's state except `DHr`, which
//! header encryption never reads after a step; it stores the ratchet public
//! key beside the private key, so loading needs no base-point
//! multiplication. Version 1, the same without the public key, is still
//! read (the public key is then recomputed). The record is written into a
//! buffer of its exact length and read strictly (minimal varints, option
//! tags 0 or 1, no trailing bytes), then its invariants are checked; no
//! re-encoding is needed to refuse a non-canonical record.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use super::skipped::{SkippedChain, SkippedKeys};
use super::{Chain, Ratchet, RatchetConfig, MAX_ASSOCIATED_DATA_LEN, MAX_SKIPPED_CHAINS};
use crate::codec::{varint_len, Reader, Writer};
use crate::error::StateError;
use crate::keys::{KeyPair, PublicKey, SecretKey32};

/// The current record version.
pub const STATE_VERSION: u8 = 2;
/// The first record version: no ratchet public key.
const STATE_VERSION_1: u8 = 1;

/// An optional chain: its tag, then chain key and header key.
fn chain_len(chain: Option<&Chain>) -> usize {
    1 + if chain.is_some() { 64 } else { 0 }
}

fn write_chain(w: &mut Writer, chain: Option<&Chain>) {
    match chain {
        None => w.byte(0),
        Some(c) => {
            w.byte(1);
            w.raw(c.chain_key.as_bytes());
            w.raw(c.header_key.as_bytes());
        }
    }
}

fn read_chain(r: &mut Reader<'_>) -> Result<Option<Chain>, StateError> {
    if !r.option()? {
        return Ok(None);
    }
    Ok(Some(Chain {
        chain_key: SecretKey32::from_bytes(r.array32()?),
        header_key: SecretKey32::from_bytes(r.array32()?),
    }))
}

fn usize_len(n: usize) -> usize {
    varint_len(u64::try_from(n).unwrap_or(u64::MAX))
}

impl Ratchet {
    /// The length of [`to_bytes`](Self::to_bytes)'s output.
    fn encoded_len(&self) -> usize {
        let c = &self.config;
        let mut len = 1
            + varint_len(u64::from(c.max_skip))
            + varint_len(u64::from(c.max_stored_skipped_keys))
            + usize_len(self.associated_data.len())
            + self.associated_data.len()
            + 3 * 32
            + chain_len(self.sending.as_ref())
            + varint_len(u64::from(self.sent))
            + varint_len(u64::from(self.previous_sent))
            + chain_len(self.receiving.as_ref())
            + varint_len(self.received)
            + 2 * 32
            + usize_len(self.skipped.chains().count());
        for run in self.skipped.chains() {
            len += 32 + usize_len(run.keys.len());
            for (n, _) in &run.keys {
                len += varint_len(u64::from(*n)) + 32;
            }
        }
        len
    }

    /// Serializes the session: one version byte (2), then the state in
    /// postcard's layout. The bytes are written into a buffer of their exact
    /// length (no reallocation copies them) and zeroized when dropped; they
    /// hold secrets and should be stored encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_len(self.encoded_len());
        w.byte(STATE_VERSION);
        w.varint(u64::from(self.config.max_skip));
        w.varint(u64::from(self.config.max_stored_skipped_keys));
        w.varint(u64::try_from(self.associated_data.len()).unwrap_or(u64::MAX));
        w.raw(&self.associated_data);
        w.raw(self.root_key.as_bytes());
        w.raw(self.ratchet_key.private_bytes().as_bytes());
        w.raw(self.ratchet_key.public_key().as_bytes());
        write_chain(&mut w, self.sending.as_ref());
        w.varint(u64::from(self.sent));
        w.varint(u64::from(self.previous_sent));
        write_chain(&mut w, self.receiving.as_ref());
        w.varint(self.received);
        w.raw(self.next_sending_header_key.as_bytes());
        w.raw(self.next_receiving_header_key.as_bytes());
        w.varint(u64::try_from(self.skipped.chains().count()).unwrap_or(u64::MAX));
        for run in self.skipped.chains() {
            w.raw(run.header_key.as_bytes());
            w.varint(u64::try_from(run.keys.len()).unwrap_or(u64::MAX));
            for (n, mk) in &run.keys {
                w.varint(u64::from(*n));
                w.raw(mk.as_bytes());
            }
        }
        w.finish()
    }

    /// Reads a session written by [`to_bytes`](Self::to_bytes), of version
    /// 2 or 1 (see `docs/PROTOCOL.md` section 7.3 for the checks).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let (&version, body) = bytes.split_first().ok_or(StateError::Empty)?;
        if version != STATE_VERSION && version != STATE_VERSION_1 {
            return Err(StateError::UnknownVersion(version));
        }
        read(body, version == STATE_VERSION)
    }
}

/// Reads the body of a record; `with_public_key` for version 2.
fn read(body: &[u8], with_public_key: bool) -> Result<Ratchet, StateError> {
    let mut r = Reader::new(body);
    let config = RatchetConfig::new(r.u32()?, r.u32()?).map_err(|_| StateError::Corrupt)?;
    let ad_len = r.len(MAX_ASSOCIATED_DATA_LEN)?;
    let associated_data = r.take(ad_len)?.to_vec();
    let root_key = SecretKey32::from_bytes(r.array32()?);
    let private = Zeroizing::new(r.array32()?);
    let ratchet_key = if with_public_key {
        // Not checked against the private key: see section 7.3.
        KeyPair::from_stored(*private, PublicKey::from_bytes(r.array32()?))
    } else {
        KeyPair::from_private_bytes(*private)
    };
    let sending = read_chain(&mut r)?;
    let sent = r.u32()?;
    let previous_sent = r.u32()?;
    let receiving = read_chain(&mut r)?;
    let received = r.u64()?;
    let next_sending_header_key = SecretKey32::from_bytes(r.array32()?);
    let next_receiving_header_key = SecretKey32::from_bytes(r.array32()?);
    let skipped = read_skipped(
        &mut r,
        &config,
        receiving.as_ref(),
        received,
        with_public_key,
    )?;
    r.finish()?;
    let invariants = [
        received <= 1 << 32,
        sending.is_some() || (sent == 0 && previous_sent == 0),
        receiving.is_some() || received == 0,
    ];
    if invariants.contains(&false) {
        return Err(StateError::Corrupt);
    }
    Ok(Ratchet {
        config,
        associated_data,
        root_key,
        ratchet_key,
        sending,
        sent,
        previous_sent,
        receiving,
        received,
        next_sending_header_key,
        next_receiving_header_key,
        skipped,
    })
}

/// The skipped-key runs: each non-empty, under distinct header keys, with
/// distinct numbers, below `Nr` in the current receiving chain, at most the
/// cap in all, and (version 2) at most [`MAX_SKIPPED_CHAINS`] runs. A
/// version 1 record may hold more runs: the oldest are evicted.
fn read_skipped(
    r: &mut Reader<'_>,
    config: &RatchetConfig,
    receiving: Option<&Chain>,
    received: u64,
    v2: bool,
) -> Result<SkippedKeys, StateError> {
    let cap = usize::try_from(config.max_stored_skipped_keys).unwrap_or(usize::MAX);
    let max_runs = if v2 { MAX_SKIPPED_CHAINS.min(cap) } else { cap };
    let runs = r.len(max_runs)?;
    let mut chains: VecDeque<SkippedChain> = VecDeque::with_capacity(runs);
    let mut total = 0usize;
    let mut numbers: Vec<u32> = Vec::new();
    for _ in 0..runs {
        let header_key = SecretKey32::from_bytes(r.array32()?);
        if chains.iter().any(|c| c.header_key == header_key) {
            return Err(StateError::Corrupt);
        }
        let n = r.len(cap.saturating_sub(total))?;
        if n == 0 {
            return Err(StateError::Corrupt);
        }
        total = total.saturating_add(n);
        let is_current = receiving.is_some_and(|c| c.header_key == header_key);
        let mut keys = VecDeque::with_capacity(n);
        numbers.clear();
        numbers.reserve(n);
        for _ in 0..n {
            let number = r.u32()?;
            if is_current && u64::from(number) >= received {
                return Err(StateError::Corrupt);
            }
            numbers.push(number);
            keys.push_back((number, SecretKey32::from_bytes(r.array32()?)));
        }
        numbers.sort_unstable();
        if numbers.windows(2).any(|w| w[0] == w[1]) {
            return Err(StateError::Corrupt);
        }
        chains.push_back(SkippedChain { header_key, keys });
    }
    let mut skipped = SkippedKeys::from_chains(chains).ok_or(StateError::Corrupt)?;
    skipped.trim_chains();
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratchet::SessionKeys;

    fn conversation_with_skipped_keys() -> (Ratchet, Ratchet) {
        let mut rng = rand_core::OsRng;
        let keys = || SessionKeys::new([1; 32], [2; 32], [3; 32], b"ad").unwrap();
        let bob_key = KeyPair::generate(&mut rng);
        let mut alice = Ratchet::new_initiator(
            keys(),
            &bob_key.public_key(),
            RatchetConfig::default(),
            &mut rng,
        )
        .unwrap();
        let mut bob = Ratchet::new_responder(keys(), bob_key, RatchetConfig::default());
        let _skipped = alice.encrypt(b"0", &mut rng).unwrap();
        let m = alice.encrypt(b"1", &mut rng).unwrap();
        bob.decrypt(&m, &mut rng).unwrap();
        (alice, bob)
    }

    #[test]
    fn records_round_trip_in_a_buffer_of_their_exact_length() {
        let (alice, bob) = conversation_with_skipped_keys();
        for side in [alice, bob] {
            let bytes = side.to_bytes();
            // Allocated once at the computed length: never reallocated, so
            // no copy of a key was left behind in freed memory.
            assert_eq!(bytes.capacity(), bytes.len());
            assert_eq!(Ratchet::from_bytes(&bytes).unwrap().to_bytes(), bytes);
        }
    }

    #[test]
    fn non_minimal_varints_are_refused() {
        let (_, bob) = conversation_with_skipped_keys();
        let bytes = bob.to_bytes();
        // The first field, max_skip = 1000, is the varint e8 07; re-encode
        // it with a redundant continuation byte (e8 87 00).
        assert_eq!(&bytes[1..3], &[0xe8, 0x07]);
        let mut padded = vec![bytes[0], 0xe8, 0x87, 0x00];
        padded.extend_from_slice(&bytes[3..]);
        assert_eq!(
            Ratchet::from_bytes(&padded).err(),
            Some(StateError::Corrupt)
        );
    }
}
