//! The writer queue's byte budget.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::FutureExt;
use tacit::Address;
use tokio::sync::oneshot;

use super::{queue, Command, Outcome, Writer};

fn submit(len: usize) -> impl FnOnce(oneshot::Sender<Outcome<u64>>) -> Command {
    move |reply| Command::Submit {
        recipient: Address::new("bob", 1).unwrap(),
        envelope: vec![0; len],
        token_hash: None,
        authenticated: false,
        now_ms: 0,
        reply,
    }
}

#[tokio::test]
async fn the_queue_holds_at_most_its_byte_budget() {
    let (tx, mut rx) = queue();
    let writer = Writer::new(vec![tx], 10_000);
    let _first = writer.queue(submit(6_000)).await;
    // 6,256 bytes are taken: a second envelope of 6,000 waits.
    let mut second = Box::pin(writer.queue(submit(6_000)));
    assert!((&mut second).now_or_never().is_none());
    // The writer takes the first command: its bytes stay taken while its
    // batch is applied.
    assert!(matches!(rx.try_recv(), Some(Command::Submit { .. })));
    assert!((&mut second).now_or_never().is_none());
    assert!(rx.try_recv().is_none());
    // The batch is done: the second command is queued.
    rx.release();
    let _second = second.await;
    assert!(matches!(rx.try_recv(), Some(Command::Submit { .. })));
}

#[tokio::test]
async fn a_command_over_the_budget_waits_for_all_of_it() {
    let (tx, mut rx) = queue();
    let writer = Writer::new(vec![tx], 1_000);
    let _small = writer.queue(submit(100)).await;
    let mut big = Box::pin(writer.queue(submit(5_000)));
    assert!((&mut big).now_or_never().is_none());
    assert!(rx.try_recv().is_some());
    rx.release();
    let _big = big.await;
    assert!(rx.try_recv().is_some());
}

#[tokio::test]
async fn small_commands_count_too() {
    // Each command counts a fixed overhead: a budget of 1,000 bytes holds
    // three empty submissions, not thousands.
    let (tx, mut rx) = queue();
    let writer = Writer::new(vec![tx], 1_000);
    for _ in 0..3 {
        drop(writer.queue(submit(0)).await);
    }
    let mut fourth = Box::pin(writer.queue(submit(0)));
    assert!((&mut fourth).now_or_never().is_none());
    while rx.try_recv().is_some() {}
    rx.release();
    drop(fourth.await);
}
