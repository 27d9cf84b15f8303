#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The SQLite store: round trips, the key check, row binding, reopening a
//! file mid-conversation, and transactions that leave nothing partial.

mod common;

use common::{list, trust};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rusqlite::Connection;
use tacit::error::{SessionError, StoreError};
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
use tacit::store::{Changes, IdentityStore, InMemoryStore, PreKeyStore, SessionStore, Store};
use tacit::wire::SessionMessage;
use tacit::Address;
use tacit_sqlite::SqliteStore;

const KEY: [u8; 32] = [7; 32];

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

/// Every row of the data tables, raw, in a fixed order.
fn raw_rows(path: &std::path::Path) -> Vec<(String, Vec<u8>, u32, Vec<u8>)> {
    let conn = Connection::open(path).unwrap();
    let mut out = Vec::new();
    for table in ["identities", "sessions"] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT user_tag, device_id, record FROM {table} ORDER BY user_tag, device_id"
            ))
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((table.to_owned(), r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    let account: Vec<u8> = conn
        .query_row("SELECT record FROM account", [], |r| r.get(0))
        .unwrap();
    out.push(("account".into(), vec![], 0, account));
    let mut stmt = conn
        .prepare("SELECT user_tag, record FROM device_lists ORDER BY user_tag")
        .unwrap();
    let lists = stmt
        .query_map([], |r| {
            Ok(("device_lists".to_owned(), r.get(0)?, 0, r.get(1)?))
        })
        .unwrap();
    out.extend(lists.map(Result::unwrap));
    out
}

/// Alice and Bob (one device each) trust both their lists.
fn introduce<A: Store, B: Store>(alice: &mut SessionManager<A>, bob: &mut SessionManager<B>) {
    let lists = [
        list("alice", 1, &[(1, alice.account().identity().public_key())]),
        list("bob", 1, &[(1, bob.account().identity().public_key())]),
    ];
    trust(alice, &[&lists[0], &lists[1]]);
    trust(bob, &[&lists[0], &lists[1]]);
}

/// A conversation: Alice (SQLite) and Bob (in memory) exchange a few
/// messages.
fn converse(
    alice: &mut SessionManager<SqliteStore>,
    bob: &mut SessionManager<InMemoryStore>,
    rounds: usize,
    rng: &mut ChaCha20Rng,
) {
    let alice_id = alice.account().identity().public_key();
    let bob_id = bob.account().identity().public_key();
    let (a, b) = (alice.local_address().clone(), bob.local_address().clone());
    for i in 0..rounds {
        let m = alice.encrypt(&b, format!("a{i}").as_bytes(), rng).unwrap();
        let d = bob.decrypt(&a, &alice_id, &m, rng).unwrap();
        assert_eq!(d.plaintext, format!("a{i}").as_bytes());
        let r = bob.encrypt(&a, format!("b{i}").as_bytes(), rng).unwrap();
        let d = alice.decrypt(&b, &bob_id, &r, rng).unwrap();
        assert_eq!(d.plaintext, format!("b{i}").as_bytes());
    }
}

fn pair(
    path: &std::path::Path,
    rng: &mut ChaCha20Rng,
) -> (SessionManager<SqliteStore>, SessionManager<InMemoryStore>) {
    let mut alice = SessionManager::create(
        SqliteStore::open(path, &KEY).unwrap(),
        addr("alice", 1),
        Account::generate(0, rng),
        SessionConfig::default(),
    )
    .unwrap();
    alice.generate_one_time_prekeys(5, rng).unwrap();
    let mut bob = SessionManager::create(
        InMemoryStore::new(),
        addr("bob", 1),
        Account::generate(0, rng),
        SessionConfig::default(),
    )
    .unwrap();
    bob.generate_one_time_prekeys(5, rng).unwrap();
    introduce(&mut alice, &mut bob);
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap();
    alice.process_bundle(&addr("bob", 1), &bundle, rng).unwrap();
    (alice, bob)
}

#[test]
fn records_round_trip() {
    let mut rng = rng(1);
    let mut store = SqliteStore::open_in_memory(&KEY).unwrap();
    let mut memory = InMemoryStore::new();
    let mut account = Account::generate(5, &mut rng);
    account.generate_one_time_prekeys(3, &mut rng).unwrap();
    let peer = Account::generate(5, &mut rng);
    let mut manager = SessionManager::create(
        InMemoryStore::new(),
        addr("alice", 1),
        account.clone(),
        SessionConfig::default(),
    )
    .unwrap();
    let bob_list = list("bob", 1, &[(2, peer.identity().public_key())]);
    trust(&mut manager, &[&bob_list]);
    manager
        .process_bundle(
            &addr("bob", 2),
            &peer.bundle(BundlePreKey::Fallback).unwrap(),
            &mut rng,
        )
        .unwrap();
    let record = manager
        .store()
        .load_session(&addr("bob", 2))
        .unwrap()
        .unwrap();

    let changes = Changes::new()
        .with_account(account.clone())
        .with_identity(addr("bob", 2), peer.identity().public_key())
        .with_session(addr("bob", 2), Some(record.clone()));
    store.commit(changes.clone()).unwrap();
    memory.commit(changes).unwrap();

    assert_eq!(
        *store.load_account().unwrap().unwrap().to_bytes(),
        *account.to_bytes()
    );
    assert_eq!(
        store.trusted_identity(&addr("bob", 2)).unwrap(),
        Some(peer.identity().public_key())
    );
    assert_eq!(store.trusted_identity(&addr("bob", 3)).unwrap(), None);
    assert_eq!(
        *store
            .load_session(&addr("bob", 2))
            .unwrap()
            .unwrap()
            .to_bytes(),
        *record.to_bytes()
    );
    assert_eq!(store.session_devices("bob").unwrap(), [2]);
    assert_eq!(store.session_devices("carol").unwrap(), Vec::<u32>::new());

    // Deleting a session.
    store
        .commit(Changes::new().with_session(addr("bob", 2), None))
        .unwrap();
    assert!(store.load_session(&addr("bob", 2)).unwrap().is_none());
}

#[test]
fn a_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = rng(2);
    drop(pair(&path, &mut rng));
    assert_eq!(
        SqliteStore::open(&path, &[8; 32]).unwrap_err(),
        StoreError::WrongKey
    );
    assert!(SqliteStore::open(&path, &KEY).is_ok());
}

#[test]
fn swapped_rows_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = rng(3);
    let (alice, bob) = pair(&path, &mut rng);
    let bob2 = Account::generate(0, &mut rng);
    let bundle = bob2.bundle(BundlePreKey::None).unwrap();
    let mut alice = alice;
    let bob_v2 = list(
        "bob",
        2,
        &[
            (1, bob.account().identity().public_key()),
            (2, bob2.identity().public_key()),
        ],
    );
    trust(&mut alice, &[&bob_v2]);
    alice
        .process_bundle(&addr("bob", 2), &bundle, &mut rng)
        .unwrap();
    drop(alice);

    // Copy bob.1's sealed session over bob.2's row.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE sessions SET record = (SELECT record FROM sessions WHERE device_id = 1)
         WHERE device_id = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert!(store.load_session(&addr("bob", 1)).unwrap().is_some());
    assert!(matches!(
        store.load_session(&addr("bob", 2)).unwrap_err(),
        StoreError::Tampered {
            table: "sessions",
            ..
        }
    ));
    drop(store);
    // A session record moved into the identities table fails too.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE identities SET record = (SELECT record FROM sessions WHERE device_id = 1)
         WHERE device_id = 1",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert!(matches!(
        store.trusted_identity(&addr("bob", 1)).unwrap_err(),
        StoreError::Tampered {
            table: "identities",
            ..
        }
    ));
    // And a flipped bit in the account.
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let mut account: Vec<u8> = conn
        .query_row("SELECT record FROM account", [], |r| r.get(0))
        .unwrap();
    account[40] ^= 1;
    conn.execute("UPDATE account SET record = ?1", [account])
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert!(matches!(
        store.load_account().unwrap_err(),
        StoreError::Tampered {
            table: "account",
            ..
        }
    ));
}

#[test]
fn nothing_is_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = rng(4);
    let (mut alice, mut bob) = pair(&path, &mut rng);
    converse(&mut alice, &mut bob, 2, &mut rng);
    let seed = *alice.account().identity().seed().as_bytes();
    drop(alice);
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("store.db-wal")) {
        bytes.extend(wal);
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&seed));
    assert!(!contains(b"alice") && !contains(b"bob"));
}

#[test]
fn reopening_the_file_continues_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = rng(5);
    let (mut alice, mut bob) = pair(&path, &mut rng);
    converse(&mut alice, &mut bob, 3, &mut rng);
    // A message in flight while Alice's app restarts.
    let in_flight = bob
        .encrypt(&addr("alice", 1), b"while you were away", &mut rng)
        .unwrap();
    drop(alice);

    let store = SqliteStore::open(&path, &KEY).unwrap();
    let mut alice =
        SessionManager::open(store, addr("alice", 1), SessionConfig::default()).unwrap();
    let bob_id = bob.account().identity().public_key();
    let d = alice
        .decrypt(&addr("bob", 1), &bob_id, &in_flight, &mut rng)
        .unwrap();
    assert_eq!(d.plaintext, b"while you were away");
    converse(&mut alice, &mut bob, 3, &mut rng);
    assert_eq!(alice.fan_out("bob").unwrap(), [addr("bob", 1)]);
}

#[test]
fn a_failed_transaction_leaves_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = rng(6);
    // Bob (SQLite) receives a prekey message: its decrypt writes the account
    // (one-time prekey consumed), the identity (first use) and the session.
    let mut bob = SessionManager::create(
        SqliteStore::open(&path, &KEY).unwrap(),
        addr("bob", 1),
        Account::generate(0, &mut rng),
        SessionConfig::default(),
    )
    .unwrap();
    bob.generate_one_time_prekeys(3, &mut rng).unwrap();
    let mut alice = SessionManager::create(
        InMemoryStore::new(),
        addr("alice", 1),
        Account::generate(0, &mut rng),
        SessionConfig::default(),
    )
    .unwrap();
    introduce(&mut alice, &mut bob);
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap();
    alice
        .process_bundle(&addr("bob", 1), &bundle, &mut rng)
        .unwrap();
    let m = alice.encrypt(&addr("bob", 1), b"hello", &mut rng).unwrap();
    assert!(matches!(m, SessionMessage::PreKey(_)));
    let alice_id = alice.account().identity().public_key();

    // The session write, the last of the transaction, fails.
    let store = bob.into_store();
    drop(store);
    let before = raw_rows(&path);
    let mut bob = common::manager_with_file_closed(
        SessionManager::open(
            SqliteStore::open(&path, &KEY).unwrap(),
            addr("bob", 1),
            SessionConfig::default(),
        )
        .unwrap(),
        &path,
        &KEY,
        "CREATE TRIGGER fail_sessions BEFORE INSERT ON sessions
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    );
    let err = bob
        .decrypt(&addr("alice", 1), &alice_id, &m, &mut rng)
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Store(StoreError::Backend(msg)) if format!("{msg:?}").contains("injected")),
        "{err:?}"
    );
    // The account was written before the failure: rolled back. (Alice's
    // identity is trusted from her device list, before any message.)
    assert_eq!(bob.account().one_time_prekey_count(), 3);
    drop(bob);
    assert_eq!(raw_rows(&path), before);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(
        store.trusted_identity(&addr("alice", 1)).unwrap(),
        Some(alice_id)
    );
    assert_eq!(
        store
            .load_account()
            .unwrap()
            .unwrap()
            .one_time_prekey_count(),
        3
    );

    // Without the saboteur, the same message goes through.
    let store = common::with_file_closed(store, &path, &KEY, "DROP TRIGGER fail_sessions;");
    let mut bob = SessionManager::open(store, addr("bob", 1), SessionConfig::default()).unwrap();
    let d = bob
        .decrypt(&addr("alice", 1), &alice_id, &m, &mut rng)
        .unwrap();
    assert_eq!(d.plaintext, b"hello");
    drop(bob);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(
        store
            .load_account()
            .unwrap()
            .unwrap()
            .one_time_prekey_count(),
        2
    );
    assert_eq!(
        store.trusted_identity(&addr("alice", 1)).unwrap(),
        Some(alice_id)
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, &KEY).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(conn);
    assert_eq!(
        SqliteStore::open(&path, &KEY).unwrap_err(),
        StoreError::UnknownSchema(99)
    );
}

#[test]
fn the_store_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<SqliteStore>();
    assert_send::<SessionManager<SqliteStore>>();
    let store: Box<dyn Store> = Box::new(SqliteStore::open_in_memory(&KEY).unwrap());
    assert!(store.load_account().unwrap().is_none());
}

#[test]
fn a_second_store_on_the_same_file_is_refused_and_the_first_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut first = SqliteStore::open(&path, &KEY).unwrap();
    let account = Account::generate(0, &mut ChaCha20Rng::seed_from_u64(3));

    // Two managers on one file would each write the account they loaded,
    // and one would lose the other's consumed one-time prekey: the second
    // opener is refused instead, and writes nothing.
    assert_eq!(
        SqliteStore::open(&path, &KEY).unwrap_err(),
        StoreError::InUse
    );
    first
        .commit(Changes::new().with_account(account.clone()))
        .unwrap();
    assert_eq!(
        SqliteStore::open(&path, &KEY).unwrap_err(),
        StoreError::InUse
    );
    assert_eq!(
        first.load_account().unwrap().unwrap().to_bytes(),
        account.to_bytes()
    );

    // Once the first is closed, the file opens again.
    drop(first);
    let second = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(
        second.load_account().unwrap().unwrap().to_bytes(),
        account.to_bytes()
    );
}
