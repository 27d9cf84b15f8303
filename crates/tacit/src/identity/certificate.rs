//! Device certificates: the user key's signature on one device.

use alloc::vec::Vec;

use crate::address::Address;
use crate::error::IdentityError;
use crate::identity::{UserKey, UserKeyPair, CERTIFICATE_LABEL};
use crate::keys::{IdentityKey, Signature, KEY_LEN};

/// A device certificate: an Ed25519 signature by the user key over
/// `"tacit/identity/v1/device-certificate" || Enc(UK) || u8(len(user_id))
/// || user_id || u32(device_id) || Enc(IK)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceCertificate(Signature);

impl DeviceCertificate {
    /// Signs a certificate for the device `address` with identity `identity`.
    pub fn issue(user: &UserKeyPair, address: &Address, identity: &IdentityKey) -> Self {
        let tbs = to_be_signed(&user.public_key(), address, identity);
        Self(user.sign(&tbs))
    }

    /// The certificate as received; check it with [`Self::verify`].
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(Signature::from_bytes(bytes))
    }

    /// The 64 signature bytes.
    pub const fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }

    /// Checks that `user_key` certified the device `address` with
    /// `identity`.
    pub fn verify(
        &self,
        user_key: &UserKey,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<(), IdentityError> {
        let tbs = to_be_signed(user_key, address, identity);
        user_key
            .verify(&tbs, &self.0)
            .map_err(|_| IdentityError::InvalidCertificate(address.device_id()))
    }
}

/// The signed bytes of a certificate.
fn to_be_signed(user_key: &UserKey, address: &Address, identity: &IdentityKey) -> Vec<u8> {
    let user_id = address.user_id().as_bytes();
    let mut tbs = Vec::with_capacity(CERTIFICATE_LABEL.len() + 2 * KEY_LEN + 5 + user_id.len());
    tbs.extend_from_slice(CERTIFICATE_LABEL);
    tbs.extend_from_slice(&user_key.to_bytes());
    // An address's user id is at most 64 bytes.
    tbs.push(user_id.len() as u8);
    tbs.extend_from_slice(user_id);
    tbs.extend_from_slice(&address.device_id().to_be_bytes());
    tbs.extend_from_slice(&identity.to_bytes());
    tbs
}
