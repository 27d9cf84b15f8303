//! Groups (`docs/PROTOCOL.md` section 16).
//!
//! Sender chains and group messages (16.5, 16.6): each sending device
//! encrypts a group message once under its own chain, signs it with the
//! chain's Ed25519 key, and every member device decrypts it with its
//! inbound copy of the chain, received over a pairwise session.

mod chain;
mod chain_proto;
mod chain_record;
mod distribution;
mod message;

pub use chain::{
    ChainConfig, InboundChain, InboundChains, OutboundChain, CHAIN_RECORD_VERSION,
    MAX_STORED_CHAIN_KEYS,
};
pub use distribution::{SenderChainDistribution, MAX_DISTRIBUTION_LEN};
pub use message::{GroupMessage, GROUP_ID_LEN, MAX_GROUP_MESSAGE_LEN, STATE_HASH_LEN};
