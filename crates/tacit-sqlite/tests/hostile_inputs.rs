#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Hostile inputs at the SQLite store: a wrong key, a newer schema, and
//! sealed records that are truncated, extended, of another seal version,
//! sealed under another key, or moved to another row. Each row checks the
//! exact error and that the file's rows are byte for byte unchanged, then
//! the conversation goes on. A summary table is printed.

mod common;

use common::{list, trust};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rusqlite::Connection;
use tacit::error::{SessionError, StoreError};
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
use tacit::store::InMemoryStore;
use tacit::Address;
use tacit_sqlite::SqliteStore;

const KEY: [u8; 32] = [7; 32];

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

/// Every row of every table, raw, in a fixed order.
fn raw(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let conn = Connection::open(path).unwrap();
    let mut out = Vec::new();
    for (table, order) in [
        ("schema_version", "version"),
        ("meta", "name"),
        ("account", "id"),
        ("identities", "user_tag, device_id"),
        ("sessions", "user_tag, device_id"),
        ("device_lists", "user_tag"),
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut bytes = Vec::new();
                for i in 0..columns {
                    match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Blob(b) => bytes.extend_from_slice(b),
                        rusqlite::types::ValueRef::Text(t) => bytes.extend_from_slice(t),
                        rusqlite::types::ValueRef::Integer(n) => {
                            bytes.extend_from_slice(&n.to_be_bytes())
                        }
                        other => panic!("{other:?}"),
                    }
                    bytes.push(0xff);
                }
                Ok((table.to_owned(), bytes))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

/// A sealed session record and the printable row key the store reports.
fn session_row(path: &std::path::Path, device: u32) -> (Vec<u8>, String) {
    let conn = Connection::open(path).unwrap();
    let (tag, record): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT user_tag, record FROM sessions WHERE device_id = ?1",
            [device],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let row: String = tag
        .iter()
        .chain(device.to_be_bytes().iter())
        .map(|b| format!("{b:02x}"))
        .collect();
    (record, row)
}

fn set(path: &std::path::Path, sql: &str, params: impl rusqlite::Params) {
    Connection::open(path)
        .unwrap()
        .execute(sql, params)
        .unwrap();
}

struct Row {
    kind: &'static str,
    input: &'static str,
    expected: String,
    actual: String,
    unchanged: bool,
}

#[test]
fn hostile_inputs_at_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut rng = ChaCha20Rng::seed_from_u64(0x5a1);
    let mut alice = SessionManager::create(
        SqliteStore::open(&path, &KEY).unwrap(),
        addr("alice", 1),
        Account::generate(0, &mut rng),
        SessionConfig::default(),
    )
    .unwrap();
    let mut bob = SessionManager::create(
        InMemoryStore::new(),
        addr("bob", 1),
        Account::generate(0, &mut rng),
        SessionConfig::default(),
    )
    .unwrap();
    let bob2 = Account::generate(0, &mut rng);
    let (a, b, b2) = (addr("alice", 1), addr("bob", 1), addr("bob", 2));
    let bob_id = bob.account().identity().public_key();
    let alice_id = alice.account().identity().public_key();
    let lists = [
        list("alice", 1, &[(1, alice_id)]),
        list("bob", 1, &[(1, bob_id), (2, bob2.identity().public_key())]),
    ];
    trust(&mut alice, &[&lists[0], &lists[1]]);
    trust(&mut bob, &[&lists[0], &lists[1]]);
    alice
        .process_bundle(
            &b,
            &bob.account().bundle(BundlePreKey::None).unwrap(),
            &mut rng,
        )
        .unwrap();
    alice
        .process_bundle(&b2, &bob2.bundle(BundlePreKey::None).unwrap(), &mut rng)
        .unwrap();
    let m = alice.encrypt(&b, b"hello", &mut rng).unwrap();
    bob.decrypt(&a, &alice_id, &m, &mut rng).unwrap();
    let reply = bob.encrypt(&a, b"reply", &mut rng).unwrap();
    // The store keeps its file locked while open: Alice's manager is opened
    // around each attempt, and the file altered while it is closed.
    drop(alice);
    let open_alice = || {
        SessionManager::open(
            SqliteStore::open(&path, &KEY).unwrap(),
            addr("alice", 1),
            SessionConfig::default(),
        )
        .unwrap()
    };

    // The same address in another store, under another key.
    let other_path = dir.path().join("other.db");
    let mut other = SessionManager::create(
        SqliteStore::open(&other_path, &[9; 32]).unwrap(),
        addr("alice", 1),
        Account::generate(0, &mut rng),
        SessionConfig::default(),
    )
    .unwrap();
    trust(&mut other, &[&lists[1]]);
    other
        .process_bundle(
            &b,
            &bob.account().bundle(BundlePreKey::None).unwrap(),
            &mut rng,
        )
        .unwrap();
    drop(other);
    let (foreign_record, _) = session_row(&other_path, 1);

    let (record, row1) = session_row(&path, 1);
    let (_, row2) = session_row(&path, 2);
    let tampered = |row: &str| {
        SessionError::Store(StoreError::Tampered {
            table: "sessions",
            row: row.to_owned(),
        })
    };
    let mut rows: Vec<Row> = Vec::new();

    // Sealed records of bob.1 put in place one at a time; Alice decrypts
    // Bob's reply with each, and the store must refuse without writing.
    let mut truncated = record.clone();
    truncated.pop();
    let mut extended = record.clone();
    extended.push(0);
    let mut version = record.clone();
    version[0] ^= 0x80;
    let cases: [(&str, &str, Vec<u8>); 5] = [
        (
            "Truncated",
            "session record without its last byte",
            truncated,
        ),
        ("Truncated", "empty session record", Vec::new()),
        ("Oversize", "session record with a trailing byte", extended),
        (
            "WrongVersion",
            "session record of another seal version",
            version,
        ),
        (
            "WrongKey",
            "session record sealed under another key",
            foreign_record,
        ),
    ];
    for (kind, input, bytes) in cases {
        set(
            &path,
            "UPDATE sessions SET record = ?1 WHERE device_id = 1",
            [bytes],
        );
        let before = raw(&path);
        let result = open_alice().decrypt(&b, &bob_id, &reply, &mut rng);
        rows.push(Row {
            kind,
            input,
            expected: format!("{:?}", tampered(&row1)),
            actual: format!("{:?}", result.map(|d| d.plaintext)),
            unchanged: raw(&path) == before,
        });
    }
    set(
        &path,
        "UPDATE sessions SET record = ?1 WHERE device_id = 1",
        [&record],
    );

    // bob.1's sealed session moved onto bob.2's row.
    set(
        &path,
        "UPDATE sessions SET record = ?1 WHERE device_id = 2",
        [&record],
    );
    let before = raw(&path);
    let result = open_alice().encrypt(&b2, b"to bob.2", &mut rng);
    rows.push(Row {
        kind: "CrossSession",
        input: "bob.1's session record in bob.2's row",
        expected: format!("{:?}", tampered(&row2)),
        actual: format!("{:?}", result),
        unchanged: raw(&path) == before,
    });

    // Opening the file under another key, or at a newer schema.
    let before = raw(&path);
    rows.push(Row {
        kind: "WrongKey",
        input: "the file opened with another key",
        expected: format!("{:?}", StoreError::WrongKey),
        actual: format!("{:?}", SqliteStore::open(&path, &[8; 32])),
        unchanged: raw(&path) == before,
    });
    let version: u32 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, tacit_sqlite::SCHEMA_VERSION);
    set(&path, "UPDATE schema_version SET version = 99", []);
    let before = raw(&path);
    rows.push(Row {
        kind: "WrongVersion",
        input: "a file of schema version 99",
        expected: format!("{:?}", StoreError::UnknownSchema(99)),
        actual: format!("{:?}", SqliteStore::open(&path, &KEY)),
        unchanged: raw(&path) == before,
    });
    set(
        &path,
        "UPDATE schema_version SET version = ?1",
        [tacit_sqlite::SCHEMA_VERSION],
    );

    println!("{:<14} {:<42} {:<10} result", "kind", "input", "unchanged");
    let mut failed = 0;
    for r in &rows {
        let ok = r.actual == format!("Err({})", r.expected);
        let pass = ok && r.unchanged;
        failed += usize::from(!pass);
        println!(
            "{:<14} {:<42} {:<10} {}",
            r.kind,
            r.input,
            if r.unchanged { "yes" } else { "NO" },
            if pass {
                r.expected.clone()
            } else {
                format!("FAILED: expected {}, got {}", r.expected, r.actual)
            }
        );
    }
    println!("{} rows checked; {failed} failed", rows.len());
    assert_eq!(failed, 0);

    // Restored, the store goes on: Alice reads Bob's reply.
    let mut alice = open_alice();
    assert_eq!(
        alice
            .decrypt(&b, &bob_id, &reply, &mut rng)
            .unwrap()
            .plaintext,
        b"reply"
    );
}
