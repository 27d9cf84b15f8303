//! Tests of how the SQLite backend's reads and checkpoints run: the
//! backlog read is prepared once and walks the mailbox's index, and the
//! log restarts, its file cut back only past the size limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rusqlite::{params, StatementStatus};

use super::readers::MESSAGES_AFTER;
use super::*;

fn database() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("relay.db"));
    (dir, database)
}

#[test]
fn the_backlog_read_is_not_prepared_again_for_each_page() {
    let (_dir, database) = database();
    drop(open(&database, false).unwrap());
    let c = open(&database, true).unwrap();
    let mut stmt = c.prepare_cached(MESSAGES_AFTER).unwrap();
    for after in 0..5i64 {
        let rows = stmt
            .query_map(params!["bob", 1, after, 0], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(rows.take(64).count(), 0);
    }
    // A bound LIMIT made SQLite prepare the statement again on every
    // binding.
    assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
}

#[test]
fn the_backlog_read_walks_the_mailbox_index_without_sorting() {
    let (_dir, database) = database();
    let c = open(&database, false).unwrap();
    let plan: Vec<String> = c
        .prepare(&format!("EXPLAIN QUERY PLAN {MESSAGES_AFTER}"))
        .unwrap()
        .query_map(params!["bob", 1, 0, 0], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let plan = plan.join("; ");
    // Stepping a page of rows reads only that page: no sort of the whole
    // mailbox first.
    assert!(plan.contains("messages_by_mailbox"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    // One range, bounded below by the cursor and the acknowledged prefix
    // together: not a walk over acknowledged rows left for the sweep.
    assert!(plan.contains("(mailbox=? AND id>?)"), "{plan}");
}

#[test]
fn the_ack_reads_a_mailboxs_first_messages_from_the_index_alone() {
    let (_dir, database) = database();
    let c = open(&database, false).unwrap();
    let plan: Vec<String> = c
        .prepare(&format!("EXPLAIN QUERY PLAN {}", held::FIRST_AFTER))
        .unwrap()
        .query_map(params![1, 0], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let plan = plan.join("; ");
    assert!(
        plan.contains("COVERING INDEX messages_by_mailbox (mailbox=? AND id>?)"),
        "{plan}"
    );
    // Prepared once: nothing bound changes the plan.
    let mut stmt = c.prepare_cached(held::FIRST_AFTER).unwrap();
    for after in 0..5i64 {
        let rows = stmt
            .query_map(params![1, after], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(rows.take(3).count(), 0);
    }
    assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
}

/// Writes `rows` rows of 16 KiB into `conn`'s log, in three commits.
fn log_rows(conn: &Connection, rows: i64) {
    let blob = vec![7u8; 16 * 1024];
    let per_commit = rows / 3 + 1;
    for commit in 0..3i64 {
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..per_commit {
            conn.execute(
                "INSERT INTO messages (mailbox, server_ms, expires_ms, envelope) VALUES (1, ?1, 0, ?2)",
                params![commit * per_commit + i, blob],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
}

/// A writer and a checkpointing connection on a new database; the path of
/// its log file.
fn logged_database() -> (
    tempfile::TempDir,
    Connection,
    Connection,
    std::path::PathBuf,
) {
    let (dir, database) = database();
    let conn = open(&database, false).unwrap();
    checkpoint::set_up_writer(&conn).unwrap();
    let checkpointer = Connection::open(dir.path().join("relay.db")).unwrap();
    let wal = dir.path().join("relay.db-wal");
    (dir, conn, checkpointer, wal)
}

#[test]
fn the_log_file_is_cut_back_when_a_checkpoint_restarts_it_past_the_limit() {
    let (_dir, conn, checkpointer, wal) = logged_database();
    let wal_len = || std::fs::metadata(&wal).unwrap().len();
    // More than JOURNAL_SIZE_LIMIT bytes of log (so more than
    // RESTART_FRAMES pages).
    log_rows(&conn, checkpoint::JOURNAL_SIZE_LIMIT / (16 * 1024) + 300);
    let limit = u64::try_from(checkpoint::JOURNAL_SIZE_LIMIT).unwrap();
    assert!(wal_len() > limit, "{}", wal_len());
    let (frames, copied) = checkpoint::checkpoint(&checkpointer).unwrap();
    // Past RESTART_FRAMES: the restarting checkpoint ran, and copied all.
    assert!(frames > checkpoint::RESTART_FRAMES, "{frames}");
    assert_eq!(frames, copied);
    // The next commit starts the log again and cuts its file back.
    conn.execute("DELETE FROM messages WHERE server_ms < 10", [])
        .unwrap();
    assert!(wal_len() <= limit, "{}", wal_len());
}

/// Below the limit a restarted log is written over the old frames: the
/// file keeps its size, so commits do not sync a changed file size (which
/// made the tail of a paced load's latency four times longer).
#[test]
fn a_restarted_log_below_the_limit_keeps_its_file() {
    let (_dir, conn, checkpointer, wal) = logged_database();
    let wal_len = || std::fs::metadata(&wal).unwrap().len();
    // Past RESTART_FRAMES pages (4 KiB each), below JOURNAL_SIZE_LIMIT.
    log_rows(&conn, checkpoint::RESTART_FRAMES / 4 + 200);
    let before = wal_len();
    assert!(
        before < u64::try_from(checkpoint::JOURNAL_SIZE_LIMIT).unwrap(),
        "the limit must lie above the log that RESTART_FRAMES allows: {before}"
    );
    let (frames, copied) = checkpoint::checkpoint(&checkpointer).unwrap();
    assert!(frames > checkpoint::RESTART_FRAMES, "{frames}");
    assert_eq!(frames, copied);
    // The next commit starts the log again, at the file's start.
    conn.execute("DELETE FROM messages WHERE server_ms < 10", [])
        .unwrap();
    let (frames_after, _) = checkpoint::checkpoint(&checkpointer).unwrap();
    assert!(
        frames_after < 100,
        "the log did not restart: {frames_after}"
    );
    assert_eq!(wal_len(), before);
}
