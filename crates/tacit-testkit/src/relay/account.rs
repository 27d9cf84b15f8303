//! The devices a relay test or the load generator logs in as: an address,
//! an identity, and the device list it registers with, all derived from
//! small numbers so that a run can be repeated.

use std::time::{SystemTime, UNIX_EPOCH};

use tacit::identity::{DeviceList, UserKeyPair};
use tacit::kem::{KemKeyPair, SignedKemPreKey};
use tacit::{Address, IdentityKeyPair};
use tacit_relay_proto::{Login, Register, Request};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Device `device` of `user`.
pub fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).expect("a valid test address")
}

/// The identity derived from `seed`.
pub fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

/// The user key tests use for `user`: derived from the user id, so every
/// device of a user made here shares it.
pub fn user_key(user: &str) -> UserKeyPair {
    let mut seed = [0xa5; 32];
    for (i, b) in user.bytes().enumerate() {
        seed[i % 32] ^= b.rotate_left(u32::try_from(i / 32).unwrap_or(0));
    }
    UserKeyPair::from_seed(&seed)
}

/// A device: address, identity, and the device list it registers with.
#[derive(Debug, Clone)]
pub struct Device {
    /// The device's address.
    pub address: Address,
    /// The device's identity key pair.
    pub identity: IdentityKeyPair,
    /// The list it presents; by default a one-device list, version 1,
    /// under [`user_key`].
    pub list: DeviceList,
}

impl Device {
    /// Device `device` of `user`, with the identity derived from `seed`.
    pub fn new(user: &str, device: u32, seed: u8) -> Self {
        Self::with_identity(user, device, identity(seed))
    }

    /// Device `device` of `user` with `identity`, on a one-device list
    /// under [`user_key`].
    pub fn with_identity(user: &str, device: u32, identity: IdentityKeyPair) -> Self {
        Self::signed(addr(user, device), identity, &user_key(user))
    }

    /// The device `address` with `identity`, on a one-device list
    /// (version 1) signed by `user_key`.
    pub fn signed(address: Address, identity: IdentityKeyPair, user_key: &UserKeyPair) -> Self {
        let list = one_device_list(&address, &identity, user_key);
        Self {
            address,
            identity,
            list,
        }
    }

    /// The same device with a one-device list signed by `user_key`.
    pub fn signed_by(mut self, user_key: &UserKeyPair) -> Self {
        self.list = one_device_list(&self.address, &self.identity, user_key);
        self
    }

    /// The same device presenting `list`.
    pub fn with_list(mut self, list: &DeviceList) -> Self {
        self.list = list.clone();
        self
    }

    /// The request that registers this device with the relay `server_name`
    /// that issued `challenge`.
    pub fn register_request(&self, server_name: &str, challenge: &[u8; 32]) -> Request {
        Request::Register(Register::sign(
            &self.identity,
            server_name,
            challenge,
            now_ms(),
            self.address.clone(),
            &self.list,
        ))
    }

    /// The request that logs this device in to the relay `server_name`
    /// that issued `challenge`.
    pub fn login_request(&self, server_name: &str, challenge: &[u8; 32]) -> Request {
        Request::Login(Login::sign(
            &self.identity,
            server_name,
            challenge,
            now_ms(),
            self.address.clone(),
        ))
    }

    /// A device whose identity is derived from `n`.
    pub fn numbered(user: &str, device: u32, n: u32) -> Self {
        let mut seed = [0x5a; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        Self::with_identity(user, device, IdentityKeyPair::from_seed(&seed))
    }
}

/// A one-device list, version 1, for `address` with `identity`, signed by
/// `user_key`.
fn one_device_list(
    address: &Address,
    identity: &IdentityKeyPair,
    user_key: &UserKeyPair,
) -> DeviceList {
    DeviceList::sign(
        user_key,
        address.user_id(),
        1,
        &[(address.device_id(), identity.public_key(), 0)],
    )
    .expect("a one-device list")
}

/// Devices of one user, all on one list (version `version`, under
/// [`user_key`]); each presents it.
pub fn same_user(version: u64, devices: Vec<Device>) -> (DeviceList, Vec<Device>) {
    let user = devices
        .first()
        .expect("at least one device")
        .address
        .user_id()
        .to_owned();
    let entries: Vec<_> = devices
        .iter()
        .map(|d| (d.address.device_id(), d.identity.public_key(), 0))
        .collect();
    let list = DeviceList::sign(&user_key(&user), &user, version, &entries).expect("a device list");
    let devices = devices.into_iter().map(|d| d.with_list(&list)).collect();
    (list, devices)
}

/// A KEM prekey with id `id`, its key derived from the id, signed by
/// `signer`.
pub fn kem_prekey(signer: &IdentityKeyPair, id: u32) -> SignedKemPreKey {
    let mut seed = [0x3c; 64];
    seed[..4].copy_from_slice(&id.to_be_bytes());
    let key = KemKeyPair::from_seed(&seed).public_key().clone();
    SignedKemPreKey {
        id,
        signature: signer.sign_kem_prekey(&key),
        key,
    }
}
