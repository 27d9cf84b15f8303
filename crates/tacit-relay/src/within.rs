//! Waiting with a deadline only when there is something to wait for.
//!
//! `tokio::time::timeout` reads the clock and builds a timer entry every
//! time it is called, even for a future that completes at once, which is
//! what nearly every write on a connection does (a frame goes into a
//! buffer, a queue has room). [`within`] polls the future once first and
//! sets the deadline only if it has to wait.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Runs `future` to completion, waiting at most `limit` for it once it
/// has to wait; `None` if it did not complete in time (it is then
/// dropped).
pub(crate) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Some(output),
        Poll::Pending => tokio::time::timeout(limit, future).await.ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ready_future_completes() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn a_future_that_never_completes_times_out() {
        let never = std::future::pending::<()>();
        assert_eq!(within(Duration::from_millis(10), never).await, None);
    }

    #[tokio::test]
    async fn a_waiting_future_completes_before_the_deadline() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send(5).unwrap();
        });
        let got = within(Duration::from_secs(3600), rx).await;
        assert_eq!(got.map(Result::unwrap), Some(5));
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_times_out_and_a_free_one_does_not() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        assert_eq!(within(Duration::ZERO, tx.send(1)).await, Some(Ok(())));
        // The queue is full: the send waits, and gives up at the deadline.
        assert!(within(Duration::from_millis(10), tx.send(2))
            .await
            .is_none());
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(within(Duration::ZERO, tx.send(3)).await, Some(Ok(())));
        assert_eq!(rx.recv().await, Some(3));
    }
}
