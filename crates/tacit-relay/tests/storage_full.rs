#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! A relay whose storage is full: new messages are refused with
//! `StorageFull`, what is stored is still delivered and acknowledged, and
//! room freed by acks is used again.

mod common;

use common::*;
use tacit_relay::Relay;
use tacit_relay_proto::{ErrorCode, Reply};

#[tokio::test]
async fn a_full_relay_refuses_new_messages_and_keeps_what_it_has() {
    let dir = TempDir::new("storage-full");
    let mut cfg = config(&dir.db());
    // The same failure as a full disk (SQLITE_FULL), at a size a test can
    // reach.
    cfg.max_db_bytes = Some(192 * 1024);
    let relay = Relay::bind(cfg.clone()).await.unwrap();
    let at = relay.local_addr();
    let bob = Device::new("bob", 1, 2);
    drop(registered(at, &bob).await);

    let mut alice = connect(at).await;
    let mut accepted = Vec::new();
    let refusal = loop {
        assert!(accepted.len() < 500, "the size cap never bit");
        let envelope = vec![accepted.len() as u8; 4000];
        match alice.submit(&bob.address, &envelope).await {
            Ok(Reply::Submitted { message_id }) => accepted.push((message_id, envelope)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.code, ErrorCode::StorageFull, "{refusal}");
    assert_eq!(
        refusal.message,
        "the relay's storage is full; nothing was changed"
    );
    assert!(accepted.len() >= 10, "only {} messages fit", accepted.len());
    // Still full for the next one; the connection stays usable.
    assert_eq!(
        code(alice.submit(&bob.address, &[9; 4000]).await),
        ErrorCode::StorageFull
    );
    alice.challenge().await;
    // Bob gets exactly what was acknowledged, byte for byte, and nothing
    // from the refused submissions.
    let mut b = connect(at).await;
    b.login(&bob).await.unwrap();
    let got: Vec<(u64, Vec<u8>)> = b
        .drain()
        .await
        .into_iter()
        .map(|p| (p.message_id, p.envelope))
        .collect();
    assert_eq!(got, accepted);
    // Acks work while full and free room.
    let ids: Vec<u64> = accepted.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        b.ack(ids.clone()).await,
        Ok(Reply::Acked {
            removed: ids.len() as u32
        })
    );
    let again = match alice.submit(&bob.address, b"after the acks").await {
        Ok(Reply::Submitted { message_id }) => message_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(b.next_push().await.envelope, b"after the acks");
    relay.shutdown().await.unwrap();

    // After a restart on the same file (and cap): the acked messages are
    // gone, the new one is there.
    let relay = Relay::bind(cfg).await.unwrap();
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    let left = b.drain_ids().await;
    assert_eq!(left, vec![again]);
    relay.shutdown().await.unwrap();
}
