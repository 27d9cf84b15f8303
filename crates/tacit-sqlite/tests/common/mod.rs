//! Device lists for the tests: a deterministic user key per user id, lists
//! signed with it, and a manager trusting them.
#![allow(dead_code)]

use tacit::identity::{DeviceList, UserKeyPair};
use tacit::keys::IdentityKey;
use tacit::session::SessionManager;
use tacit::store::Store;

/// The user key of `user_id`, derived from the id.
pub(crate) fn user_key(user_id: &str) -> UserKeyPair {
    let mut seed = [0x42u8; 32];
    for (i, b) in user_id.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    UserKeyPair::from_seed(&seed)
}

/// `user_id`'s list at `version`, signed by [`user_key`].
pub(crate) fn list(user_id: &str, version: u64, devices: &[(u32, IdentityKey)]) -> DeviceList {
    let devices: Vec<_> = devices.iter().map(|(d, k)| (*d, *k, 0)).collect();
    DeviceList::sign(&user_key(user_id), user_id, version, &devices).unwrap()
}

/// `manager` trusts each of `lists`.
pub(crate) fn trust<S: Store>(manager: &mut SessionManager<S>, lists: &[&DeviceList]) {
    for list in lists {
        manager.update_device_list(list).unwrap();
    }
}

/// Runs `sql` on the file at `path` while no store holds it (a store keeps
/// the file locked while it is open): closes `store`, runs the SQL on a
/// plain connection, and opens the store again under `key`.
pub(crate) fn with_file_closed(
    store: tacit_sqlite::SqliteStore,
    path: &std::path::Path,
    key: &[u8; 32],
    sql: &str,
) -> tacit_sqlite::SqliteStore {
    drop(store);
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    tacit_sqlite::SqliteStore::open(path, key).unwrap()
}

/// [`with_file_closed`] for a session manager on the store.
pub(crate) fn manager_with_file_closed(
    manager: SessionManager<tacit_sqlite::SqliteStore>,
    path: &std::path::Path,
    key: &[u8; 32],
    sql: &str,
) -> SessionManager<tacit_sqlite::SqliteStore> {
    let local = manager.local_address().clone();
    let store = with_file_closed(manager.into_store(), path, key, sql);
    SessionManager::open(store, local, tacit::session::SessionConfig::default()).unwrap()
}
