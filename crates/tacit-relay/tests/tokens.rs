#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Delivery tokens on SQLite: the tokenless quota of logged-in senders
//! (`docs/relay.md`, "Delivery tokens").

mod common;

use common::*;
use tacit_relay::Relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenless_submissions_are_held_to_a_quota_on_sqlite() {
    let dir = TempDir::new("tokenless");
    let mut config = config(&dir.db());
    config.tokenless_rate_per_account = tokens::QUOTA;
    let relay = Relay::bind(config).await.unwrap();
    tokens::tokenless_quota(relay.local_addr()).await;
    relay.shutdown().await.unwrap();
}
