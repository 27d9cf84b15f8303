#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Rolled-back and deleted rows: a store restored from a backup, a single
//! row put back to an older sealed value, a deleted row. None of them may
//! lead to a message key used twice, or an identity re-learned.

mod common;

use common::{list, trust};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rusqlite::Connection;
use tacit::error::{SessionError, StoreError};
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
use tacit::store::{IdentityStore, InMemoryStore, SessionStore};
use tacit::Address;
use tacit_sqlite::SqliteStore;

const KEY: [u8; 32] = [5; 32];

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

fn open_alice(path: &std::path::Path) -> SessionManager<SqliteStore> {
    SessionManager::open(
        SqliteStore::open(path, &KEY).unwrap(),
        addr("alice", 1),
        SessionConfig::default(),
    )
    .unwrap()
}

/// Alice (SQLite, at `path`) with a session to Bob (in memory), closed.
fn setup(path: &std::path::Path, rng: &mut ChaCha20Rng) -> SessionManager<InMemoryStore> {
    let mut alice = SessionManager::create(
        SqliteStore::open(path, &KEY).unwrap(),
        addr("alice", 1),
        Account::generate(0, rng),
        SessionConfig::default(),
    )
    .unwrap();
    let mut bob = SessionManager::create(
        InMemoryStore::new(),
        addr("bob", 1),
        Account::generate(0, rng),
        SessionConfig::default(),
    )
    .unwrap();
    let lists = [
        list("alice", 1, &[(1, alice.account().identity().public_key())]),
        list("bob", 1, &[(1, bob.account().identity().public_key())]),
    ];
    trust(&mut alice, &[&lists[0], &lists[1]]);
    trust(&mut bob, &[&lists[0], &lists[1]]);
    let bundle = bob.account().bundle(BundlePreKey::None).unwrap();
    alice.process_bundle(&addr("bob", 1), &bundle, rng).unwrap();
    bob
}

fn send(path: &std::path::Path, text: &[u8], rng: &mut ChaCha20Rng) -> tacit::wire::SessionMessage {
    open_alice(path)
        .encrypt(&addr("bob", 1), text, rng)
        .unwrap()
}

fn sql(path: &std::path::Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

#[test]
fn a_session_row_put_back_to_an_older_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let _bob = setup(&path, &mut rng);
    send(&path, b"one", &mut rng);
    // Keep the whole row as it is now (every column).
    sql(&path, "CREATE TABLE saved AS SELECT * FROM sessions;");
    send(&path, b"two", &mut rng);
    // Put it back: the next send would reuse the key and nonce of "two".
    sql(
        &path,
        "DELETE FROM sessions; INSERT INTO sessions SELECT * FROM saved; DROP TABLE saved;",
    );
    assert_eq!(
        SqliteStore::open(&path, &KEY).unwrap_err(),
        StoreError::Inconsistent
    );
}

#[test]
fn a_deleted_identity_or_session_row_is_refused() {
    for table in ["identities", "sessions", "device_lists"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let _bob = setup(&path, &mut rng);
        assert!(SqliteStore::open(&path, &KEY)
            .unwrap()
            .trusted_identity(&addr("bob", 1))
            .unwrap()
            .is_some());
        sql(&path, &format!("DELETE FROM {table};"));
        // Not re-learned on first use: the store does not open.
        assert_eq!(
            SqliteStore::open(&path, &KEY).unwrap_err(),
            StoreError::Inconsistent,
            "{table}"
        );
    }
}

#[test]
fn a_whole_file_restored_from_a_backup_is_refused_until_its_sessions_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let backup = dir.path().join("backup.db");
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut bob = setup(&path, &mut rng);
    let alice_id = open_alice(&path).account().identity().public_key();
    let first = send(&path, b"one", &mut rng);
    bob.decrypt(&addr("alice", 1), &alice_id, &first, &mut rng)
        .unwrap();
    std::fs::copy(&path, &backup).unwrap();
    send(&path, b"two", &mut rng);

    // The backup put back in place of the file.
    std::fs::copy(&backup, &path).unwrap();
    assert!(matches!(
        SqliteStore::open(&path, &KEY).unwrap_err(),
        StoreError::RolledBack {
            generation,
            high_water,
        } if generation < high_water
    ));
    // Still refused: nothing was changed by the refusal.
    assert!(matches!(
        SqliteStore::open(&path, &KEY),
        Err(StoreError::RolledBack { .. })
    ));

    // The application accepts the restore: every session is dropped, the
    // rest kept; no key of the old session is ever used again.
    let store = SqliteStore::open_restored(&path, &KEY).unwrap();
    assert!(store.load_session(&addr("bob", 1)).unwrap().is_none());
    assert!(store.trusted_identity(&addr("bob", 1)).unwrap().is_some());
    drop(store);
    let mut alice = open_alice(&path);
    assert!(matches!(
        alice.encrypt(&addr("bob", 1), b"three", &mut rng),
        Err(SessionError::NoSession(_))
    ));
    // A fresh handshake works.
    let bundle = bob.account().bundle(BundlePreKey::None).unwrap();
    alice
        .process_bundle(&addr("bob", 1), &bundle, &mut rng)
        .unwrap();
    let m = alice.encrypt(&addr("bob", 1), b"four", &mut rng).unwrap();
    let d = bob
        .decrypt(&addr("alice", 1), &alice_id, &m, &mut rng)
        .unwrap();
    assert_eq!(d.plaintext, b"four");
    drop(alice);
    assert!(SqliteStore::open(&path, &KEY).is_ok());
}

#[test]
fn a_used_store_without_its_counter_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let _bob = setup(&path, &mut rng);
    // Copied alone to another place (or restored without its counter).
    let moved = dir.path().join("moved.db");
    std::fs::copy(&path, &moved).unwrap();
    assert_eq!(
        SqliteStore::open(&moved, &KEY).unwrap_err(),
        StoreError::CounterMissing
    );
    assert!(SqliteStore::open_restored(&moved, &KEY).is_ok());
    assert!(SqliteStore::open(&moved, &KEY).is_ok());
}
