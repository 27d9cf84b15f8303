//! The protobuf forms of the group state messages (`docs/PROTOCOL.md` 16.2
//! and 16.4).
//!
//! Embedded messages that another type decodes on its own are declared as
//! `bytes`: a length-delimited field has the same encoding either way, and
//! each is then decoded strictly by its own type.

use alloc::string::String;
use alloc::vec::Vec;

use zeroize::Zeroize;

/// `GroupMember`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupMember {
    #[prost(string, tag = "1")]
    pub(crate) user_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) user_key: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub(crate) role: u32,
}

/// `GroupState`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupState {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) group_id: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub(crate) epoch: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) parent: Vec<u8>,
    #[prost(string, tag = "5")]
    pub(crate) title: String,
    #[prost(message, repeated, tag = "6")]
    pub(crate) members: Vec<GroupMember>,
}

/// `SignedGroupState`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SignedGroupState {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) state: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(crate) signer_user_id: String,
    #[prost(uint32, tag = "4")]
    pub(crate) signer_device_id: u32,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) signer_identity_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) signer_certificate: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub(crate) signature: Vec<u8>,
}

/// `GroupControl`: `states` are encoded `SignedGroupState`s, `chain` an
/// encoded `SenderChainDistribution` (16.5).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupControl {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub(crate) states: Vec<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub(crate) chain: Option<Vec<u8>>,
}

/// `SessionControlBody`: `group` is an encoded `GroupControl`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SessionControlBody {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub(crate) group: Option<Vec<u8>>,
}

// The chain (16.5) and a control that holds one carry a chain key: wiped
// on drop, on every path.
impl Drop for GroupControl {
    fn drop(&mut self) {
        if let Some(chain) = self.chain.as_mut() {
            chain.zeroize();
        }
    }
}

impl Drop for SessionControlBody {
    fn drop(&mut self) {
        if let Some(group) = self.group.as_mut() {
            group.zeroize();
        }
    }
}
