//! Group control messages over pairwise sessions (`docs/PROTOCOL.md`
//! 16.4): the body of a `SessionControl` content.

use alloc::vec::Vec;

use prost::Message as _;

use crate::error::{GroupStateError, WireError};
use zeroize::Zeroizing;

use crate::group::{proto, SenderChainDistribution, SignedGroupState, MAX_GROUP_CONTROL_LEN};
use crate::wire::{check_version, decode_canonical_secret, WIRE_VERSION};

/// The most states one [`GroupControl`] carries: `[new]` or `[parent, new]`.
pub const MAX_CONTROL_STATES: usize = 2;

/// A group control: 0 to 2 signed states (`[new]`, or `[parent, new]` for
/// a member just added) and, optionally, a sender chain distribution.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct GroupControl {
    /// The states, parent first.
    pub states: Vec<SignedGroupState>,
    /// Field 3: a sender chain distribution (16.5), decoded strictly.
    pub chain: Option<SenderChainDistribution>,
}

impl GroupControl {
    /// Strict decoding (16.4): the form, at most [`MAX_CONTROL_STATES`]
    /// states, each decoded as [`SignedGroupState::from_wire`]; a parent and
    /// child must be of the same group, the child's parent hash naming the
    /// parent. Signatures are checked when the states are applied or
    /// joined.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, GroupStateError> {
        // Its encoding holds the chain's key: the re-encoding is wiped, and
        // so is the field once decoded (or on any refusal).
        let mut m: proto::GroupControl = decode_canonical_secret(bytes, MAX_GROUP_CONTROL_LEN)?;
        check_version(m.version)?;
        if m.states.len() > MAX_CONTROL_STATES {
            return Err(GroupStateError::StateCount(m.states.len()));
        }
        let states = m
            .states
            .iter()
            .map(|s| SignedGroupState::from_wire(s))
            .collect::<Result<Vec<_>, _>>()?;
        if let [parent, new] = states.as_slice() {
            if new.state().parent() != Some(parent.hash()) {
                return Err(GroupStateError::WrongParent);
            }
        }
        let chain = m
            .chain
            .take()
            .map(|bytes| SenderChainDistribution::from_bytes(&Zeroizing::new(bytes)))
            .transpose()?;
        Ok(Self { states, chain })
    }

    fn to_proto(&self) -> proto::GroupControl {
        proto::GroupControl {
            version: WIRE_VERSION,
            states: self.states.iter().map(SignedGroupState::to_wire).collect(),
            chain: self.chain.as_ref().map(|chain| chain.to_bytes().to_vec()),
        }
    }

    /// The canonical encoding. With a chain it holds the chain key: the
    /// caller wipes it once sealed.
    pub fn to_wire(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

/// The body of a kind-6 (`SessionControl`) content: for now, always a
/// [`GroupControl`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SessionControlBody {
    /// The group control.
    pub group: GroupControl,
}

impl SessionControlBody {
    /// Strict decoding (16.4); an absent `group` is
    /// `Wire(MissingField("group"))`.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, GroupStateError> {
        // `group` holds a chain key: wiped as in `GroupControl::from_wire`.
        let mut m: proto::SessionControlBody =
            decode_canonical_secret(bytes, MAX_GROUP_CONTROL_LEN)?;
        check_version(m.version)?;
        let group = Zeroizing::new(m.group.take().ok_or(WireError::MissingField("group"))?);
        Ok(Self {
            group: GroupControl::from_wire(&group)?,
        })
    }

    /// The canonical encoding; as [`GroupControl::to_wire`], the caller
    /// wipes it.
    pub fn to_wire(&self) -> Vec<u8> {
        proto::SessionControlBody {
            version: WIRE_VERSION,
            group: Some(self.group.to_wire()),
        }
        .encode_to_vec()
    }
}
