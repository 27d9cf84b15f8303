//! The browser store natively: what it writes reopens to the same state,
//! and a record altered, moved or opened under another key is refused.

use std::collections::BTreeMap;

use rand_core::OsRng;
use tacit::error::StoreError;
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
use tacit::store::Store;
use tacit::Address;
use tacit_wasm::store::{BrowserStore, Local, Write};

const KEY: [u8; 32] = [9; 32];

/// Applies `writes` to `records` as the storage would.
fn apply(records: &mut BTreeMap<String, Vec<u8>>, writes: Vec<Write>) {
    for w in writes {
        match w.value {
            Some(v) => records.insert(w.key, v),
            None => records.remove(&w.key),
        };
    }
}

fn device(user: &str) -> (SessionManager<BrowserStore>, UserKeyPair) {
    let address = Address::new(user, 1).unwrap_or_else(|_| unreachable!());
    let local = Local {
        address: address.clone(),
        user_key: UserKeyPair::generate(&mut OsRng),
    };
    let store = BrowserStore::create(&KEY, &local).unwrap_or_else(|_| unreachable!());
    let account = Account::generate(0, &mut OsRng);
    let mut m = SessionManager::create(store, address, account, SessionConfig::default())
        .unwrap_or_else(|_| unreachable!());
    m.generate_one_time_prekeys(2, &mut OsRng)
        .unwrap_or_else(|_| unreachable!());
    (m, local.user_key)
}

fn list(m: &SessionManager<BrowserStore>, user: &str, key: &UserKeyPair) -> DeviceList {
    let identity = m.account().identity().public_key();
    DeviceList::sign(key, user, 1, &[(1, identity, 0)]).unwrap_or_else(|_| unreachable!())
}

/// Alice with her list and Bob's, a session with Bob: her records.
fn alice_records() -> BTreeMap<String, Vec<u8>> {
    let (mut alice, alice_key) = device("alice");
    let (bob, bob_key) = device("bob");
    for l in [
        list(&alice, "alice", &alice_key),
        list(&bob, "bob", &bob_key),
    ] {
        alice
            .update_device_list(&l)
            .unwrap_or_else(|_| unreachable!());
    }
    let bundle = bob
        .account()
        .bundle(BundlePreKey::Auto)
        .unwrap_or_else(|_| unreachable!());
    let bob_address = Address::new("bob", 1).unwrap_or_else(|_| unreachable!());
    alice
        .process_bundle(&bob_address, &bundle, &mut OsRng)
        .unwrap_or_else(|_| unreachable!());
    let mut records = BTreeMap::new();
    apply(&mut records, alice.store().take_writes());
    records
}

#[test]
fn written_records_reopen_to_the_same_state() {
    let records = alice_records();
    let (store, local) = BrowserStore::open(&KEY, &records)
        .unwrap_or_else(|_| unreachable!())
        .unwrap_or_else(|| unreachable!());
    assert_eq!(local.address.user_id(), "alice");
    let bob = Address::new("bob", 1).unwrap_or_else(|_| unreachable!());
    let m = SessionManager::open(store, local.address, SessionConfig::default())
        .unwrap_or_else(|_| unreachable!());
    assert!(m.session_info(&bob).unwrap_or_default().is_some());
    assert!(m.device_list("bob").unwrap_or_default().is_some());
    assert!(m.trusted_identity(&bob).unwrap_or_default().is_some());
    // Nothing in the storage names a user in clear.
    for (key, value) in &records {
        for name in ["alice", "bob"] {
            assert!(!key.contains(name));
            assert!(!value.windows(name.len()).any(|w| w == name.as_bytes()));
        }
    }
}

#[test]
fn an_empty_storage_opens_to_nothing() {
    assert!(matches!(
        BrowserStore::open(&KEY, &BTreeMap::new()),
        Ok(None)
    ));
}

#[test]
fn another_key_is_refused() {
    let records = alice_records();
    assert!(matches!(
        BrowserStore::open(&[8; 32], &records),
        Err(StoreError::WrongKey)
    ));
}

#[test]
fn an_altered_record_is_refused() {
    let records = alice_records();
    for key in records.keys() {
        let mut altered = records.clone();
        if let Some(value) = altered.get_mut(key) {
            let last = value.len() - 1;
            value[last] ^= 1;
        }
        let refused = BrowserStore::open(&KEY, &altered);
        let expected = if key == "meta" {
            matches!(refused, Err(StoreError::WrongKey))
        } else {
            matches!(refused, Err(StoreError::Tampered { .. }))
        };
        assert!(expected, "{key}: {refused:?}");
    }
}

#[test]
fn a_record_moved_to_another_row_is_refused() {
    let records = alice_records();
    let sessions: Vec<&String> = records
        .keys()
        .filter(|k| k.starts_with("session/"))
        .collect();
    let identities: Vec<&String> = records
        .keys()
        .filter(|k| k.starts_with("identity/"))
        .collect();
    assert_eq!(sessions.len(), 1);
    // Another table's record in Bob's session row (same row key).
    let mut moved = records.clone();
    moved.insert(sessions[0].clone(), records[identities[0]].clone());
    assert!(matches!(
        BrowserStore::open(&KEY, &moved),
        Err(StoreError::Tampered { .. })
    ));
    // Bob's session record copied to a made-up row.
    let mut copied = records.clone();
    copied.insert(
        format!("session/{}", "00".repeat(36)),
        records[sessions[0]].clone(),
    );
    assert!(matches!(
        BrowserStore::open(&KEY, &copied),
        Err(StoreError::Tampered { .. })
    ));
    let mut unknown = records.clone();
    unknown.insert("elsewhere".into(), vec![2; 60]);
    assert!(matches!(
        BrowserStore::open(&KEY, &unknown),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn an_empty_commit_queues_nothing() {
    let (alice, _) = device("alice");
    let _ = alice.store().take_writes();
    let mut store = alice.into_store();
    store
        .commit(tacit::store::Changes::new())
        .unwrap_or_else(|_| unreachable!());
    assert!(store.take_writes().is_empty());
}

#[test]
fn app_records_reopen_and_stay_bound_to_their_names() {
    let (alice, _) = device("alice");
    let store = alice.store();
    store
        .put_app_record("h/1", Some(b"first"))
        .unwrap_or_else(|_| unreachable!());
    store
        .put_app_record("h/2", Some(b"second"))
        .unwrap_or_else(|_| unreachable!());
    store
        .put_app_record("gone", Some(b"x"))
        .unwrap_or_else(|_| unreachable!());
    store
        .put_app_record("gone", None)
        .unwrap_or_else(|_| unreachable!());
    // Out of range: refused, nothing queued.
    let queued = store.take_writes();
    assert!(store.put_app_record("", Some(b"x")).is_err());
    assert!(store
        .put_app_record("big", Some(&vec![0; 64 * 1024 + 1]))
        .is_err());
    assert!(store.take_writes().is_empty());
    let mut records = BTreeMap::new();
    apply(&mut records, queued);
    let apps: Vec<String> = records
        .keys()
        .filter(|k| k.starts_with("app/"))
        .cloned()
        .collect();
    assert_eq!(apps.len(), 2);
    let (reopened, _) = BrowserStore::open(&KEY, &records)
        .unwrap_or_else(|_| unreachable!())
        .unwrap_or_else(|| unreachable!());
    assert_eq!(reopened.app_names("h/"), ["h/1", "h/2"]);
    assert_eq!(reopened.app_record("h/2").as_deref(), Some(&b"second"[..]));
    assert_eq!(reopened.app_record("gone"), None);
    // One record swapped into the other's key: refused.
    let mut swapped = records.clone();
    swapped.insert(apps[0].clone(), records[&apps[1]].clone());
    assert!(matches!(
        BrowserStore::open(&KEY, &swapped),
        Err(StoreError::Tampered { .. })
    ));
}
