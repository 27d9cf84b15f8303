//! The protobuf forms of the sender-chain messages (`docs/PROTOCOL.md`
//! 16.5, 16.6).

use alloc::vec::Vec;

use zeroize::Zeroize;

/// `GroupMessage`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupMessage {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) group_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) state_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) signing_key: Vec<u8>,
    #[prost(uint32, tag = "5")]
    pub(crate) iteration: u32,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) ciphertext: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub(crate) signature: Vec<u8>,
}

/// `SenderChainDistribution`. Holds a chain key: wiped on drop.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SenderChainDistribution {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) group_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) state_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) signing_key: Vec<u8>,
    #[prost(uint32, tag = "5")]
    pub(crate) iteration: u32,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub(crate) owner_signature: Vec<u8>,
}

impl Drop for SenderChainDistribution {
    fn drop(&mut self) {
        self.chain_key.zeroize();
    }
}
