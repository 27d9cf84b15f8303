//! Tests of the SQLite backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use rusqlite::params;
use tacit::identity::DeviceList;
use tacit::{Address, IdentityKey};

use super::*;

/// A database path in a directory of its own, removed when the guard drops
/// (also when the test fails).
pub(super) fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tacit-relay-store-{name}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join("relay.db");
    (dir, path)
}

fn limits(max_db_bytes: Option<u64>) -> WriterLimits {
    WriterLimits {
        max_db_bytes,
        ..WriterLimits::FOR_TESTS
    }
}

/// Registers `address` with a one-device list of its own.
pub(super) fn register_command(
    address: &Address,
    identity_key: IdentityKey,
    reply: oneshot::Sender<Outcome<bool>>,
) -> Command {
    let user = tacit::identity::UserKeyPair::from_seed(&[0x11; 32]);
    let list = DeviceList::sign(
        &user,
        address.user_id(),
        1,
        &[(address.device_id(), identity_key, 0)],
    )
    .unwrap();
    Command::Register {
        address: address.clone(),
        identity_key,
        list_bytes: list.to_wire(),
        device_list: Box::new(list),
        now_ms: crate::now_ms(),
        reply,
    }
}

#[test]
fn an_old_database_is_migrated_and_its_devices_cannot_log_in() {
    let (_dir, path) = temp_db("migrate");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(SCHEMA_V1).unwrap();
        c.execute(
            "INSERT INTO devices (user_id, device_id, identity_key, created_ms) VALUES ('bob', 1, ?1, 0)",
            params![tacit::IdentityKeyPair::from_seed(&[3; 32]).public_key().to_bytes().to_vec()],
        )
        .unwrap();
    }
    let database = Database::Sqlite(path.clone());
    drop(open(&database, false).unwrap());
    // Opening again changes nothing.
    let c = open(&database, false).unwrap();
    let version: usize = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len());
    let users: u64 = c
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 0);
    drop(c);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let readers = Readers::open(&database, 1).unwrap();
    let bob = Address::new("bob", 1).unwrap();
    assert!(runtime.block_on(readers.device(&bob)).unwrap().is_none());
    // A newer schema is refused.
    let c = Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", MIGRATIONS.len() + 1)
        .unwrap();
    drop(c);
    assert!(open(&database, false).is_err());
}

/// Acknowledges `ids` as `address` through the writer.
pub(super) async fn ack(writer: &Writer, address: &Address, ids: Vec<u64>) -> Outcome<u32> {
    let address = address.clone();
    writer
        .call(|reply| Command::Ack {
            address,
            ids,
            reply,
        })
        .await
}

pub(super) async fn submit(writer: &Writer, to: &Address, envelope: Vec<u8>) -> Outcome<u64> {
    let recipient = to.clone();
    writer
        .call(|reply| Command::Submit {
            recipient,
            envelope,
            token_hash: None,
            sender: crate::tokenless::Sender::Anonymous,
            now_ms: crate::now_ms(),
            reply,
        })
        .await
}

/// (messages stored, the device's `queued` counter).
fn counts(path: &std::path::Path) -> (u64, u64) {
    let c = open(&Database::Sqlite(path.to_path_buf()), true).unwrap();
    let stored = c
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    let queued = c
        .query_row("SELECT SUM(queued) FROM mailboxes", [], |r| r.get(0))
        .unwrap();
    (stored, queued)
}

/// A writer on `path` with `limits`, and the device `bob.1` registered.
pub(super) async fn writer_with_bob(
    path: &std::path::Path,
    limits: WriterLimits,
) -> (Writer, std::thread::JoinHandle<()>, Address) {
    let (writer, thread) = start_writer(
        &Database::Sqlite(path.to_path_buf()),
        limits,
        Arc::default(),
        Arc::default(),
    )
    .unwrap();
    let bob = Address::new("bob", 1).unwrap();
    let identity = tacit::IdentityKeyPair::from_seed(&[3; 32]).public_key();
    let address = bob.clone();
    writer
        .call(|reply| register_command(&address, identity, reply))
        .await
        .unwrap();
    (writer, thread, bob)
}

#[tokio::test]
async fn a_full_database_refuses_with_storage_full_and_changes_nothing() {
    let (_dir, path) = temp_db("full");
    let (writer, thread, bob) = writer_with_bob(&path, limits(Some(96 * 1024))).await;
    let mut ids = Vec::new();
    let refusal = loop {
        assert!(ids.len() < 1000, "the cap never bit");
        match submit(&writer, &bob, vec![ids.len() as u8; 3000]).await {
            Ok(id) => ids.push(id),
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.code, ErrorCode::StorageFull, "{refusal}");
    assert!(refusal.message.contains("full"), "{refusal}");
    assert!(ids.len() >= 5, "only {} messages fit", ids.len());
    // The refused submission left no row and no count behind.
    let stored = ids.len() as u64;
    assert_eq!(counts(&path), (stored, stored));
    // Acks still work while full, and free room for new messages.
    let (address, acked) = (bob.clone(), ids[..ids.len() / 2].to_vec());
    let removed = writer
        .call(|reply| Command::Ack {
            address,
            ids: acked,
            reply,
        })
        .await
        .unwrap();
    assert_eq!(u64::from(removed), stored / 2);
    assert!(submit(&writer, &bob, vec![0xee; 3000]).await.is_ok());
    assert_eq!(
        counts(&path),
        (stored - stored / 2 + 1, stored - stored / 2 + 1)
    );
    writer.stop().await;
    thread.join().unwrap();
}

/// Whether `needle` appears in the database file or its log.
fn on_disk(path: &std::path::Path, needle: &[u8]) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

/// With `secure_delete`, the envelopes of acknowledged messages, one held
/// in its table page and one large enough for overflow pages (which go to
/// the free list), are not in the files once the writer stops (its last
/// checkpoint); without it they are, in free space.
#[tokio::test]
async fn secure_delete_leaves_no_acknowledged_envelope_on_disk() {
    let small: Vec<u8> = b"acknowledged-and-deleted:".repeat(20);
    let large: Vec<u8> = b"a-large-envelope-in-overflow-pages:".repeat(600);
    for secure_delete in [false, true] {
        let (_dir, path) = temp_db("secure-delete");
        let limits = WriterLimits {
            secure_delete,
            ..WriterLimits::FOR_TESTS
        };
        let (writer, thread, bob) = writer_with_bob(&path, limits).await;
        let kept = submit(&writer, &bob, vec![0x5a; 64]).await.unwrap();
        let ids = vec![
            submit(&writer, &bob, small.clone()).await.unwrap(),
            submit(&writer, &bob, large.clone()).await.unwrap(),
        ];
        assert_eq!(ack(&writer, &bob, ids).await, Ok(2));
        writer.stop().await;
        thread.join().unwrap();
        assert_eq!(counts(&path), (1, 1), "message {kept} is kept");
        // Any stretch of either envelope (the free block that replaces a
        // deleted cell overwrites a few of its bytes).
        for piece in [&small[..75], &large[..105]] {
            assert_eq!(
                on_disk(&path, piece),
                !secure_delete,
                "secure_delete {secure_delete}"
            );
        }
    }
}

/// How many times `needle` appears in the database file.
fn copies_on_disk(path: &std::path::Path, needle: &[u8]) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).filter(|w| *w == needle).count()
}

/// With `secure_delete`, the migrations that copy the messages to a new
/// table and drop the old one leave one copy of a queued envelope in the
/// file, the live one; without it, the dropped table's pages keep more.
#[test]
fn secure_delete_covers_the_migrations() {
    // Bytes with no period, so that a stretch is found once a copy.
    let envelope: Vec<u8> = (0..400u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut copies = Vec::new();
    for secure_delete in [false, true] {
        let (_dir, path) = temp_db("secure-delete-migrate");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.execute(
                "INSERT INTO devices (user_id, device_id, identity_key, created_ms) VALUES ('bob', 1, ?1, 0)",
                params![vec![3u8; 32]],
            )
            .unwrap();
            c.execute(
                "INSERT INTO messages (user_id, device_id, server_ms, expires_ms, envelope)
                 VALUES ('bob', 1, 0, ?1, ?2)",
                params![i64::MAX, envelope],
            )
            .unwrap();
        }
        let database = Database::Sqlite(path.clone());
        // The last connection to close checkpoints the log into the file.
        drop(open_limited(&database, false, None, secure_delete).unwrap());
        copies.push(copies_on_disk(&path, &envelope[100..200]));
    }
    assert!(copies[0] > 1, "{copies:?}");
    assert_eq!(copies[1], 1, "{copies:?}");
}

/// Runs one batch on `conn` and returns the answers, in order.
pub(super) fn batch(
    conn: &mut Connection,
    commands: Vec<(Command, oneshot::Receiver<Outcome<u64>>)>,
) -> Vec<Outcome<u64>> {
    let (mut commands, receivers): (Vec<_>, Vec<_>) = commands.into_iter().unzip();
    run_batch(
        conn,
        &mut commands,
        &limits(None),
        &Online::default(),
        &Metrics::default(),
        false,
    );
    receivers
        .into_iter()
        .map(|mut rx| rx.try_recv().unwrap())
        .collect()
}

pub(super) fn submit_command(
    to: &Address,
    envelope: Vec<u8>,
) -> (Command, oneshot::Receiver<Outcome<u64>>) {
    let (reply, rx) = oneshot::channel();
    let command = Command::Submit {
        recipient: to.clone(),
        envelope,
        token_hash: None,
        sender: crate::tokenless::Sender::Anonymous,
        now_ms: crate::now_ms(),
        reply,
    };
    (command, rx)
}

/// The messages queued: those above their mailbox's acknowledged prefix
/// (acknowledged ones stay in `messages` until the sweep).
pub(super) const QUEUED: &str = "queued_messages";

/// Whether a message with this envelope is queued.
pub(super) fn stored(conn: &Connection, envelope: &[u8]) -> bool {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM {QUEUED} WHERE envelope = ?1"),
        params![envelope],
        |r| r.get::<_, u64>(0),
    )
    .unwrap()
        > 0
}

/// The ids of every queued message, in order.
pub(super) fn stored_ids(conn: &Connection) -> Vec<u64> {
    conn.prepare(&format!("SELECT id FROM {QUEUED} ORDER BY id"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// (`queued`, `queued_bytes`) as the mailbox counts them, and as stored.
pub(super) fn counted_and_stored(conn: &Connection) -> ((u64, u64), (u64, u64)) {
    let counted = conn
        .query_row("SELECT queued, queued_bytes FROM mailboxes", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let stored = conn
        .query_row(
            &format!("SELECT COUNT(*), COALESCE(SUM(length(envelope)), 0) FROM {QUEUED}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (counted, stored)
}

/// A new database in a scratch directory, with `bob.1` registered.
pub(super) fn with_bob(name: &str) -> (tempfile::TempDir, Connection, Address) {
    let (dir, path) = temp_db(name);
    let mut conn = open(&Database::Sqlite(path), false).unwrap();
    let bob = register_bob(&mut conn);
    (dir, conn, bob)
}

/// Registers `bob.1` through the writer's batch; its address.
pub(super) fn register_bob(conn: &mut Connection) -> Address {
    let bob = Address::new("bob", 1).unwrap();
    ack_tests::register(conn, &bob, 3);
    bob
}

#[test]
fn a_batch_that_sqlite_rolls_back_answers_each_command_truthfully() {
    let (_dir, path) = temp_db("rollback");
    let mut conn = open_limited(
        &Database::Sqlite(path.clone()),
        false,
        Some(64 * 1024),
        false,
    )
    .unwrap();
    let bob = register_bob(&mut conn);
    // One batch: a message that fits, one far too large for the cap,
    // then small ones. SQLite rolls the whole transaction back at the
    // large one.
    let first = vec![1u8; 2000];
    let huge = vec![2u8; 200_000];
    let small: Vec<Vec<u8>> = (0..3u8).map(|i| vec![3 + i; 100]).collect();
    let mut commands = vec![
        submit_command(&bob, first.clone()),
        submit_command(&bob, huge.clone()),
    ];
    commands.extend(small.iter().map(|e| submit_command(&bob, e.clone())));
    let answers = batch(&mut conn, commands);
    // Every answer tells the truth: success means stored, a refusal
    // means nothing was stored.
    let envelopes = [&first, &huge, &small[0], &small[1], &small[2]];
    for (answer, envelope) in answers.iter().zip(envelopes) {
        assert_eq!(answer.is_ok(), stored(&conn, envelope), "{answer:?}");
    }
    assert_eq!(
        answers[1].as_ref().unwrap_err().code,
        ErrorCode::StorageFull
    );
    assert!(!stored(&conn, &huge));
    // The commands after the rolled-back one ran in a new transaction.
    assert!(answers[2..].iter().all(Result::is_ok), "{answers:?}");
    let queued: u64 = conn
        .query_row("SELECT queued FROM mailboxes", [], |r| r.get(0))
        .unwrap();
    let count: u64 = conn
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, count);
    drop(conn);
}

#[test]
fn only_a_full_disk_maps_to_storage_full() {
    let full =
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
    assert_eq!(internal(&full).code, ErrorCode::StorageFull);
    let io = rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        None,
    );
    assert_eq!(internal(&io).code, ErrorCode::Internal);
}

#[test]
fn the_writer_syncs_every_commit_unless_told_otherwise_for_benchmarks() {
    let (_dir, path) = temp_db("synchronous");
    let database = Database::Sqlite(path);
    let synchronous = |c: &Connection| -> i64 {
        c.pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    };
    // 2 is FULL: acknowledged means synced.
    assert_eq!(
        synchronous(&open_writer(&database, &limits(None)).unwrap()),
        2
    );
    let mut unsafe_limits = limits(None);
    unsafe_limits.unsafe_no_fsync = true;
    assert_eq!(
        synchronous(&open_writer(&database, &unsafe_limits).unwrap()),
        0
    );
}
