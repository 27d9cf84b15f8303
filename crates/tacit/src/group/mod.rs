//! Groups (`docs/PROTOCOL.md` section 16): membership as a chain of signed
//! group states, group control messages over pairwise sessions, sender
//! chains and the multi-recipient envelope.
//!
//! A group is a random [`GroupId`] and a sequence of [`GroupState`]s, one
//! per epoch. Each state lists the members (users, with their user key and
//! a [`Role`]) and a title, names its parent by [`StateHash`], and is signed
//! ([`SignedGroupState`]) by one device of a member: the device's identity
//! key signs, and the device's certificate under the user key that the
//! authorising state lists for the member binds the device to the member.
//! An admin may make any change that leaves a valid state; a plain member
//! may only leave. Of two valid children of the same parent, one signed by
//! an admin of the parent wins over one signed by a plain member, then the
//! one with the lower [`StateHash`] wins, so every member that has seen the same
//! states holds the same state.
//!
//! A [`Group`] is one member's record: the last
//! [`MAX_STATE_HISTORY`] states it accepted, [`Group::propose`] to sign a
//! change and [`Group::apply`] to accept one (transactional: on error
//! nothing changes). States travel inside a [`GroupControl`], the body of a
//! `SessionControl` content ([`SessionControlBody`]), sealed pairwise to
//! every device of every member of the new state and of its parent.
//!
//! Every value of [`SignedGroupState`] and [`GroupState`] is well formed
//! (strictly decoded, or built and checked here); a signed state's
//! signature is checked against the state that authorises it, by
//! [`SignedGroupState::verify`], [`Group::apply`] and [`Group::join`].
//!
//! Sender chains and group messages (16.5, 16.6): each sending device
//! encrypts a group message once under its own chain ([`OutboundChain`]),
//! signs it with the chain's Ed25519 key, and every member device decrypts
//! it with its inbound copy of the chain ([`InboundChain`]), received over
//! a pairwise session as a [`SenderChainDistribution`]. A device starts a
//! new chain in every state, so a member removed from a state never holds
//! a chain of it.
//!
//! [`multi`] is the multi-recipient envelope (16.7): one encryption of a
//! group message for every recipient device, with a 32-byte part per
//! device, uploaded once and fanned out by the relay.

mod accept;
mod chain;
mod chain_proto;
mod chain_record;
mod change;
mod control;
mod distribution;
mod message;
pub mod multi;
mod multi_proto;
mod proto;
mod record;
mod signed;
mod state;

pub use accept::{
    apply_states, chain_state, check_states_sender, held_state, ChainRefusal, ControlSender,
    StatesRefusal,
};
pub use chain::{
    ChainConfig, InboundChain, InboundChains, OutboundChain, CHAIN_RECORD_VERSION,
    MAX_STORED_CHAIN_KEYS,
};

pub use change::GroupChange;
pub use control::{GroupControl, SessionControlBody, MAX_CONTROL_STATES};
pub use distribution::{SenderChainDistribution, MAX_DISTRIBUTION_LEN};
pub use message::{GroupMessage, GROUP_ID_LEN, MAX_GROUP_MESSAGE_LEN, STATE_HASH_LEN};
pub use record::{Applied, Group};
pub use signed::{GroupSigner, SignedGroupState};
pub use state::{GroupId, GroupMember, GroupState, Role, StateHash};
/// The most members a group state lists.
pub const MAX_GROUP_MEMBERS: usize = 1000;
/// The longest title, in bytes of UTF-8.
pub const MAX_TITLE_LEN: usize = 128;
/// The largest encoded [`GroupState`]: two signed states of this size and
/// a sender chain distribution fit in one content body
/// ([`MAX_BODY_LEN`](crate::envelope::MAX_BODY_LEN)).
pub const MAX_GROUP_STATE_LEN: usize = 64_000;
/// The largest encoded [`SignedGroupState`] (a state of
/// [`MAX_GROUP_STATE_LEN`] and at most 244 bytes of signer fields).
pub const MAX_SIGNED_GROUP_STATE_LEN: usize = MAX_GROUP_STATE_LEN + 256;
/// The largest encoded [`GroupControl`] or [`SessionControlBody`]: a
/// content body.
pub const MAX_GROUP_CONTROL_LEN: usize = crate::envelope::MAX_BODY_LEN;
/// The most states a member keeps to judge concurrent changes.
pub const MAX_STATE_HISTORY: usize = 8;
/// The version of a [`Group`] record.
pub const GROUP_RECORD_VERSION: u8 = 1;

/// Domain separation of a group state signature.
pub(crate) const STATE_LABEL: &[u8] = b"tacit/group/v1/state";
/// Domain separation of a state hash.
pub(crate) const STATE_HASH_LABEL: &[u8] = b"tacit/group/v1/state-hash";
