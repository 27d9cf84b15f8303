//! The protobuf forms of the wire messages, derived with prost on
//! hand-written structs. The equivalent `.proto` text is in
//! `docs/PROTOCOL.md`.

use alloc::vec::Vec;

/// `PreKeyBundle`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PreKeyBundle {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) identity_key: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub(crate) signed_prekey_id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) signed_prekey: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) signed_prekey_signature: Vec<u8>,
    #[prost(uint32, optional, tag = "6")]
    pub(crate) one_time_prekey_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub(crate) one_time_prekey: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "8")]
    pub(crate) kem_prekey_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "9")]
    pub(crate) kem_prekey: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub(crate) kem_prekey_signature: Option<Vec<u8>>,
}

/// `RatchetMessage`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RatchetMessage {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) encrypted_header: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) ciphertext: Vec<u8>,
}

/// `PreKeyMessage`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PreKeyMessage {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) identity_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) ephemeral_key: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub(crate) signed_prekey_id: u32,
    #[prost(uint32, optional, tag = "5")]
    pub(crate) one_time_prekey_id: Option<u32>,
    #[prost(message, optional, tag = "6")]
    pub(crate) message: Option<RatchetMessage>,
    #[prost(uint32, optional, tag = "7")]
    pub(crate) kem_prekey_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub(crate) kem_ciphertext: Option<Vec<u8>>,
}

/// `SessionMessage`: a prekey or a ratchet message.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SessionMessage {
    #[prost(oneof = "session_message::Kind", tags = "1, 2")]
    pub(crate) kind: Option<session_message::Kind>,
}

/// The `kind` of a [`SessionMessage`].
pub(crate) mod session_message {
    /// Which message a `SessionMessage` holds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Kind {
        /// A prekey message.
        #[prost(message, tag = "1")]
        PreKey(super::PreKeyMessage),
        /// A ratchet message.
        #[prost(message, tag = "2")]
        Ratchet(super::RatchetMessage),
    }
}
