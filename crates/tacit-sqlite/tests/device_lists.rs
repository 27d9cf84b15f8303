#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Users' device lists in the SQLite store: round trip and replacement, in
//! the same transaction as the other changes, bound to their user's row,
//! verified again when read, and the migration of a version 2 file.

mod common;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use common::list;
use hmac::{Hmac, Mac};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rusqlite::Connection;
use sha2::Sha256;
use tacit::error::{StateError, StoreError};
use tacit::identity::DeviceList;
use tacit::keys::IdentityKeyPair;
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
use tacit::store::{Changes, IdentityStore, SessionStore, Store};
use tacit::Address;
use tacit_sqlite::SqliteStore;

const KEY: [u8; 32] = [7; 32];

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

fn identity(rng: &mut ChaCha20Rng) -> tacit::keys::IdentityKey {
    IdentityKeyPair::generate(rng).public_key()
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The row key of `user_id`'s list (its user tag), computed from the
/// documented format.
fn user_tag(user_id: &str) -> [u8; 32] {
    hmac(&hmac(&KEY, b"tacit-sqlite/v1/index"), user_id.as_bytes())
}

/// `plaintext` sealed as the store seals a `device_lists` record at `tag`,
/// computed from the documented format.
fn seal(path: &std::path::Path, tag: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let record_key = hmac(&KEY, b"tacit-sqlite/v1/record");
    let mut aad = b"tacit-sqlite/v1\0device_lists\0".to_vec();
    aad.extend_from_slice(tag);
    aad.extend_from_slice(&generation(path, tag).to_be_bytes());
    let nonce = [3u8; 24];
    let ciphertext = XChaCha20Poly1305::new((&record_key).into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .unwrap();
    let mut out = vec![tacit_sqlite::SEAL_VERSION];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn set_row(path: &std::path::Path, tag: &[u8; 32], record: &[u8]) {
    Connection::open(path)
        .unwrap()
        .execute(
            "INSERT INTO device_lists (user_tag, record) VALUES (?1, ?2)
             ON CONFLICT (user_tag) DO UPDATE SET record = excluded.record",
            rusqlite::params![&tag[..], record],
        )
        .unwrap();
}

/// The generation of the row at `tag` (its `gen` column, in the aad).
fn generation(path: &std::path::Path, tag: &[u8; 32]) -> u64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT gen FROM device_lists WHERE user_tag = ?1",
            [&tag[..]],
            |r| r.get(0),
        )
        .unwrap()
}

fn row(path: &std::path::Path, tag: &[u8; 32]) -> Vec<u8> {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT record FROM device_lists WHERE user_tag = ?1",
            [&tag[..]],
            |r| r.get(0),
        )
        .unwrap()
}

/// Alice's list, read by a store opened for the purpose (the store keeps
/// the file locked while it is open).
fn alice_list(path: &std::path::Path) -> Result<Option<DeviceList>, StoreError> {
    SqliteStore::open(path, &KEY).unwrap().device_list("alice")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn device_lists_round_trip_and_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (k1, k2) = (identity(&mut rng), identity(&mut rng));
    let alice_v1 = list("alice", 1, &[(1, k1)]);
    let alice_v2 = list("alice", 2, &[(1, k1), (2, k2)]);
    let bob_v7 = list("bob", 7, &[(3, k2)]);

    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(store.device_list("alice").unwrap(), None);
    store
        .commit(
            Changes::new()
                .with_device_list(alice_v1.clone())
                .with_device_list(bob_v7.clone()),
        )
        .unwrap();
    assert_eq!(store.device_list("alice").unwrap(), Some(alice_v1));
    assert_eq!(store.device_list("bob").unwrap(), Some(bob_v7.clone()));
    assert_eq!(store.device_list("carol").unwrap(), None);

    // A newer list replaces the row; the other user's is untouched.
    store
        .commit(Changes::new().with_device_list(alice_v2.clone()))
        .unwrap();
    assert_eq!(store.device_list("alice").unwrap(), Some(alice_v2.clone()));
    drop(store);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(store.device_list("alice").unwrap(), Some(alice_v2.clone()));
    assert_eq!(store.device_list("bob").unwrap(), Some(bob_v7));
    drop(store);
    let count: u32 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM device_lists", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 2);

    // Sealed: neither the user ids nor the list bytes appear in the file.
    let file = std::fs::read(&path).unwrap();
    let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
    for bytes in [&file, &wal] {
        let wire = alice_v2.to_wire();
        assert!(!bytes.windows(wire.len()).any(|w| w == wire.as_slice()));
        assert!(!bytes.windows(5).any(|w| w == b"alice"));
    }
}

#[test]
fn a_failed_commit_writes_no_device_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let k1 = identity(&mut rng);
    let v1 = list("alice", 1, &[(1, k1)]);
    let v2 = list("alice", 2, &[(1, k1), (2, identity(&mut rng))]);
    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    store
        .commit(Changes::new().with_device_list(v1.clone()))
        .unwrap();

    // The identity write fails after nothing else: the new list (written
    // last) must not land either.
    let mut store = common::with_file_closed(
        store,
        &path,
        &KEY,
        "CREATE TRIGGER fail_identities BEFORE INSERT ON identities
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    );
    let err = store
        .commit(
            Changes::new()
                .with_identity(addr("alice", 2), k1)
                .with_device_list(v2.clone()),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if format!("{m:?}").contains("injected")),
        "{err:?}"
    );
    assert_eq!(store.device_list("alice").unwrap(), Some(v1.clone()));

    // The list write itself fails: the identity written before it is
    // rolled back.
    store = common::with_file_closed(
        store,
        &path,
        &KEY,
        "DROP TRIGGER fail_identities;
         CREATE TRIGGER fail_lists BEFORE UPDATE ON device_lists
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    );
    let err = store
        .commit(
            Changes::new()
                .with_identity(addr("alice", 2), k1)
                .with_device_list(v2.clone()),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if format!("{m:?}").contains("injected")),
        "{err:?}"
    );
    assert_eq!(store.device_list("alice").unwrap(), Some(v1));
    assert_eq!(store.trusted_identity(&addr("alice", 2)).unwrap(), None);

    store = common::with_file_closed(store, &path, &KEY, "DROP TRIGGER fail_lists;");
    store
        .commit(
            Changes::new()
                .with_identity(addr("alice", 2), k1)
                .with_device_list(v2.clone()),
        )
        .unwrap();
    assert_eq!(store.device_list("alice").unwrap(), Some(v2));
}

#[test]
fn update_device_list_deletes_sessions_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut alice = SessionManager::create(
        SqliteStore::open(&path, &KEY).unwrap(),
        addr("alice", 1),
        Account::generate(0, &mut rng),
        SessionConfig::default(),
    )
    .unwrap();
    let bob1 = Account::generate(0, &mut rng);
    let bob2 = Account::generate(0, &mut rng);
    let (k1, k2) = (bob1.identity().public_key(), bob2.identity().public_key());
    alice
        .update_device_list(&list("bob", 1, &[(1, k1), (2, k2)]))
        .unwrap();
    for (device, account) in [(1, &bob1), (2, &bob2)] {
        alice
            .process_bundle(
                &addr("bob", device),
                &account.bundle(BundlePreKey::None).unwrap(),
                &mut rng,
            )
            .unwrap();
    }

    // The session delete of bob.2 fails: the list stays at version 1.
    let mut alice = common::manager_with_file_closed(
        alice,
        &path,
        &KEY,
        "CREATE TRIGGER fail_delete BEFORE DELETE ON sessions
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    );
    let v2 = list("bob", 2, &[(1, k1)]);
    assert!(alice.update_device_list(&v2).is_err());
    assert_eq!(alice.device_list("bob").unwrap().unwrap().version(), 1);
    assert!(alice
        .store()
        .load_session(&addr("bob", 2))
        .unwrap()
        .is_some());

    let mut alice =
        common::manager_with_file_closed(alice, &path, &KEY, "DROP TRIGGER fail_delete;");
    alice.update_device_list(&v2).unwrap();
    drop(alice);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(store.device_list("bob").unwrap(), Some(v2));
    assert!(store.load_session(&addr("bob", 2)).unwrap().is_none());
    assert!(store.load_session(&addr("bob", 1)).unwrap().is_some());
}

#[test]
fn a_list_row_is_bound_to_its_user_and_verified_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let k = identity(&mut rng);
    let alice = list("alice", 1, &[(1, k)]);
    let mallory = list("mallory", 1, &[(1, k)]);
    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    store
        .commit(
            Changes::new()
                .with_device_list(alice.clone())
                .with_device_list(mallory.clone()),
        )
        .unwrap();
    drop(store);
    let (alice_tag, mallory_tag) = (user_tag("alice"), user_tag("mallory"));
    // The documented format matches the store's rows.
    assert_eq!(
        DeviceList::from_wire(&{
            let sealed = row(&path, &alice_tag);
            let record_key = hmac(&KEY, b"tacit-sqlite/v1/record");
            let mut aad = b"tacit-sqlite/v1\0device_lists\0".to_vec();
            aad.extend_from_slice(&alice_tag);
            aad.extend_from_slice(&generation(&path, &alice_tag).to_be_bytes());
            XChaCha20Poly1305::new((&record_key).into())
                .decrypt(
                    XNonce::from_slice(&sealed[1..25]),
                    Payload {
                        msg: &sealed[25..],
                        aad: &aad,
                    },
                )
                .unwrap()
        })
        .unwrap(),
        alice
    );

    // Mallory's sealed row copied to Alice's tag: refused, not Mallory's
    // list read as Alice's.
    let original = row(&path, &alice_tag);
    set_row(&path, &alice_tag, &row(&path, &mallory_tag));
    let tampered = StoreError::Tampered {
        table: "device_lists",
        row: hex(&alice_tag),
    };
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(store.device_list("alice").unwrap_err(), tampered);
    assert_eq!(store.device_list("mallory").unwrap(), Some(mallory.clone()));
    drop(store);

    // A flipped byte, a truncated record: tampered.
    let mut flipped = original.clone();
    *flipped.last_mut().unwrap() ^= 1;
    set_row(&path, &alice_tag, &flipped);
    assert_eq!(alice_list(&path).unwrap_err(), tampered);
    set_row(&path, &alice_tag, &original[..original.len() - 1]);
    assert_eq!(alice_list(&path).unwrap_err(), tampered);

    // Sealed properly but not a list, a list with a broken signature, or
    // Mallory's valid list at Alice's row: corrupt.
    let corrupt = StoreError::Corrupt {
        table: "device_lists",
        error: StateError::Corrupt,
    };
    let mut bad_signature = alice.to_wire();
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 1;
    for plaintext in [b"not a list".to_vec(), bad_signature, mallory.to_wire()] {
        set_row(&path, &alice_tag, &seal(&path, &alice_tag, &plaintext));
        assert_eq!(alice_list(&path).unwrap_err(), corrupt);
    }

    // The original row reads again.
    set_row(
        &path,
        &alice_tag,
        &seal(&path, &alice_tag, &alice.to_wire()),
    );
    assert_eq!(alice_list(&path).unwrap(), Some(alice));
}

#[test]
fn a_version_2_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let k = identity(&mut rng);
    drop(SqliteStore::open(&path, &KEY).unwrap());
    // Make it a version 2 file: no device lists table, no generations, and
    // an identity sealed as version 2 sealed it (seal version 1, without a
    // generation in the aad).
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE device_lists; ALTER TABLE account DROP COLUMN gen;
         ALTER TABLE identities DROP COLUMN gen; ALTER TABLE sessions DROP COLUMN gen;
         ALTER TABLE app_records DROP COLUMN gen; DELETE FROM meta WHERE name = 'state';
         UPDATE schema_version SET version = 2;",
    )
    .unwrap();
    let tag = user_tag("bob");
    let mut row = tag.to_vec();
    row.extend_from_slice(&1u32.to_be_bytes());
    let mut aad = b"tacit-sqlite/v1\0identities\0".to_vec();
    aad.extend_from_slice(&row);
    let nonce = [4u8; 24];
    let record_key = hmac(&KEY, b"tacit-sqlite/v1/record");
    let mut sealed = vec![1u8];
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(
        &XChaCha20Poly1305::new((&record_key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &k.to_bytes(),
                    aad: &aad,
                },
            )
            .unwrap(),
    );
    conn.execute(
        "INSERT INTO identities (user_tag, device_id, record) VALUES (?1, 1, ?2)",
        rusqlite::params![&tag[..], sealed],
    )
    .unwrap();
    drop(conn);
    // A file of version 2 had no high-water mark beside it.
    let mut counter = path.clone().into_os_string();
    counter.push("-generation");
    std::fs::remove_file(counter).unwrap();

    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    assert_eq!(store.trusted_identity(&addr("bob", 1)).unwrap(), Some(k));
    assert_eq!(store.device_list("bob").unwrap(), None);
    let bob = list("bob", 1, &[(1, k)]);
    store
        .commit(Changes::new().with_device_list(bob.clone()))
        .unwrap();
    assert_eq!(store.device_list("bob").unwrap(), Some(bob));
    drop(store);
    let version: u32 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, tacit_sqlite::SCHEMA_VERSION);
}
