//! Addresses of devices: a user id and a device id.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::AddressError;

/// The longest user id, in bytes of UTF-8.
pub const MAX_USER_ID_LEN: usize = 64;

/// A device's number within its user's account; device ids start at 1.
pub type DeviceId = u32;

/// A device: a user id (1 to 64 bytes of UTF-8 without control characters)
/// and a device id (1 or more).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    user_id: String,
    device_id: DeviceId,
}

impl Address {
    /// Checks and builds an address.
    pub fn new(user_id: &str, device_id: DeviceId) -> Result<Self, AddressError> {
        if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
            return Err(AddressError::UserIdLength(user_id.len()));
        }
        if user_id.chars().any(char::is_control) {
            return Err(AddressError::UserIdCharacters);
        }
        if device_id == 0 {
            return Err(AddressError::DeviceIdZero);
        }
        Ok(Self {
            user_id: user_id.into(),
            device_id,
        })
    }

    /// The user id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The device id.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// Appends `RA = u8(len(user_id)) || user_id || u32be(device_id)`, the
    /// address encoding of sealed sender and of a chain's owner
    /// (`docs/PROTOCOL.md` 10, 16.5).
    pub(crate) fn encode_ra(&self, out: &mut Vec<u8>) {
        let user_id = self.user_id.as_bytes();
        // User ids are at most 64 bytes.
        out.push(u8::try_from(user_id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(user_id);
        out.extend_from_slice(&self.device_id.to_be_bytes());
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.user_id, self.device_id)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert!(Address::new("alice", 1).is_ok());
        assert_eq!(Address::new("", 1), Err(AddressError::UserIdLength(0)));
        assert_eq!(
            Address::new(&"a".repeat(65), 1),
            Err(AddressError::UserIdLength(65))
        );
        assert_eq!(Address::new("a\nb", 1), Err(AddressError::UserIdCharacters));
        assert_eq!(Address::new("alice", 0), Err(AddressError::DeviceIdZero));
        assert_eq!(Address::new("alice", 2).unwrap().to_string(), "alice.2");
    }
}
