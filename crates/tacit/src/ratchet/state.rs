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
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::skipped::{SkippedChain, SkippedKeys};
use super::{Chain, Ratchet, RatchetConfig, MAX_ASSOCIATED_DATA_LEN};
use crate::error::StateError;
use crate::keys::{KeyPair, SecretKey32};
use crate::versioned;

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
        versioned::encode(STATE_VERSION, &record)
    }

    /// Reads a session written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let record: RecordV1 = versioned::decode(STATE_VERSION, bytes)?;
        let mut ratchet = record.to_ratchet()?;
        // Only the canonical encoding is accepted: this refuses non-minimal
        // varints, duplicate skipped keys and anything else that would not
        // be written back byte for byte.
        versioned::ensure_canonical(&ratchet.to_bytes(), bytes)?;
        // A record written before the chain limit may hold more chains.
        ratchet.skipped.trim_chains();
        Ok(ratchet)
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
        let current_header_key = self.receiving.as_ref().map(|c| c.header_key);
        // Every (header key, N) is stored at most once, across all runs, and
        // keys of the current receiving chain are below Nr.
        let mut stored: Vec<([u8; 32], u32)> = self
            .skipped
            .iter()
            .flat_map(|chain| chain.keys.iter().map(|k| (chain.header_key, k.n)))
            .collect();
        stored.sort_unstable();
        let distinct = stored.windows(2).all(|w| w[0] != w[1]);
        let below_received = self.skipped.iter().all(|chain| {
            let is_current =
                current_header_key.is_some_and(|hk| bool::from(hk.ct_eq(&chain.header_key)));
            !is_current || chain.keys.iter().all(|k| u64::from(k.n) < self.received)
        });
        let skipped_consistent = distinct && below_received;
        let invariants = [
            skipped_consistent,
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
        let config = RatchetConfig::new(self.max_skip, self.max_stored_skipped_keys)
            .map_err(|_| StateError::Corrupt)?;
        Ok(Ratchet {
            config,
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
        let _skipped = alice.encrypt_with_rng(b"0", &mut rng).unwrap();
        let m = alice.encrypt_with_rng(b"1", &mut rng).unwrap();
        bob.decrypt_with_rng(&m, &mut rng).unwrap();
        (alice, bob)
    }

    fn record(bytes: &[u8]) -> RecordV1 {
        postcard::from_bytes(&bytes[1..]).unwrap()
    }

    fn write(record: &RecordV1) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        out.extend(postcard::to_allocvec(record).unwrap());
        out
    }

    #[test]
    fn records_round_trip_canonically() {
        let (alice, bob) = conversation_with_skipped_keys();
        for side in [alice, bob] {
            let bytes = side.to_bytes();
            assert_eq!(Ratchet::from_bytes(&bytes).unwrap().to_bytes(), bytes);
            assert_eq!(write(&record(&bytes)), *bytes);
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

    #[test]
    fn inconsistent_skipped_keys_are_refused() {
        let (_, bob) = conversation_with_skipped_keys();
        let bytes = bob.to_bytes();
        let good = record(&bytes);
        assert_eq!(good.skipped.len(), 1);

        let mut duplicate = record(&bytes);
        let key = SkippedKeyV1 {
            n: good.skipped[0].keys[0].n,
            message_key: [9; 32],
        };
        duplicate.skipped[0].keys.push(key);
        assert_eq!(
            Ratchet::from_bytes(&write(&duplicate)).err(),
            Some(StateError::Corrupt)
        );

        let mut ahead = record(&bytes);
        ahead.skipped[0].keys[0].n = 5; // not below Nr = 2 in the current chain
        assert_eq!(
            Ratchet::from_bytes(&write(&ahead)).err(),
            Some(StateError::Corrupt)
        );

        let mut empty_run = record(&bytes);
        empty_run.skipped[0].keys.clear();
        assert_eq!(
            Ratchet::from_bytes(&write(&empty_run)).err(),
            Some(StateError::Corrupt)
        );

        let mut over_cap = record(&bytes);
        over_cap.max_stored_skipped_keys = 0;
        assert_eq!(
            Ratchet::from_bytes(&write(&over_cap)).err(),
            Some(StateError::Corrupt)
        );
    }
}
