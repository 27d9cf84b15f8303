//! The protobuf forms of the envelope layer's messages, derived with prost
//! on hand-written structs. Field tables are in `docs/PROTOCOL.md` (section 10).

use alloc::string::String;
use alloc::vec::Vec;

/// `Content`: the ratchet's plaintext, before padding.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Content {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) kind: u32,
    #[prost(uint64, tag = "3")]
    pub(crate) timestamp: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) message_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) body: Vec<u8>,
    #[prost(message, optional, tag = "6")]
    pub(crate) attachment: Option<AttachmentPointer>,
}

/// `AttachmentPointer`: where an encrypted attachment is and how to open it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AttachmentPointer {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) digest: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub(crate) size: u64,
    #[prost(string, tag = "5")]
    pub(crate) content_type: String,
}

/// `SealedEnvelope`: what the relay sees.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SealedEnvelope {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) ephemeral_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) encrypted_sender: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) encrypted_message: Vec<u8>,
}

/// `SealedContent`: the plaintext of `encrypted_message`, before padding.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SealedContent {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(string, tag = "2")]
    pub(crate) sender_user_id: String,
    #[prost(uint32, tag = "3")]
    pub(crate) sender_device_id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) message: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) sender_user_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) sender_certificate: Vec<u8>,
}
