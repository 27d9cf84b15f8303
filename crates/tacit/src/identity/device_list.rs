//! Signed device lists: the user key's statement of which devices are the
//! user's, versioned.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use prost::Message as _;

use crate::address::{Address, DeviceId};
use crate::error::{IdentityError, WireError};
use crate::identity::{
    proto, DeviceCertificate, UserKey, UserKeyPair, DEVICE_LIST_LABEL, MAX_DEVICES,
    MAX_DEVICE_LIST_LEN,
};
use crate::keys::{IdentityKey, Signature, KEY_LEN, SIGNATURE_LEN};
use crate::wire::{decode_canonical, fixed, identity_key};

/// The format number of [`DeviceList`]'s encoding.
const FORMAT: u32 = 1;

/// One device on a list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceEntry {
    /// The device id (1 or more).
    pub device_id: DeviceId,
    /// The device's identity key.
    pub identity_key: IdentityKey,
    /// When the signer added the device (its clock, milliseconds).
    pub added_at_ms: u64,
    /// The user key's certificate of this device.
    pub certificate: DeviceCertificate,
}

/// A verified, signed device list: the user id, its user key, a version and
/// up to [`MAX_DEVICES`] devices in ascending id order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeviceList {
    user_id: String,
    user_key: UserKey,
    version: u64,
    devices: Vec<DeviceEntry>,
    signature: Signature,
}

impl DeviceList {
    /// Signs a new list: `version` and the devices `(id, identity key, added
    /// at)` in any order; each gets a certificate.
    pub fn sign(
        user: &UserKeyPair,
        user_id: &str,
        version: u64,
        devices: &[(DeviceId, IdentityKey, u64)],
    ) -> Result<Self, IdentityError> {
        let mut entries = Vec::with_capacity(devices.len());
        for (device_id, identity_key, added_at_ms) in devices {
            let address = Address::new(user_id, *device_id)
                .map_err(|_| invalid_user_or_device(*device_id))?;
            entries.push(DeviceEntry {
                device_id: *device_id,
                identity_key: *identity_key,
                added_at_ms: *added_at_ms,
                certificate: DeviceCertificate::issue(user, &address, identity_key),
            });
        }
        entries.sort_by_key(|e| e.device_id);
        let user_key = user.public_key();
        check_shape(user_id, version, &entries).map_err(IdentityError::Wire)?;
        let tbs = to_be_signed(user_id, &user_key, version, &entries);
        Ok(Self {
            user_id: user_id.to_string(),
            user_key,
            version,
            signature: user.sign(&tbs),
            devices: entries,
        })
    }

    /// The next version of this list with one more device.
    pub fn with_device(
        &self,
        user: &UserKeyPair,
        device_id: DeviceId,
        identity_key: IdentityKey,
        added_at_ms: u64,
    ) -> Result<Self, IdentityError> {
        self.check_signer(user)?;
        if self.device(device_id).is_some() {
            return Err(IdentityError::DeviceExists(device_id));
        }
        let mut devices = self.entries();
        devices.push((device_id, identity_key, added_at_ms));
        Self::sign(user, &self.user_id, self.next_version()?, &devices)
    }

    /// The next version of this list without `device_id`.
    pub fn without_device(
        &self,
        user: &UserKeyPair,
        device_id: DeviceId,
    ) -> Result<Self, IdentityError> {
        self.check_signer(user)?;
        if self.device(device_id).is_none() {
            return Err(IdentityError::UnknownDevice(device_id));
        }
        let devices: Vec<_> = self
            .entries()
            .into_iter()
            .filter(|(id, _, _)| *id != device_id)
            .collect();
        Self::sign(user, &self.user_id, self.next_version()?, &devices)
    }

    /// Strict decoding (`docs/PROTOCOL.md` 14.3), then every certificate and
    /// the list signature.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, IdentityError> {
        let m: proto::SignedDeviceList = decode_canonical(bytes, MAX_DEVICE_LIST_LEN)?;
        if m.format != FORMAT {
            return Err(WireError::UnknownVersion(m.format).into());
        }
        if m.user_id.is_empty() {
            return Err(WireError::MissingField("user_id").into());
        }
        let user_key =
            UserKey::from_bytes(&fixed::<KEY_LEN>("user_key", &m.user_key)?).map_err(|error| {
                WireError::InvalidKey {
                    field: "user_key",
                    error,
                }
            })?;
        let signature = Signature::from_bytes(fixed::<SIGNATURE_LEN>("signature", &m.signature)?);
        let mut devices = Vec::with_capacity(m.devices.len().min(MAX_DEVICES));
        for d in &m.devices {
            devices.push(DeviceEntry {
                device_id: d.device_id,
                identity_key: identity_key("identity_key", &d.identity_key)?,
                added_at_ms: d.added_at_ms,
                certificate: DeviceCertificate::from_bytes(fixed::<SIGNATURE_LEN>(
                    "certificate",
                    &d.certificate,
                )?),
            });
        }
        check_shape(&m.user_id, m.version, &devices)?;
        for d in &devices {
            let address = Address::new(&m.user_id, d.device_id)
                .map_err(|_| WireError::InvalidValue("devices"))?;
            d.certificate.verify(&user_key, &address, &d.identity_key)?;
        }
        let tbs = to_be_signed(&m.user_id, &user_key, m.version, &devices);
        user_key
            .verify(&tbs, &signature)
            .map_err(|_| IdentityError::InvalidListSignature)?;
        Ok(Self {
            user_id: m.user_id,
            user_key,
            version: m.version,
            devices,
            signature,
        })
    }

    /// The canonical encoding.
    pub fn to_wire(&self) -> Vec<u8> {
        proto::SignedDeviceList {
            format: FORMAT,
            user_id: self.user_id.clone(),
            user_key: self.user_key.to_bytes().to_vec(),
            version: self.version,
            devices: self
                .devices
                .iter()
                .map(|d| proto::DeviceEntry {
                    device_id: d.device_id,
                    identity_key: d.identity_key.to_bytes().to_vec(),
                    added_at_ms: d.added_at_ms,
                    certificate: d.certificate.to_bytes().to_vec(),
                })
                .collect(),
            signature: self.signature.to_bytes().to_vec(),
        }
        .encode_to_vec()
    }

    /// The user id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The user key that signed the list.
    pub fn user_key(&self) -> &UserKey {
        &self.user_key
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The devices, in ascending id order.
    pub fn devices(&self) -> &[DeviceEntry] {
        &self.devices
    }

    /// The entry of `device_id`, if listed.
    pub fn device(&self, device_id: DeviceId) -> Option<&DeviceEntry> {
        self.devices.iter().find(|d| d.device_id == device_id)
    }

    /// Whether the device `device_id` is listed with `identity`.
    pub fn lists(&self, device_id: DeviceId, identity: &IdentityKey) -> bool {
        self.device(device_id)
            .is_some_and(|d| d.identity_key == *identity)
    }

    /// The addresses of the listed devices.
    pub fn addresses(&self) -> Vec<Address> {
        self.devices
            .iter()
            .filter_map(|d| Address::new(&self.user_id, d.device_id).ok())
            .collect()
    }

    /// The list signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    fn entries(&self) -> Vec<(DeviceId, IdentityKey, u64)> {
        self.devices
            .iter()
            .map(|d| (d.device_id, d.identity_key, d.added_at_ms))
            .collect()
    }

    fn next_version(&self) -> Result<u64, IdentityError> {
        self.version
            .checked_add(1)
            .ok_or(IdentityError::VersionExhausted)
    }

    fn check_signer(&self, user: &UserKeyPair) -> Result<(), IdentityError> {
        if user.public_key() == self.user_key {
            Ok(())
        } else {
            Err(IdentityError::WrongUserKey)
        }
    }
}

fn invalid_user_or_device(device_id: DeviceId) -> IdentityError {
    if device_id == 0 {
        WireError::InvalidValue("devices").into()
    } else {
        WireError::InvalidValue("user_id").into()
    }
}

/// The rules of a list that need no key: user id, version, device count,
/// order, and distinct identity keys.
fn check_shape(user_id: &str, version: u64, devices: &[DeviceEntry]) -> Result<(), WireError> {
    if Address::new(user_id, 1).is_err() {
        return Err(WireError::InvalidValue("user_id"));
    }
    if version == 0 {
        return Err(WireError::InvalidValue("version"));
    }
    if devices.is_empty() || devices.len() > MAX_DEVICES {
        return Err(WireError::InvalidValue("devices"));
    }
    let mut previous = 0;
    for (i, d) in devices.iter().enumerate() {
        if d.device_id <= previous {
            return Err(WireError::InvalidValue("devices"));
        }
        previous = d.device_id;
        if devices[..i]
            .iter()
            .any(|e| e.identity_key == d.identity_key)
        {
            return Err(WireError::InvalidValue("devices"));
        }
    }
    Ok(())
}

/// The signed bytes of a list.
fn to_be_signed(
    user_id: &str,
    user_key: &UserKey,
    version: u64,
    devices: &[DeviceEntry],
) -> Vec<u8> {
    let mut tbs = Vec::with_capacity(DEVICE_LIST_LABEL.len() + 128 + devices.len() * 140);
    tbs.extend_from_slice(DEVICE_LIST_LABEL);
    tbs.extend_from_slice(&user_key.to_bytes());
    // Checked by `check_shape`: at most 64 bytes, at most 16 devices.
    tbs.push(user_id.len() as u8);
    tbs.extend_from_slice(user_id.as_bytes());
    tbs.extend_from_slice(&version.to_be_bytes());
    tbs.push(devices.len() as u8);
    for d in devices {
        tbs.extend_from_slice(&d.device_id.to_be_bytes());
        tbs.extend_from_slice(&d.identity_key.to_bytes());
        tbs.extend_from_slice(&d.added_at_ms.to_be_bytes());
        tbs.extend_from_slice(&d.certificate.to_bytes());
    }
    tbs
}
