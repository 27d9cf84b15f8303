//! Tests of how the SQLite backend's reads run: the backlog read is
//! prepared once and walks the mailbox's index.
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
    assert!(plan.contains("messages_by_device"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}
