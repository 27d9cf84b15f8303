//! The protobuf forms of the multi-recipient envelope (`docs/PROTOCOL.md`
//! 16.7), derived with prost on hand-written structs.

use alloc::vec::Vec;

/// `SharedPayload`: what the sender uploads once.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SharedPayload {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) ephemeral_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) payload: Vec<u8>,
}

/// `GroupEnvelope`: what one recipient device receives.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupEnvelope {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) ephemeral_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) wrapped_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) payload: Vec<u8>,
}
