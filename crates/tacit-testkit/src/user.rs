//! A user with one device, for the group layer's tests.

use rand_core::CryptoRngCore;
use tacit::error::GroupStateError;
use tacit::group::{Group, GroupMember, GroupSigner, Role, SignedGroupState};
use tacit::identity::{DeviceCertificate, UserKeyPair};
use tacit::{Address, DeviceId, IdentityKeyPair};

/// A user with one device: the user key, the device's identity and
/// address, and the device certificate the user key issued for it.
pub struct TestUser {
    /// The user key.
    pub key: UserKeyPair,
    /// The device's identity key pair.
    pub device: IdentityKeyPair,
    /// The device's address.
    pub address: Address,
    /// The user key's certificate for the device.
    pub certificate: DeviceCertificate,
}

impl core::fmt::Debug for TestUser {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TestUser")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl TestUser {
    /// A new user `name` (a new user key) with device `device_id`.
    pub fn new(name: &str, device_id: DeviceId, rng: &mut impl CryptoRngCore) -> Self {
        Self::with_key(name, device_id, UserKeyPair::generate(rng), rng)
    }

    /// A device `device_id` (a new identity and certificate) of the user
    /// `name` under `key`.
    pub fn with_key(
        name: &str,
        device_id: DeviceId,
        key: UserKeyPair,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        let device = IdentityKeyPair::generate(rng);
        let address = Address::new(name, device_id).expect("a valid test address");
        let certificate = DeviceCertificate::issue(&key, &address, &device.public_key());
        Self {
            key,
            device,
            address,
            certificate,
        }
    }

    /// The user id.
    pub fn id(&self) -> &str {
        self.address.user_id()
    }

    /// The device as the signer of group states.
    pub fn signer(&self) -> GroupSigner<'_> {
        GroupSigner::new(&self.device, &self.address, self.certificate)
    }

    /// The user as a group member with `role`.
    pub fn member(&self, role: Role) -> GroupMember {
        GroupMember::new(self.id(), self.key.public_key(), role)
    }

    /// Joins with the states as sent by the last one's signer.
    pub fn join(&self, states: &[SignedGroupState]) -> Result<Group, GroupStateError> {
        let last = states.last().expect("at least one state");
        Group::join(
            self.id(),
            &self.key.public_key(),
            states,
            last.signer(),
            last.signer_identity(),
        )
    }
}
