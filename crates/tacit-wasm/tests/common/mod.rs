//! Helpers shared by the native tests of the browser store: a user with
//! one device on a `BrowserStore`, its signed device list, and the records
//! its queued writes leave behind.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;

use rand_core::OsRng;
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::session::{Account, SessionConfig, SessionManager};
use tacit::Address;
use tacit_wasm::store::{BrowserStore, Local, Write};

/// The storage key of every test user's records.
pub(crate) const KEY: [u8; 32] = [5; 32];

/// A session manager on the browser store.
pub(crate) type Manager = SessionManager<BrowserStore>;

/// One device of a user, with the records its writes left.
pub(crate) struct User {
    pub(crate) m: Manager,
    pub(crate) key: UserKeyPair,
    pub(crate) records: BTreeMap<String, Vec<u8>>,
}

/// The value of `r`, which the test expects to be `Ok`.
#[track_caller]
pub(crate) fn ok<T, E: core::fmt::Debug>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => unreachable!("{e:?}"),
    }
}

/// Device 1 of `user`.
pub(crate) fn address(user: &str) -> Address {
    ok(Address::new(user, 1))
}

/// A new user with one device (device 1) and four one-time prekeys; its
/// writes are still queued.
pub(crate) fn user(name: &str) -> User {
    let local = Local {
        address: address(name),
        user_key: UserKeyPair::generate(&mut OsRng),
    };
    let store = ok(BrowserStore::create(&KEY, &local));
    let account = Account::generate(0, &mut OsRng);
    let mut m = ok(SessionManager::create(
        store,
        address(name),
        account,
        SessionConfig::default(),
    ));
    ok(m.generate_one_time_prekeys(4, &mut OsRng));
    User {
        m,
        key: local.user_key,
        records: BTreeMap::new(),
    }
}

/// The user's device list (version 1, its one device).
pub(crate) fn list(u: &User) -> DeviceList {
    let identity = u.m.account().identity().public_key();
    let name = u.m.local_address().user_id().to_owned();
    ok(DeviceList::sign(&u.key, &name, 1, &[(1, identity, 0)]))
}

/// Applies the queued writes to the user's records, as the storage would
/// (one transaction); how many there were.
pub(crate) fn flush(u: &mut User) -> usize {
    let writes = u.m.store().take_writes();
    let n = writes.len();
    for Write { key, value } in writes {
        match value {
            Some(v) => u.records.insert(key, v),
            None => u.records.remove(&key),
        };
    }
    n
}
