//! The thread that does the client's store work.
//!
//! The store is SQLite with `synchronous=FULL`: every commit waits for the
//! disk, and opening it reads and checks the stored records. None of that
//! may run on the application's async threads, where it would stall every
//! other task scheduled there (on a single-threaded runtime, all of them).
//!
//! So the client's task, whose store work sits between its network steps
//! and must keep its order (a receive is committed before it is
//! acknowledged, a send sealed and committed before it is submitted), runs
//! whole on a thread of its own, under a single-threaded runtime that
//! serves it alone. Its store calls stay plain, in order, each transaction
//! as before; the application's runtime only passes commands, replies and
//! events through channels. Registration, linking and recovery, which use
//! the store the same way, run on such a thread too.

use std::future::Future;

use tokio::sync::oneshot;

use crate::ClientError;

/// A future running on a thread of its own. Dropping the handle cancels the
/// future at its next await point (like aborting a task).
#[derive(Debug)]
pub(crate) struct Worker<T> {
    done: oneshot::Receiver<T>,
    /// Dropped to cancel.
    _cancel: oneshot::Sender<()>,
}

/// Starts the future `make` returns on a new thread named `name`, under a
/// single-threaded runtime of its own (timers and I/O enabled).
pub(crate) fn spawn<F, Fut>(name: &str, make: F) -> Result<Worker<Fut::Output>, ClientError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let (done_tx, done) = oneshot::channel();
    let (cancel, mut cancelled) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    output = make() => {
                        let _ = done_tx.send(output);
                    }
                    // The handle was dropped.
                    _ = &mut cancelled => {}
                }
            });
        })?;
    Ok(Worker {
        done,
        _cancel: cancel,
    })
}

impl<T> Worker<T> {
    /// The future's output, or [`ClientError::Stopped`] if it did not end
    /// (the thread panicked).
    pub(crate) async fn join(self) -> Result<T, ClientError> {
        let Self { done, _cancel } = self;
        done.await.map_err(|_| ClientError::Stopped)
    }
}

/// Runs the future `make` returns on a thread of its own (see [`spawn`])
/// and waits for its output.
pub(crate) async fn run<F, Fut, T>(name: &str, make: F) -> Result<T, ClientError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ClientError>> + 'static,
    T: Send + 'static,
{
    spawn(name, make)?.join().await?
}

#[cfg(test)]
mod tests;
