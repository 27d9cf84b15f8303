//! Users and their devices in the session layer (`docs/PROTOCOL.md` 14.5
//! and 14.6): verified device lists, the user key trusted per user id, who a
//! message fans out to, the local device's certificate, safety numbers.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::SessionManager;
use crate::address::Address;
use crate::error::{SessionError, UnknownUser, UserKeyConflict};
use crate::identity::{DeviceCertificate, DeviceList, SafetyNumber, UserKey};
use crate::keys::IdentityKey;
use crate::store::{Changes, Store};

/// What [`SessionManager::update_device_list`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceListUpdate {
    /// The first list of this user: its user key is now trusted (trust on
    /// first use; compare safety numbers to verify it).
    FirstContact,
    /// The same list was already stored.
    Unchanged,
    /// A newer list replaced the stored one.
    Updated {
        /// Devices on the new list that were not on the old one, or are on
        /// it with another identity key.
        added: Vec<Address>,
        /// Devices no longer on the list: their sessions were deleted.
        removed: Vec<Address>,
    },
}

impl<S: Store> SessionManager<S> {
    /// The verified device list trusted for `user_id`, if any.
    pub fn device_list(&self, user_id: &str) -> Result<Option<DeviceList>, SessionError> {
        Ok(self.store.device_list(user_id)?)
    }

    /// Trusts a verified device list for its user (`docs/PROTOCOL.md` 14.5,
    /// rule 1): the first list of a user id is trusted on first use; later
    /// ones must carry the same user key and a higher version. Devices no
    /// longer listed lose their sessions, in the same commit, so nothing is
    /// sent to them again and their envelopes are refused.
    ///
    /// Refused, changing nothing: [`SessionError::UserKeyChanged`],
    /// [`SessionError::StaleDeviceList`],
    /// [`SessionError::ConflictingDeviceList`].
    pub fn update_device_list(
        &mut self,
        list: &DeviceList,
    ) -> Result<DeviceListUpdate, SessionError> {
        let stored = self.store.device_list(list.user_id())?;
        let update = match &stored {
            None => DeviceListUpdate::FirstContact,
            Some(old) if old.user_key() != list.user_key() => {
                return Err(SessionError::UserKeyChanged(Box::new(UserKeyConflict {
                    user_id: list.user_id().into(),
                    trusted: *old.user_key(),
                    received: *list.user_key(),
                })));
            }
            Some(old) if list.version() < old.version() => {
                return Err(SessionError::StaleDeviceList {
                    user_id: list.user_id().into(),
                    stored: old.version(),
                    received: list.version(),
                });
            }
            Some(old) if list.version() == old.version() => {
                return if old == list {
                    Ok(DeviceListUpdate::Unchanged)
                } else {
                    Err(SessionError::ConflictingDeviceList(list.user_id().into()))
                };
            }
            Some(old) => DeviceListUpdate::Updated {
                added: list
                    .devices()
                    .iter()
                    .filter(|d| !old.lists(d.device_id, &d.identity_key))
                    .filter_map(|d| Address::new(list.user_id(), d.device_id).ok())
                    .collect(),
                removed: removed_devices(old, list),
            },
        };
        let changes = self.list_changes(list)?;
        self.store.commit(changes)?;
        Ok(update)
    }

    /// Trusts `list` and its user key for its user, replacing a trusted user
    /// key (after the user checked the new safety number). The sessions of
    /// every device of the user not on `list` with the same identity key
    /// are deleted.
    pub fn accept_user_key(&mut self, list: &DeviceList) -> Result<(), SessionError> {
        let changes = self.list_changes(list)?;
        self.store.commit(changes)?;
        Ok(())
    }

    /// The devices a message to `user_id` fans out to: the devices on its
    /// verified list, then the other devices on the local user's own list,
    /// without the local device, sorted and without repeats. Never a device
    /// known only from an inbound message. Devices with no session yet need
    /// a bundle first ([`missing_sessions`](Self::missing_sessions)).
    pub fn fan_out(&self, user_id: &str) -> Result<Vec<Address>, SessionError> {
        let peer = self.store.device_list(user_id)?.ok_or_else(|| {
            SessionError::UnknownUser(Box::new(UnknownUser {
                user_id: user_id.into(),
                user_key: None,
            }))
        })?;
        let own = self
            .store
            .device_list(self.local.user_id())?
            .ok_or(SessionError::NotOnOwnList)?;
        let mut out: Vec<Address> = peer
            .addresses()
            .into_iter()
            .chain(own.addresses())
            .filter(|a| *a != self.local)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The devices of [`fan_out`](Self::fan_out) for `user_id` that have no
    /// current session: fetch their bundles and
    /// [`process_bundle`](Self::process_bundle) them before sending.
    pub fn missing_sessions(&self, user_id: &str) -> Result<Vec<Address>, SessionError> {
        let mut out = Vec::new();
        for address in self.fan_out(user_id)? {
            let current = self.store.load_session(&address)?;
            if current.as_ref().and_then(|r| r.current()).is_none() {
                out.push(address);
            }
        }
        Ok(out)
    }

    /// The safety number of the local user and `user_id`, over the two user
    /// keys of their verified lists: one number per pair of users.
    pub fn safety_number(&self, user_id: &str) -> Result<SafetyNumber, SessionError> {
        let (own_key, _) = self.own_credentials()?;
        let peer = self.store.device_list(user_id)?.ok_or_else(|| {
            SessionError::UnknownUser(Box::new(UnknownUser {
                user_id: user_id.into(),
                user_key: None,
            }))
        })?;
        Ok(SafetyNumber::new(
            self.local.user_id(),
            &own_key,
            user_id,
            peer.user_key(),
        ))
    }

    /// The local user's key and the local device's certificate, from the
    /// local user's verified list.
    pub(crate) fn own_credentials(&self) -> Result<(UserKey, DeviceCertificate), SessionError> {
        let list = self
            .store
            .device_list(self.local.user_id())?
            .ok_or(SessionError::NotOnOwnList)?;
        let own = self.account.identity().public_key();
        let entry = list
            .device(self.local.device_id())
            .filter(|d| d.identity_key == own)
            .ok_or(SessionError::NotOnOwnList)?;
        Ok((*list.user_key(), entry.certificate))
    }

    /// Refuses `sender` unless its user has a verified list with `user_key`
    /// (when given) that lists the device with `identity`.
    pub(crate) fn check_listed(
        &self,
        sender: &Address,
        identity: &IdentityKey,
        user_key: Option<&UserKey>,
    ) -> Result<(), SessionError> {
        let Some(list) = self.store.device_list(sender.user_id())? else {
            return Err(SessionError::UnknownUser(Box::new(UnknownUser {
                user_id: sender.user_id().into(),
                user_key: user_key.copied(),
            })));
        };
        if let Some(received) = user_key {
            if received != list.user_key() {
                return Err(SessionError::UserKeyChanged(Box::new(UserKeyConflict {
                    user_id: sender.user_id().into(),
                    trusted: *list.user_key(),
                    received: *received,
                })));
            }
        }
        if list.lists(sender.device_id(), identity) {
            Ok(())
        } else {
            Err(SessionError::DeviceNotListed(sender.clone()))
        }
    }

    /// The writes that make `new` the trusted list: the list, each listed
    /// device's identity, and the deletion of every session with a device
    /// of the user that `new` does not name with its identity key: devices
    /// removed since the old list, devices whose identity key changed, and
    /// devices with a session from before the user had a list.
    fn list_changes(&self, new: &DeviceList) -> Result<Changes, SessionError> {
        let mut changes = Changes::new().with_device_list(new.clone());
        for d in new.devices() {
            let Ok(address) = Address::new(new.user_id(), d.device_id) else {
                continue;
            };
            if address == self.local {
                continue;
            }
            let trusted = self.store.trusted_identity(&address)?;
            if trusted != Some(d.identity_key) {
                changes = changes.with_identity(address.clone(), d.identity_key);
                if self.store.load_session(&address)?.is_some() {
                    changes = changes.with_session(address, None);
                }
            }
        }
        for device_id in self.store.session_devices(new.user_id())? {
            if new.device(device_id).is_some() {
                continue;
            }
            let Ok(address) = Address::new(new.user_id(), device_id) else {
                continue;
            };
            if address != self.local {
                changes = changes.with_session(address, None);
            }
        }
        Ok(changes)
    }
}

/// The devices of `old` that `new` does not list (by device id).
fn removed_devices(old: &DeviceList, new: &DeviceList) -> Vec<Address> {
    old.devices()
        .iter()
        .filter(|d| new.device(d.device_id).is_none())
        .filter_map(|d| Address::new(old.user_id(), d.device_id).ok())
        .collect()
}
