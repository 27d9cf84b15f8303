//! Storage traits for the session manager, and in-memory implementations.
//!
//! The traits are synchronous and object-safe, and every implementation is
//! `Send`, so a store (or a `Box<dyn Store>`) can move between threads and
//! be used from async code behind a mutex or a blocking task.
//!
//! Reads go through [`IdentityStore`] (device identities and users' device
//! lists), [`PreKeyStore`] and
//! [`SessionStore`]. Every write goes through [`Store::commit`], which takes
//! all the changes of one operation as a [`Changes`] set and must apply all
//! of them or none: the session manager computes everything an operation
//! changes first, then commits once. A backend whose commit fails must
//! leave its contents as they were (SQLite: one transaction).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::address::{Address, DeviceId};
use crate::error::StoreError;
use crate::identity::DeviceList;
use crate::keys::IdentityKey;
use crate::session::{Account, SessionRecord};

/// The identities trusted for peer devices, and the verified device list
/// trusted for each user (its user key is the user's trusted key).
pub trait IdentityStore: Send {
    /// The identity key trusted for `address`, if any.
    fn trusted_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError>;
    /// The verified device list trusted for `user_id`, if any.
    fn device_list(&self, user_id: &str) -> Result<Option<DeviceList>, StoreError>;
}

/// The local device's account: its identity key pair and every prekey
/// (signed, one-time, fallback) with its private key.
pub trait PreKeyStore: Send {
    /// The account, if one was stored.
    fn load_account(&self) -> Result<Option<Account>, StoreError>;
}

/// Session records, one per peer device.
pub trait SessionStore: Send {
    /// The record for `address`, if any.
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError>;
    /// The device ids of `user_id` that have a session record, ascending.
    fn session_devices(&self, user_id: &str) -> Result<Vec<DeviceId>, StoreError>;
}

/// A complete store: the three read traits and an atomic commit.
pub trait Store: IdentityStore + PreKeyStore + SessionStore {
    /// Applies every change in `changes`, or none of them when it returns
    /// an error.
    fn commit(&mut self, changes: Changes) -> Result<(), StoreError>;
}

/// The writes of one operation, applied atomically by [`Store::commit`].
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct Changes {
    /// The new account, if it changed.
    pub account: Option<Account>,
    /// Identities to trust (replacing any trusted before).
    pub identities: Vec<(Address, IdentityKey)>,
    /// Session records to write; `None` deletes the record.
    pub sessions: Vec<(Address, Option<SessionRecord>)>,
    /// Device lists to trust, each replacing its user's list.
    pub device_lists: Vec<DeviceList>,
}

impl Changes {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the account.
    pub fn with_account(mut self, account: Account) -> Self {
        self.account = Some(account);
        self
    }

    /// Adds an identity to trust.
    pub fn with_identity(mut self, address: Address, identity: IdentityKey) -> Self {
        self.identities.push((address, identity));
        self
    }

    /// Adds a session record to write (`None` deletes it).
    pub fn with_session(mut self, address: Address, record: Option<SessionRecord>) -> Self {
        self.sessions.push((address, record));
        self
    }

    /// Adds a device list to trust for its user.
    pub fn with_device_list(mut self, list: DeviceList) -> Self {
        self.device_lists.push(list);
        self
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.account.is_none()
            && self.identities.is_empty()
            && self.sessions.is_empty()
            && self.device_lists.is_empty()
    }
}

/// A store in memory: for tests, and for applications that persist nothing.
///
/// A commit builds the new contents aside and swaps them in, so a refused
/// commit ([`refuse_next_commit`](Self::refuse_next_commit)) changes
/// nothing.
#[derive(Debug, Default, Clone)]
pub struct InMemoryStore {
    account: Option<Account>,
    identities: BTreeMap<Address, IdentityKey>,
    sessions: BTreeMap<Address, SessionRecord>,
    device_lists: BTreeMap<String, DeviceList>,
    refuse_next_commit: bool,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next [`Store::commit`] fail with [`StoreError::Refused`]
    /// (and write nothing), to test how callers handle a failed write.
    pub fn refuse_next_commit(&mut self) {
        self.refuse_next_commit = true;
    }

    /// Every record in serialized form, in a fixed order: the account, then
    /// identities, then sessions by address. Two stores with equal dumps
    /// hold the same state; tests use it to check that a failed operation
    /// changed nothing.
    pub fn dump(&self) -> Vec<(String, Zeroizing<Vec<u8>>)> {
        let mut out = Vec::new();
        if let Some(account) = &self.account {
            out.push((String::from("account"), account.to_bytes()));
        }
        for (address, identity) in &self.identities {
            out.push((
                alloc::format!("identity/{address}"),
                Zeroizing::new(identity.to_bytes().to_vec()),
            ));
        }
        for (address, record) in &self.sessions {
            out.push((alloc::format!("session/{address}"), record.to_bytes()));
        }
        for (user_id, list) in &self.device_lists {
            out.push((
                alloc::format!("device-list/{user_id}"),
                Zeroizing::new(list.to_wire()),
            ));
        }
        out
    }
}

impl IdentityStore for InMemoryStore {
    fn trusted_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        Ok(self.identities.get(address).copied())
    }

    fn device_list(&self, user_id: &str) -> Result<Option<DeviceList>, StoreError> {
        Ok(self.device_lists.get(user_id).cloned())
    }
}

impl PreKeyStore for InMemoryStore {
    fn load_account(&self) -> Result<Option<Account>, StoreError> {
        Ok(self.account.clone())
    }
}

impl SessionStore for InMemoryStore {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.sessions.get(address).cloned())
    }

    fn session_devices(&self, user_id: &str) -> Result<Vec<DeviceId>, StoreError> {
        Ok(self
            .sessions
            .keys()
            .filter(|a| a.user_id() == user_id)
            .map(Address::device_id)
            .collect())
    }
}

impl Store for InMemoryStore {
    fn commit(&mut self, changes: Changes) -> Result<(), StoreError> {
        if core::mem::take(&mut self.refuse_next_commit) {
            return Err(StoreError::Refused("refuse_next_commit"));
        }
        // Nothing below can fail, so applying in place is all or nothing.
        if let Some(account) = changes.account {
            self.account = Some(account);
        }
        for (address, identity) in changes.identities {
            self.identities.insert(address, identity);
        }
        for (address, record) in changes.sessions {
            match record {
                Some(record) => {
                    self.sessions.insert(address, record);
                }
                None => {
                    self.sessions.remove(&address);
                }
            }
        }
        for list in changes.device_lists {
            self.device_lists.insert(list.user_id().into(), list);
        }
        Ok(())
    }
}

impl<T: IdentityStore + ?Sized> IdentityStore for Box<T> {
    fn trusted_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        (**self).trusted_identity(address)
    }

    fn device_list(&self, user_id: &str) -> Result<Option<DeviceList>, StoreError> {
        (**self).device_list(user_id)
    }
}

impl<T: PreKeyStore + ?Sized> PreKeyStore for Box<T> {
    fn load_account(&self) -> Result<Option<Account>, StoreError> {
        (**self).load_account()
    }
}

impl<T: SessionStore + ?Sized> SessionStore for Box<T> {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        (**self).load_session(address)
    }

    fn session_devices(&self, user_id: &str) -> Result<Vec<DeviceId>, StoreError> {
        (**self).session_devices(user_id)
    }
}

impl<T: Store + ?Sized> Store for Box<T> {
    fn commit(&mut self, changes: Changes) -> Result<(), StoreError> {
        (**self).commit(changes)
    }
}
