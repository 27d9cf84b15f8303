//! Storage-level abuse limits: the default database cap, bytes per
//! mailbox and per account, registration throttles, prekey claims. Each
//! test shows the abuse failing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

#[allow(unused_imports)]
use common::*;
use tacit_relay::{Config, DEFAULT_MAX_DB_BYTES};

#[test]
fn storage_is_capped_by_default() {
    assert_eq!(
        Config::new("relay.db").max_db_bytes,
        Some(DEFAULT_MAX_DB_BYTES)
    );
    // PostgreSQL has no cap of the relay's own (docs/relay.md).
    assert_eq!(Config::postgres("postgres://x@h/db").max_db_bytes, None);
}
