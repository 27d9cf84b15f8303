//! Signed group states (`docs/PROTOCOL.md` 16.2): a state, the device that
//! signed it with its certificate, and the signature.

use alloc::string::ToString;
use alloc::vec::Vec;

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::error::{GroupStateError, WireError};
use crate::group::{
    proto, GroupState, StateHash, MAX_SIGNED_GROUP_STATE_LEN, STATE_HASH_LABEL, STATE_LABEL,
};
use crate::identity::DeviceCertificate;
use crate::keys::{IdentityKey, IdentityKeyPair, Signature, SIGNATURE_LEN};
use crate::wire::{check_version, decode_canonical, fixed, identity_key, WIRE_VERSION};

/// The device that signs group states: its identity key pair, its address,
/// and its certificate under its user's key (from its user's device list).
#[derive(Clone, Copy, Debug)]
pub struct GroupSigner<'a> {
    identity: &'a IdentityKeyPair,
    address: &'a Address,
    certificate: DeviceCertificate,
}

impl<'a> GroupSigner<'a> {
    /// A signer. The certificate is checked when a state is signed, against
    /// the user key the authorising state lists.
    pub fn new(
        identity: &'a IdentityKeyPair,
        address: &'a Address,
        certificate: DeviceCertificate,
    ) -> Self {
        Self {
            identity,
            address,
            certificate,
        }
    }

    /// The signing device's address.
    pub fn address(&self) -> &Address {
        self.address
    }
}

/// A group state with its signer and signature. The signature is checked
/// against the authorising state ([`SignedGroupState::verify`]); decoding
/// alone checks only the form.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedGroupState {
    state: GroupState,
    /// The encoded state, exactly as signed.
    state_bytes: Vec<u8>,
    signer: Address,
    signer_identity: IdentityKey,
    certificate: DeviceCertificate,
    signature: Signature,
    /// `Enc(self)`, kept: it is hashed and sent.
    wire: Vec<u8>,
    hash: StateHash,
}

impl SignedGroupState {
    /// Signs `state` as `signer`, unchecked: whether the signer may sign
    /// it is checked by the receiver. [`Group::create`] and
    /// [`Group::propose`] check their result as a receiver would; use them.
    ///
    /// [`Group::create`]: crate::group::Group::create
    /// [`Group::propose`]: crate::group::Group::propose
    pub fn sign(state: GroupState, signer: &GroupSigner<'_>) -> Self {
        let state_bytes = state.to_wire();
        let signature = signer.identity.sign(&to_be_signed(&state_bytes));
        let signer_identity = signer.identity.public_key();
        let m = proto::SignedGroupState {
            version: WIRE_VERSION,
            state: state_bytes.clone(),
            signer_user_id: signer.address.user_id().to_string(),
            signer_device_id: signer.address.device_id(),
            signer_identity_key: signer_identity.to_bytes().to_vec(),
            signer_certificate: signer.certificate.to_bytes().to_vec(),
            signature: signature.to_bytes().to_vec(),
        };
        let wire = m.encode_to_vec();
        let hash = state_hash(&wire);
        Self {
            state,
            state_bytes,
            signer: signer.address.clone(),
            signer_identity,
            certificate: signer.certificate,
            signature,
            wire,
            hash,
        }
    }

    /// Strict decoding (16.2): the form of the message and the validity of
    /// the state. The signature is not checked: see [`Self::verify`].
    pub fn from_wire(bytes: &[u8]) -> Result<Self, GroupStateError> {
        let m: proto::SignedGroupState = decode_canonical(bytes, MAX_SIGNED_GROUP_STATE_LEN)?;
        check_version(m.version)?;
        if m.state.is_empty() {
            return Err(WireError::MissingField("state").into());
        }
        let state = GroupState::from_wire(&m.state)?;
        if m.signer_user_id.is_empty() {
            return Err(WireError::MissingField("signer_user_id").into());
        }
        let signer = Address::new(&m.signer_user_id, m.signer_device_id).map_err(|e| match e {
            crate::error::AddressError::DeviceIdZero => WireError::InvalidValue("signer_device_id"),
            _ => WireError::InvalidValue("signer_user_id"),
        })?;
        let signer_identity = identity_key("signer_identity_key", &m.signer_identity_key)?;
        let certificate = DeviceCertificate::from_bytes(fixed::<SIGNATURE_LEN>(
            "signer_certificate",
            &m.signer_certificate,
        )?);
        let signature = Signature::from_bytes(fixed::<SIGNATURE_LEN>("signature", &m.signature)?);
        Ok(Self {
            state,
            state_bytes: m.state,
            signer,
            signer_identity,
            certificate,
            signature,
            wire: bytes.to_vec(),
            hash: state_hash(bytes),
        })
    }

    /// The canonical encoding, `Enc(s)`.
    pub fn to_wire(&self) -> Vec<u8> {
        self.wire.clone()
    }

    /// The encoding, borrowed.
    pub fn as_wire(&self) -> &[u8] {
        &self.wire
    }

    /// `StateHash(s)`.
    pub fn hash(&self) -> StateHash {
        self.hash
    }

    /// The state.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// The signing device.
    pub fn signer(&self) -> &Address {
        &self.signer
    }

    /// The signing device's identity key.
    pub fn signer_identity(&self) -> &IdentityKey {
        &self.signer_identity
    }

    /// The signing device's certificate.
    pub fn certificate(&self) -> &DeviceCertificate {
        &self.certificate
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the signer against `authority`, the state that authorises
    /// this one (its parent, or itself at epoch 0): the signer's user is a
    /// member of it (`SignerNotMember`), the device certificate verifies
    /// under the user key it lists (`InvalidCertificate`), and the signature
    /// verifies under the device's identity key (`InvalidSignature`). Who
    /// may make which change is [`Group`](crate::group::Group)'s check.
    pub fn verify(&self, authority: &GroupState) -> Result<(), GroupStateError> {
        let member = authority
            .member(self.signer.user_id())
            .ok_or_else(|| GroupStateError::SignerNotMember(self.signer.user_id().to_string()))?;
        self.certificate
            .verify(&member.user_key, &self.signer, &self.signer_identity)
            .map_err(|_| GroupStateError::InvalidCertificate)?;
        self.signer_identity
            .verify(&to_be_signed(&self.state_bytes), &self.signature)
            .map_err(|_| GroupStateError::InvalidSignature)
    }
}

/// `"tacit/group/v1/state" || state`.
fn to_be_signed(state: &[u8]) -> Vec<u8> {
    let mut tbs = Vec::with_capacity(STATE_LABEL.len() + state.len());
    tbs.extend_from_slice(STATE_LABEL);
    tbs.extend_from_slice(state);
    tbs
}

/// `SHA-256("tacit/group/v1/state-hash" || Enc(s))`.
fn state_hash(wire: &[u8]) -> StateHash {
    let mut h = Sha256::new();
    h.update(STATE_HASH_LABEL);
    h.update(wire);
    StateHash::from_bytes(h.finalize().into())
}
