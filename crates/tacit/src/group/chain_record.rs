//! The records of sender chains (`docs/PROTOCOL.md` 16.5, Records): exact
//! size, wiped on drop, read strictly.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use super::chain::{
    ChainConfig, InboundChain, OutboundChain, CHAIN_RECORD_VERSION, MAX_STORED_CHAIN_KEYS,
};
use crate::address::Address;
use crate::codec::{varint_len, Reader, Writer};
use crate::error::StateError;
use crate::keys::{IdentityKey, IdentityKeyPair, SecretKey32};

/// The kind byte of an outbound chain record.
const OUTBOUND: u8 = 1;
/// The kind byte of an inbound chain record.
const INBOUND: u8 = 2;

/// The length of `RA(owner)`.
fn ra_len(owner: &Address) -> usize {
    1 + owner.user_id().len() + 4
}

/// Writes `RA(owner)`.
fn write_owner(w: &mut Writer, owner: &Address) {
    let mut ra = Vec::with_capacity(ra_len(owner));
    owner.encode_ra(&mut ra);
    w.raw(&ra);
}

/// Reads `RA(owner)`: a valid address (`Corrupt` otherwise).
fn read_owner(r: &mut Reader<'_>) -> Result<Address, StateError> {
    let len = usize::from(r.byte()?);
    let user_id = core::str::from_utf8(r.take(len)?).map_err(|_| StateError::Corrupt)?;
    let device = r.take(4)?;
    let device_id = u32::from_be_bytes([device[0], device[1], device[2], device[3]]);
    Address::new(user_id, device_id).map_err(|_| StateError::Corrupt)
}

/// Reads the version and kind bytes.
fn header<'a>(bytes: &'a [u8], kind: u8) -> Result<Reader<'a>, StateError> {
    let (&version, rest) = bytes.split_first().ok_or(StateError::Empty)?;
    if version != CHAIN_RECORD_VERSION {
        return Err(StateError::UnknownVersion(version));
    }
    let mut reader = Reader::new(rest);
    if reader.byte()? != kind {
        return Err(StateError::Corrupt);
    }
    Ok(reader)
}

impl OutboundChain {
    /// The versioned record.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_len(
            2 + 32 * 4 + ra_len(&self.owner) + varint_len(u64::from(self.iteration)),
        );
        w.byte(CHAIN_RECORD_VERSION);
        w.byte(OUTBOUND);
        w.raw(&self.group_id);
        w.raw(&self.state_hash);
        write_owner(&mut w, &self.owner);
        w.raw(self.signing.seed().as_bytes());
        w.varint(u64::from(self.iteration));
        w.raw(self.chain_key.as_bytes());
        w.finish()
    }

    /// Reads a record written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = header(bytes, OUTBOUND)?;
        let group_id = r.array32()?;
        let state_hash = r.array32()?;
        let owner = read_owner(&mut r)?;
        let seed = Zeroizing::new(r.array32()?);
        let iteration = r.u32()?;
        let chain_key = SecretKey32::from_bytes(r.array32()?);
        r.finish()?;
        Ok(Self {
            group_id,
            state_hash,
            owner,
            signing: IdentityKeyPair::from_seed(&seed),
            iteration,
            chain_key,
        })
    }
}

impl InboundChain {
    /// The versioned record.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let keys: usize = self
            .skipped
            .iter()
            .map(|(n, _)| varint_len(u64::from(*n)) + 32)
            .sum();
        let len = 2
            + 32 * 4
            + ra_len(&self.owner)
            + varint_len(u64::from(self.next))
            + varint_len(u64::from(self.config.max_skip()))
            + varint_len(self.skipped.len() as u64)
            + keys;
        let mut w = Writer::with_len(len);
        w.byte(CHAIN_RECORD_VERSION);
        w.byte(INBOUND);
        w.raw(&self.group_id);
        w.raw(&self.state_hash);
        write_owner(&mut w, &self.owner);
        w.raw(&self.signing_key.to_bytes());
        w.varint(u64::from(self.next));
        w.raw(self.chain_key.as_bytes());
        w.varint(u64::from(self.config.max_skip()));
        w.varint(self.skipped.len() as u64);
        for (n, key) in &self.skipped {
            w.varint(u64::from(*n));
            w.raw(key.as_bytes());
        }
        w.finish()
    }

    /// Reads a record written by [`to_bytes`](Self::to_bytes), checking
    /// every invariant of 16.5.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = header(bytes, INBOUND)?;
        let group_id = r.array32()?;
        let state_hash = r.array32()?;
        let owner = read_owner(&mut r)?;
        let signing_key =
            IdentityKey::from_bytes(&r.array32()?).map_err(|_| StateError::Corrupt)?;
        let next = r.u32()?;
        let chain_key = SecretKey32::from_bytes(r.array32()?);
        let config = ChainConfig::new(r.u32()?).map_err(|_| StateError::Corrupt)?;
        let count = r.len(MAX_STORED_CHAIN_KEYS)?;
        // Allocated once at its final length: it never grows.
        let mut skipped = VecDeque::with_capacity(count);
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let n = r.u32()?;
            if n >= next || previous.is_some_and(|p| n <= p) {
                return Err(StateError::Corrupt);
            }
            previous = Some(n);
            skipped.push_back((n, SecretKey32::from_bytes(r.array32()?)));
        }
        r.finish()?;
        Ok(Self {
            group_id,
            state_hash,
            owner,
            signing_key,
            next,
            chain_key,
            config,
            skipped,
        })
    }
}
