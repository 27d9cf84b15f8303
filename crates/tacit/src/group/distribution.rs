//! The sender chain distribution (`docs/PROTOCOL.md` 16.5): what a sender
//! gives each member device, over a pairwise session, so that it can read
//! the chain from its current iteration on.

use alloc::vec::Vec;

use prost::Message as _;
use zeroize::Zeroizing;

use super::chain_proto as proto;
use super::message::{GROUP_ID_LEN, STATE_HASH_LEN};
use crate::address::Address;
use crate::error::WireError;
use crate::keys::{IdentityKey, IdentityKeyPair, SecretKey32, Signature, KEY_LEN, SIGNATURE_LEN};
use crate::wire::{check_version, decode_canonical_secret, fixed, identity_key, WIRE_VERSION};

/// The longest encoded distribution accepted (a valid one is at most 210
/// bytes).
pub const MAX_DISTRIBUTION_LEN: usize = 256;
/// The prefix of the bytes a chain's owner signature covers.
const OWNER_CONTEXT: &[u8] = b"tacit/group/v1/chain-owner";

/// `"tacit/group/v1/chain-owner" || group_id || state_hash || RA(owner)`:
/// what the chain's signing key signs to name the device that owns it.
fn owner_statement(
    group_id: &[u8; GROUP_ID_LEN],
    state_hash: &[u8; STATE_HASH_LEN],
    owner: &Address,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(OWNER_CONTEXT.len() + 64 + 1 + 64 + 4);
    out.extend_from_slice(OWNER_CONTEXT);
    out.extend_from_slice(group_id);
    out.extend_from_slice(state_hash);
    owner.encode_ra(&mut out);
    out
}

/// The owner signature of a chain of `group_id` in `state_hash` owned by
/// `owner`.
pub(crate) fn sign_owner(
    signing: &IdentityKeyPair,
    group_id: &[u8; GROUP_ID_LEN],
    state_hash: &[u8; STATE_HASH_LEN],
    owner: &Address,
) -> Signature {
    signing.sign(&owner_statement(group_id, state_hash, owner))
}

/// A sender chain at one iteration, as distributed: the group, the state,
/// the chain's public signing key and its chain key. Secret (it reads every
/// later message of the chain); wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderChainDistribution {
    pub(crate) group_id: [u8; GROUP_ID_LEN],
    pub(crate) state_hash: [u8; STATE_HASH_LEN],
    pub(crate) signing_key: IdentityKey,
    pub(crate) iteration: u32,
    pub(crate) chain_key: SecretKey32,
    pub(crate) owner_signature: Signature,
}

impl core::fmt::Debug for SenderChainDistribution {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderChainDistribution")
            .field("signing_key", &self.signing_key)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl SenderChainDistribution {
    /// The protobuf form (for embedding in a group control message).
    pub(crate) fn to_proto(&self) -> proto::SenderChainDistribution {
        proto::SenderChainDistribution {
            version: WIRE_VERSION,
            group_id: self.group_id.to_vec(),
            state_hash: self.state_hash.to_vec(),
            signing_key: self.signing_key.to_bytes().to_vec(),
            iteration: self.iteration,
            chain_key: self.chain_key.as_bytes().to_vec(),
            owner_signature: self.owner_signature.to_bytes().to_vec(),
        }
    }

    /// Checks the protobuf form field by field.
    pub(crate) fn from_proto(m: &proto::SenderChainDistribution) -> Result<Self, WireError> {
        check_version(m.version)?;
        let group_id = fixed::<GROUP_ID_LEN>("group_id", &m.group_id)?;
        let state_hash = fixed::<STATE_HASH_LEN>("state_hash", &m.state_hash)?;
        let signing_key = identity_key("signing_key", &m.signing_key)?;
        if m.iteration == u32::MAX {
            return Err(WireError::InvalidValue("iteration"));
        }
        let chain_key = SecretKey32::from_bytes(fixed::<KEY_LEN>("chain_key", &m.chain_key)?);
        let owner_signature = Signature::from_bytes(fixed::<SIGNATURE_LEN>(
            "owner_signature",
            &m.owner_signature,
        )?);
        Ok(Self {
            group_id,
            state_hash,
            signing_key,
            iteration: m.iteration,
            chain_key,
            owner_signature,
        })
    }

    /// The canonical encoding, in a buffer of its exact length wiped on
    /// drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let m = self.to_proto();
        let mut out = Zeroizing::new(Vec::with_capacity(m.encoded_len()));
        m.encode_raw(&mut *out);
        out
    }

    /// Strict decoding (`docs/PROTOCOL.md` 16.5).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        // The re-encoding holds the chain key: wiped.
        let m: proto::SenderChainDistribution =
            decode_canonical_secret(bytes, MAX_DISTRIBUTION_LEN)?;
        Self::from_proto(&m)
    }

    /// The group id.
    pub fn group_id(&self) -> &[u8; GROUP_ID_LEN] {
        &self.group_id
    }

    /// The hash of the group state the chain belongs to.
    pub fn state_hash(&self) -> &[u8; STATE_HASH_LEN] {
        &self.state_hash
    }

    /// The chain's public signing key.
    pub fn signing_key(&self) -> &IdentityKey {
        &self.signing_key
    }

    /// The iteration the chain key is at.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The owner signature: the chain's signing key over the group, the
    /// state and the owner's address.
    pub fn owner_signature(&self) -> &Signature {
        &self.owner_signature
    }

    /// Whether the chain's signing key signed `owner` as the chain's owner
    /// in this group and state.
    pub fn is_owned_by(&self, owner: &Address) -> bool {
        self.signing_key
            .verify(
                &owner_statement(&self.group_id, &self.state_hash, owner),
                &self.owner_signature,
            )
            .is_ok()
    }
}
