//! The serialized form of a [`Ratchet`]: a version byte followed by the
//! postcard encoding of the session state.
//!
//! Version 1 holds every field of the profile's state except `DHr`, which
//! header encryption never reads after a step, and the ratchet public key,
//! which is recomputed from the private key. Reading a record checks its
//! version, that nothing trails it, and the state's invariants.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::skipped::{SkippedChain, SkippedKeys};
use super::{Chain, Ratchet, RatchetConfig, MAX_ASSOCIATED_DATA_LEN};
use crate::error::StateError;
use crate::keys::{KeyPair, SecretKey32};

/// The current record version.
pub const STATE_VERSION: u8 = 1;

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct RecordV1 {
    max_skip: u32,
    max_stored_skipped_keys: u32,
    associated_data: Vec<u8>,
    root_key: [u8; 32],
    ratchet_private_key: [u8; 32],
    sending: Option<ChainV1>,
    sent: u32,
    previous_sent: u32,
    receiving: Option<ChainV1>,
    received: u64,
    next_sending_header_key: [u8; 32],
    next_receiving_header_key: [u8; 32],
    skipped: Vec<SkippedChainV1>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct ChainV1 {
    chain_key: [u8; 32],
    header_key: [u8; 32],
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SkippedChainV1 {
    header_key: [u8; 32],
    keys: Vec<SkippedKeyV1>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SkippedKeyV1 {
    n: u32,
    message_key: [u8; 32],
}

impl ChainV1 {
    fn from_chain(chain: &Chain) -> Self {
        Self {
            chain_key: *chain.chain_key.as_bytes(),
            header_key: *chain.header_key.as_bytes(),
        }
    }

    fn to_chain(&self) -> Chain {
        Chain {
            chain_key: SecretKey32::from_bytes(self.chain_key),
            header_key: SecretKey32::from_bytes(self.header_key),
        }
    }
}

impl Ratchet {
    /// Serializes the session: one version byte, then the compact postcard
    /// encoding of the state. The bytes hold secrets; they are zeroized when
    /// dropped, and should be stored encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let record = RecordV1 {
            max_skip: self.config.max_skip,
            max_stored_skipped_keys: self.config.max_stored_skipped_keys,
            associated_data: self.associated_data.clone(),
            root_key: *self.root_key.as_bytes(),
            ratchet_private_key: *self.ratchet_key.private_bytes().as_bytes(),
            sending: self.sending.as_ref().map(ChainV1::from_chain),
            sent: self.sent,
            previous_sent: self.previous_sent,
            receiving: self.receiving.as_ref().map(ChainV1::from_chain),
            received: self.received,
            next_sending_header_key: *self.next_sending_header_key.as_bytes(),
            next_receiving_header_key: *self.next_receiving_header_key.as_bytes(),
            skipped: self
                .skipped
                .chains()
                .map(|chain| SkippedChainV1 {
                    header_key: *chain.header_key.as_bytes(),
                    keys: chain
                        .keys
                        .iter()
                        .map(|(n, mk)| SkippedKeyV1 {
                            n: *n,
                            message_key: *mk.as_bytes(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let mut out = Zeroizing::new(Vec::with_capacity(256));
        out.push(STATE_VERSION);
        // Serializing into a Vec cannot fail for these types.
        if let Ok(body) = postcard::to_allocvec(&record) {
            let body = Zeroizing::new(body);
            out.extend_from_slice(&body);
        }
        out
    }

    /// Reads a session written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let (&version, body) = bytes.split_first().ok_or(StateError::Empty)?;
        if version != STATE_VERSION {
            return Err(StateError::UnknownVersion(version));
        }
        let (record, rest): (RecordV1, &[u8]) =
            postcard::take_from_bytes(body).map_err(|_| StateError::Corrupt)?;
        if !rest.is_empty() {
            return Err(StateError::Corrupt);
        }
        record.to_ratchet()
    }
}

impl RecordV1 {
    fn to_ratchet(&self) -> Result<Ratchet, StateError> {
        let chains: VecDeque<SkippedChain> = self
            .skipped
            .iter()
            .map(|chain| SkippedChain {
                header_key: SecretKey32::from_bytes(chain.header_key),
                keys: chain
                    .keys
                    .iter()
                    .map(|k| (k.n, SecretKey32::from_bytes(k.message_key)))
                    .collect(),
            })
            .collect();
        let skipped = SkippedKeys::from_chains(chains).ok_or(StateError::Corrupt)?;
        let invariants = [
            self.associated_data.len() <= MAX_ASSOCIATED_DATA_LEN,
            u64::try_from(skipped.len())
                .is_ok_and(|n| n <= u64::from(self.max_stored_skipped_keys)),
            self.received <= 1 << 32,
            self.sending.is_some() || (self.sent == 0 && self.previous_sent == 0),
            self.receiving.is_some() || self.received == 0,
        ];
        if invariants.contains(&false) {
            return Err(StateError::Corrupt);
        }
        Ok(Ratchet {
            config: RatchetConfig {
                max_skip: self.max_skip,
                max_stored_skipped_keys: self.max_stored_skipped_keys,
            },
            associated_data: self.associated_data.clone(),
            root_key: SecretKey32::from_bytes(self.root_key),
            ratchet_key: KeyPair::from_private_bytes(self.ratchet_private_key),
            sending: self.sending.as_ref().map(ChainV1::to_chain),
            sent: self.sent,
            previous_sent: self.previous_sent,
            receiving: self.receiving.as_ref().map(ChainV1::to_chain),
            received: self.received,
            next_sending_header_key: SecretKey32::from_bytes(self.next_sending_header_key),
            next_receiving_header_key: SecretKey32::from_bytes(self.next_receiving_header_key),
            skipped,
        })
    }
}
