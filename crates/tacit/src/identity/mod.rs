//! Users own their devices: user keys, device certificates, signed device
//! lists and safety numbers (`docs/PROTOCOL.md`, section 14).
//!
//! A user is a user id bound to a [`UserKey`]. The user key signs one
//! [`DeviceCertificate`] per device and the [`DeviceList`] that names them
//! all, with a version that only grows. A peer creates sessions only with
//! devices on a list it verified under the user key it trusts, so neither a
//! stranger nor the relay can add a device to a user.
//!
//! Every value of [`DeviceList`] has been verified: the only ways to get one
//! are [`DeviceList::from_wire`] (strict decoding, then every certificate and
//! the list signature) and the constructors that sign with a
//! [`UserKeyPair`].

mod certificate;
mod device_list;
mod link;
mod proto;
mod safety;
mod user_key;

pub use certificate::DeviceCertificate;
pub use device_list::{DeviceEntry, DeviceList};
pub use link::{LinkCode, LinkRequest, LinkSecrets, LINK_CODE_CHARS, LINK_CODE_LEN, LINK_SLOT_LEN};
pub use safety::{
    fingerprint_digits, SafetyNumber, SAFETY_NUMBER_DIGITS, SAFETY_NUMBER_ITERATIONS,
};
pub use user_key::{UserKey, UserKeyPair};

/// The most devices one user can have on its list.
pub const MAX_DEVICES: usize = 16;
/// The largest encoded [`DeviceList`] accepted.
pub const MAX_DEVICE_LIST_LEN: usize = 4096;

/// Domain separation of device certificates.
pub(crate) const CERTIFICATE_LABEL: &[u8] = b"tacit/identity/v1/device-certificate";
/// Domain separation of device lists.
pub(crate) const DEVICE_LIST_LABEL: &[u8] = b"tacit/identity/v1/device-list";
