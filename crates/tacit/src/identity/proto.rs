//! The protobuf forms of the identity messages (`docs/PROTOCOL.md` 14.3).

use alloc::string::String;
use alloc::vec::Vec;

/// `DeviceEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeviceEntry {
    #[prost(uint32, tag = "1")]
    pub(crate) device_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) identity_key: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub(crate) added_at_ms: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) certificate: Vec<u8>,
}

/// `SignedDeviceList`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SignedDeviceList {
    #[prost(uint32, tag = "1")]
    pub(crate) format: u32,
    #[prost(string, tag = "2")]
    pub(crate) user_id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) user_key: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub(crate) version: u64,
    #[prost(message, repeated, tag = "5")]
    pub(crate) devices: Vec<DeviceEntry>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) signature: Vec<u8>,
}
