//! A seam for fuzzing the relay's request handling (the `fuzzing` feature):
//! a relay on a database held in memory, whose connections are driven by
//! the caller without sockets or WebSocket. Every frame goes through the
//! same per-connection code as a WebSocket connection's (rate limits,
//! login, the writer's batches, mailbox delivery); only the transport is
//! replaced by channels. Not a stable API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::Stream;
use tacit_relay_proto::ServerFrame;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::conn::{self, Outbound};
use crate::store::Database;
use crate::{Config, RelayError, Shared, Started};

/// Frames waiting to be read by the caller.
const OUTPUT_CAPACITY: usize = 1024;

/// Names each in-memory database apart.
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

/// A relay on an in-memory database, with no listener.
#[derive(Debug)]
pub struct FuzzRelay {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    writer_thread: Option<crate::store::Stopped>,
}

impl FuzzRelay {
    /// Starts a relay with `config` (its `database`, `listen` and `tls` are
    /// ignored) on a new, empty in-memory database. Call it inside a tokio
    /// runtime.
    pub async fn start(config: Config) -> Result<Self, RelayError> {
        config.check()?;
        let n = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
        let database = Database::Memory(format!(
            "file:/tacit-relay-fuzz-{}-{n}?vfs=memdb",
            std::process::id()
        ));
        let Started {
            shared,
            shutdown,
            writer_thread,
        } = crate::start(config, &database).await?;
        Ok(Self {
            shared,
            shutdown,
            writer_thread: Some(writer_thread),
        })
    }

    /// The relay's name, as login transcripts need it.
    pub fn server_name(&self) -> &str {
        &self.shared.config.server_name
    }

    /// Opens a connection from `peer`, served by a task on the current
    /// runtime.
    pub fn connect(&self, peer: SocketAddr) -> FuzzConnection {
        let (input, input_rx) = mpsc::unbounded_channel::<Message>();
        let (out, output) = mpsc::channel(OUTPUT_CAPACITY);
        let task = tokio::spawn(conn::serve(
            Arc::clone(&self.shared),
            messages(input_rx),
            out,
            peer,
        ));
        FuzzConnection {
            input: Some(input),
            output,
            task,
        }
    }

    /// Deletes expired messages now, as the relay's periodic purge does;
    /// returns how many.
    pub async fn purge(&self) -> Result<u64, String> {
        let now_ms = crate::now_ms();
        self.shared
            .writer
            .purge(now_ms, self.shared.config.purge_chunk)
            .await
            .map_err(|e| e.message)
    }

    /// Stops the relay: connections still open are told it shuts down, the
    /// writer commits its last batch and its thread ends.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let mut open = self.shared.connections.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
        self.shared.writer.stop().await;
        if let Some(writer) = self.writer_thread.take() {
            writer.join().await;
        }
    }
}

/// The messages a caller sends, as the stream a connection reads.
fn messages(
    rx: mpsc::UnboundedReceiver<Message>,
) -> impl Stream<Item = Result<Message, axum::Error>> + Unpin {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|m| (Ok(m), rx))
    }))
}

/// What a connection sends its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frame (on the wire, its [`ServerFrame::encode`]).
    Frame(ServerFrame),
    /// The relay closed the connection with this WebSocket close code.
    Closed(u16),
}

/// One connection, driven by the caller.
#[derive(Debug)]
pub struct FuzzConnection {
    input: Option<mpsc::UnboundedSender<Message>>,
    output: mpsc::Receiver<Outbound>,
    task: JoinHandle<u64>,
}

impl FuzzConnection {
    /// Sends one binary message (a frame, well formed or not); false once
    /// the connection stopped reading.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        self.input
            .as_ref()
            .is_some_and(|i| i.send(Message::Binary(bytes.into())).is_ok())
    }

    /// Sends one text message (which the protocol refuses).
    pub fn send_text(&self, text: &str) -> bool {
        self.input
            .as_ref()
            .is_some_and(|i| i.send(Message::Text(text.into())).is_ok())
    }

    /// Closes the peer's side: the relay sees the peer go away.
    pub fn close(&mut self) {
        self.input = None;
    }

    /// The next thing the relay sends (pings are skipped), or `None` once
    /// the connection has ended and everything sent was read.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.output.recv().await? {
                Outbound::Frame(frame) => return Some(Event::Frame(frame)),
                Outbound::Ping => {}
                Outbound::Close(code, _) => return Some(Event::Closed(code)),
            }
        }
    }

    /// What the relay has sent and not yet read, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        loop {
            match self.output.try_recv().ok()? {
                Outbound::Frame(frame) => return Some(Event::Frame(frame)),
                Outbound::Ping => {}
                Outbound::Close(code, _) => return Some(Event::Closed(code)),
            }
        }
    }

    /// Whether the connection's task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}
