//! The store's work runs off the runtime that drives the client: with the
//! store stalled, a task on the same single-threaded runtime still runs.
//! Each test would fail if the store call ran on that runtime's thread:
//! the task that opens the gate could not run, and the call would go on
//! only when the gate's bound ran out, which the gate records.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tacit::Address;

use crate::engine::{open_manager, Creation};
use crate::store::stall::Gate;
use crate::{register, Backoff, Client, ClientConfig, ClientError, StoreKey};

/// How long a test waits for what must happen (a liveness bound, not a
/// measure of speed).
const LIVENESS: Duration = Duration::from_secs(30);

/// A config for a store in `dir` and a relay that is not there (nothing
/// listens on the discard port), retrying rarely.
fn config(dir: &Path) -> ClientConfig {
    let mut config = ClientConfig::new(
        dir.join("client.db"),
        StoreKey::generate(),
        "ws://127.0.0.1:9/v1",
    );
    config.backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60), 10);
    config
}

fn alice() -> Address {
    Address::new("alice", 1).unwrap()
}

/// A config whose store holds alice.1's new account and profile.
fn created(dir: &Path) -> ClientConfig {
    let config = config(dir);
    open_manager(&config, Some(Creation::NewUser(&alice()))).unwrap();
    config
}

/// Runs `call` as a task while the store at `path` is stalled, checks that
/// this task goes on meanwhile, then lets the store go and returns the
/// call's output.
async fn stalled<T: Send + 'static>(
    path: PathBuf,
    call: impl Future<Output = T> + Send + 'static,
) -> T {
    let gate = Gate::install(&path);
    let task = tokio::spawn(call);
    let reached = tokio::time::timeout(LIVENESS, async {
        while gate.entered() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "the call never reached the store");
    assert!(
        !gate.timed_out(),
        "the store call held the runtime's only thread"
    );
    assert!(!task.is_finished(), "the call ended with its store stalled");
    gate.open();
    let output = tokio::time::timeout(LIVENESS, task).await;
    assert!(!gate.timed_out());
    output
        .expect("the call ends once the store goes on")
        .expect("the call's task ends")
}

#[tokio::test]
async fn opening_the_store_at_start_leaves_the_runtime_free() {
    let dir = tempfile::tempdir().unwrap();
    let config = created(dir.path());
    let path = config.store_path.clone();
    let client = stalled(path, Client::start(config)).await.unwrap();
    assert_eq!(client.address(), &alice());
    client.shutdown().await;
}

#[tokio::test]
async fn a_store_read_of_the_running_client_leaves_the_runtime_free() {
    let dir = tempfile::tempdir().unwrap();
    let config = created(dir.path());
    let path = config.store_path.clone();
    let client = Client::start(config).await.unwrap();
    let (client, history) = stalled(path, async move {
        let history = client.history().await;
        (client, history)
    })
    .await;
    assert!(history.is_ok_and(|h| h.is_empty()));
    client.shutdown().await;
}

#[tokio::test]
async fn registering_leaves_the_runtime_free() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let path = config.store_path.clone();
    let result = stalled(path, async move { register(&config, alice()).await }).await;
    // The store work was done; the relay is not there.
    assert!(
        matches!(result, Err(ClientError::Connection(_))),
        "{result:?}"
    );
}
