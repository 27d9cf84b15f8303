#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Application records: sealed like the session records, listed in first
//! write order, and written in the same transaction as a session commit.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rusqlite::Connection;
use tacit::error::StoreError;
use tacit::session::Account;
use tacit::store::{Changes, PreKeyStore};
use tacit_sqlite::{AppWrite, SqliteStore};

const KEY: [u8; 32] = [9; 32];

#[test]
fn put_get_list_delete() {
    let mut store = SqliteStore::open_in_memory(&KEY).unwrap();
    store
        .commit_with(
            Changes::new(),
            &[
                AppWrite::put("history", b"b", b"second?".to_vec()),
                AppWrite::put("history", b"a", b"first".to_vec()),
                AppWrite::put("seen", b"a", b"other kind".to_vec()),
            ],
        )
        .unwrap();
    // Overwriting keeps the record's place.
    store
        .commit_with(
            Changes::new(),
            &[AppWrite::put("history", b"b", b"second".to_vec())],
        )
        .unwrap();
    assert_eq!(
        store
            .app_record("history", b"b")
            .unwrap()
            .unwrap()
            .as_slice(),
        b"second"
    );
    assert_eq!(
        store.app_record("seen", b"a").unwrap().unwrap().as_slice(),
        b"other kind"
    );
    assert!(store.app_record("seen", b"b").unwrap().is_none());
    let listed: Vec<Vec<u8>> = store
        .app_records("history")
        .unwrap()
        .iter()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(listed, vec![b"second".to_vec(), b"first".to_vec()]);
    store
        .commit_with(Changes::new(), &[AppWrite::delete("history", b"b")])
        .unwrap();
    assert_eq!(store.app_records("history").unwrap().len(), 1);
}

#[test]
fn records_are_sealed_and_bound_to_their_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    store
        .commit_with(
            Changes::new(),
            &[
                AppWrite::put("history", b"key-one", b"attack at dawn".to_vec()),
                AppWrite::put("history", b"key-two", b"retreat at dusk".to_vec()),
            ],
        )
        .unwrap();
    drop(store);
    let raw = std::fs::read(&path).unwrap();
    for needle in [&b"attack at dawn"[..], b"key-one", b"retreat"] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
    }
    // Copy one sealed record over the other: refused as tampered.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE app_records SET record = (SELECT record FROM app_records ORDER BY seq LIMIT 1)
         WHERE seq = (SELECT max(seq) FROM app_records)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path, &KEY).unwrap();
    assert!(matches!(
        store.app_record("history", b"key-two"),
        Err(StoreError::Tampered { .. })
    ));
    assert!(store.app_record("history", b"key-one").unwrap().is_some());
}

#[test]
fn session_changes_and_app_writes_land_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, &KEY).unwrap();
    let account = Account::generate(0, &mut ChaCha20Rng::seed_from_u64(1));

    // The application write fails (injected): the account is not written.
    // (The store holds the file's lock, so the trigger goes in while it is
    // closed.)
    drop(store);
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER fail_app BEFORE INSERT ON app_records
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    let err = store
        .commit_with(
            Changes::new().with_account(account.clone()),
            &[AppWrite::put("seen", b"x", vec![1])],
        )
        .unwrap_err();
    assert!(matches!(&err, StoreError::Backend(m) if format!("{m:?}").contains("injected")));
    assert!(store.load_account().unwrap().is_none());
    assert!(store.app_record("seen", b"x").unwrap().is_none());

    // A bad kind is refused before anything is written.
    drop(store);
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TRIGGER fail_app;")
        .unwrap();
    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    assert!(store
        .commit_with(
            Changes::new().with_account(account.clone()),
            &[AppWrite::put("", b"x", vec![1])],
        )
        .is_err());
    assert!(store.load_account().unwrap().is_none());

    store
        .commit_with(
            Changes::new().with_account(account),
            &[AppWrite::put("seen", b"x", vec![1])],
        )
        .unwrap();
    assert!(store.load_account().unwrap().is_some());
    assert_eq!(
        store.app_record("seen", b"x").unwrap().unwrap().as_slice(),
        [1]
    );
}

#[test]
fn a_version_1_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, &KEY).unwrap());
    // Make it a version 1 file: no application records or device lists.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE app_records; DROP TABLE device_lists;
         ALTER TABLE account DROP COLUMN gen; ALTER TABLE identities DROP COLUMN gen;
         ALTER TABLE sessions DROP COLUMN gen; DELETE FROM meta WHERE name = 'state';
         UPDATE schema_version SET version = 1;",
    )
    .unwrap();
    drop(conn);
    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    store
        .commit_with(Changes::new(), &[AppWrite::put("k", b"x", vec![2])])
        .unwrap();
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let version: u32 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, tacit_sqlite::SCHEMA_VERSION);
}

#[test]
fn a_backend_error_carries_the_sqlite_error_as_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, &KEY).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER fail_app BEFORE INSERT ON app_records
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let mut store = SqliteStore::open(&path, &KEY).unwrap();
    let err = store
        .commit_with(Changes::new(), &[AppWrite::put("seen", b"x", vec![1])])
        .unwrap_err();
    // Walk the source chain down to SQLite's own error.
    let mut source = std::error::Error::source(&err);
    let mut found = None;
    while let Some(e) = source {
        if let Some(sqlite) = e.downcast_ref::<rusqlite::Error>() {
            found = Some(sqlite.to_string());
        }
        source = e.source();
    }
    let found = found.expect("the rusqlite error is in the source chain");
    assert!(found.contains("injected"), "{found}");
}
