//! The user key's recovery code (`docs/PROTOCOL.md` 14.1): the user key's
//! 32-byte seed, shown once to the user as 64 hex digits, and restored onto
//! a new device when the device that held the user key is lost. Peers see
//! nothing change: the user key, and so every safety number, stays the
//! same; the new device joins the next version of the user's device list.

use std::fmt;

use tacit::identity::{DeviceList, UserKeyPair};
use tacit::Address;
use tacit_relay_proto::{FetchDeviceList, Reply};
use zeroize::Zeroizing;

use crate::courier::Courier;
use crate::endpoint::Endpoint;
use crate::engine::{open_manager, register_here, unexpected, Creation};
use crate::worker;
use crate::{now_ms, ClientConfig, ClientError, Registration};

/// A user key's recovery code: its seed, written as 64 lowercase hex digits
/// in 16 groups of 4 (`Display`). Whoever holds it can sign the user's
/// device lists: keep it offline.
#[derive(Clone)]
pub struct RecoveryCode(UserKeyPair);

impl RecoveryCode {
    /// Reads a code as a person types it: 64 hex digits in any case, with
    /// spaces or dashes anywhere.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let digits: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !matches!(c, ' ' | '-'))
                .collect::<String>()
                .to_ascii_lowercase(),
        );
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits.as_bytes(), seed.as_mut())
            .map_err(|_| ClientError::Invalid("a recovery code is 64 hex digits".into()))?;
        Ok(Self(UserKeyPair::from_seed(&seed)))
    }

    pub(crate) fn of(user_key: UserKeyPair) -> Self {
        Self(user_key)
    }

    /// The user key it restores.
    pub fn user_key(&self) -> &UserKeyPair {
        &self.0
    }
}

impl fmt::Display for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = Zeroizing::new(hex::encode(self.0.seed().as_bytes()));
        for (i, group) in digits.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

/// Restores the user key from `code` onto this store's new device at
/// `address`, which becomes the device holding the user key: fetches the
/// user's current list from the relay (it must be signed by that key),
/// signs the next version with this device on it (in place of any device
/// with the same id), and registers. Safe to call again after a failure.
pub async fn recover(
    config: &ClientConfig,
    address: Address,
    code: &RecoveryCode,
) -> Result<Registration, ClientError> {
    let config = config.clone();
    let code = code.clone();
    worker::run("tacit-recover", move || async move {
        recover_here(&config, address, &code).await
    })
    .await
}

/// [`recover`] on the calling thread.
async fn recover_here(
    config: &ClientConfig,
    address: Address,
    code: &RecoveryCode,
) -> Result<Registration, ClientError> {
    let endpoint = Endpoint::new(config)?;
    let mut manager = open_manager(config, Some(Creation::LinkedDevice(&address)))?;
    let user = address.user_id().to_owned();
    if manager.device_list(&user)?.is_none() {
        let user_key = code.user_key();
        let mut courier = Courier::new(endpoint, config.request_timeout);
        let answer = courier
            .fetch_device_list(FetchDeviceList::new(&user)?)
            .await?;
        courier.close().await;
        let current = match answer {
            Ok(Reply::DeviceList(bytes)) => bytes.verify()?,
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(ClientError::Relay(e)),
        };
        if current.user_id() != user || *current.user_key() != user_key.public_key() {
            return Err(ClientError::Invalid(format!(
                "the relay's list of {user} is not signed by this recovery code's key"
            )));
        }
        let identity = manager.account().identity().public_key();
        let mut devices: Vec<_> = current
            .devices()
            .iter()
            .filter(|d| d.device_id != address.device_id())
            .map(|d| (d.device_id, d.identity_key, d.added_at_ms))
            .collect();
        devices.push((address.device_id(), identity, now_ms()));
        let version = current
            .version()
            .checked_add(1)
            .ok_or(tacit::error::IdentityError::VersionExhausted)?;
        let next = DeviceList::sign(user_key, &user, version, &devices)?;
        // The list and the key are written in one transaction.
        manager.store().hold()?;
        manager.update_device_list(&next)?;
        let held = manager.store().release()?;
        manager.store().set_user_key(user_key, held)?;
    }
    drop(manager);
    register_here(config, address).await
}
