//! The client's task: connection, login, prekeys, receiving, sending.
//!
//! Two connections: the account's, which logs in and carries prekeys,
//! pushes and acknowledgements; and the anonymous one ([`Courier`]), which
//! never logs in and carries every `FetchBundles` and every submission
//! first (a submission refused there for want of a delivery token goes
//! again on the account's, `tokens`).
//!
//! This module holds the task's state and its loop (connect, serve,
//! back off); each concern is a module of its own: [`setup`] (opening the
//! store, registering), [`login`], [`inbox`] (receiving), [`held`]
//! (envelopes under an untrusted user key), [`receipts`], [`outbox`]
//! (sealing and submitting), [`lists`] (device lists from the relay),
//! [`commands`], [`devices`], [`prekeys`], [`groups`], [`files`] and
//! [`tokens`] (delivery tokens).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tacit::session::{OutgoingEnvelope, SessionManager};
use tacit::Address;
use tacit_relay_proto::{Response, ServerFrame, UploadPreKeys};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::conn::Conn;
use crate::courier::Courier;
use crate::endpoint::Endpoint;
use crate::store::ClientStore;
use crate::transfer::Transfer;
use crate::{ClientConfig, ClientError, Command, Event, HistoryEntry, MessageId, SentMessage};

mod commands;
mod devices;
mod files;
mod groups;
mod held;
mod inbox;
mod lists;
mod login;
mod outbox;
mod prekeys;
mod receipts;
mod setup;
mod tokens;

use prekeys::Stored;
use setup::challenge;
pub use setup::register;
pub(crate) use setup::{open_manager, register_here, unexpected, Creation};

type Manager = SessionManager<ClientStore>;

/// Counters since the last login.
#[derive(Debug, Default)]
struct Counts {
    delivered: u32,
    duplicates: u32,
}

/// How a connected period ended.
enum Outcome {
    /// Asked to stop (or the handle was dropped).
    Shutdown(Option<oneshot::Sender<()>>),
    /// The connection failed: reconnect.
    Lost(ClientError),
    /// Stop with this error.
    Fatal(ClientError),
}

/// A send whose envelopes are sealed, waiting for the relay.
struct PendingSend {
    message_id: MessageId,
    envelopes: Vec<OutgoingEnvelope>,
    stored_for: Vec<Address>,
    refused: Vec<(Address, tacit_relay_proto::ErrorReply)>,
    /// The history entry to write once every copy is stored (texts only).
    entry: Option<HistoryEntry>,
    /// The peer user (for a text), who must get at least one copy.
    peer: Option<String>,
    reply: Option<oneshot::Sender<Result<SentMessage, ClientError>>>,
}

/// Work that waits for a connection.
enum Job {
    Command(Command),
    Resume(PendingSend),
}

/// The client's task.
pub(crate) struct Engine {
    manager: Manager,
    config: ClientConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    waiting: VecDeque<Job>,
    counts: Counts,
    /// The relay, checked against the URL policy, with its TLS settings.
    endpoint: Endpoint,
    /// The connection that never logs in, for submissions and fetches.
    courier: Courier,
    /// The logged-in connection while connected, except while a frame or
    /// a relay command borrows it: the path of submissions the relay
    /// refused on the anonymous one for want of the recipient's delivery
    /// token (`outbox`).
    account: Option<Conn>,
    /// Whether the stored queue is still being delivered (from login to
    /// `QueueEmpty`).
    backlog: bool,
    /// Delivery receipts held while the backlog drains, by sender user,
    /// sent as one receipt per user (and per `receipts::RECEIPT_BATCH` ids) at
    /// `QueueEmpty`.
    receipts_due: BTreeMap<String, Vec<MessageId>>,
    /// The relay's attachment routes.
    transfer: Transfer,
    /// Received files downloading into the download directory, off the
    /// loop that handles messages; aborted when the client stops.
    downloads: JoinSet<()>,
    /// Bounds how many of `downloads` transfer at once.
    download_slots: Arc<Semaphore>,
}

impl Engine {
    pub(crate) fn open(
        config: ClientConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) -> Result<Self, ClientError> {
        let endpoint = Endpoint::new(&config)?;
        let manager = open_manager(&config, None)?;
        let courier = Courier::new(endpoint.clone(), config.request_timeout);
        let transfer = Transfer::new(&endpoint, config.request_timeout)?;
        let download_slots = Arc::new(Semaphore::new(config.concurrent_downloads.max(1)));
        Ok(Self {
            transfer,
            downloads: JoinSet::new(),
            download_slots,
            manager,
            endpoint,
            config,
            commands,
            events,
            waiting: VecDeque::new(),
            counts: Counts::default(),
            courier,
            account: None,
            backlog: false,
            receipts_due: BTreeMap::new(),
        })
    }

    pub(crate) fn address(&self) -> &Address {
        self.manager.local_address()
    }

    /// The relay's attachment routes, for the application's handle.
    pub(crate) fn transfer(&self) -> Transfer {
        self.transfer.clone()
    }

    /// Reports `event`, waiting while the application's queue of events is
    /// full (the queue is bounded: a burst from the network cannot grow it).
    async fn emit(&self, event: Event) {
        // The application may have dropped its handle: nothing to do then.
        let _ = self.events.send(event).await;
    }

    /// Connect, serve, and on failure back off and reconnect, until asked
    /// to stop, a fatal error, or too many failures in a row.
    pub(crate) async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            let error = match self.connect().await {
                Ok(conn) => {
                    failures = 0;
                    self.account = Some(conn);
                    let outcome = self.serve().await;
                    // The next connected period opens its own.
                    self.courier.close().await;
                    let conn = self.account.take();
                    match outcome {
                        Outcome::Shutdown(reply) => {
                            if let Some(conn) = conn {
                                conn.close().await;
                            }
                            self.downloads.abort_all();
                            self.emit(Event::Stopped { error: None }).await;
                            if let Some(reply) = reply {
                                let _ = reply.send(());
                            }
                            return;
                        }
                        Outcome::Fatal(e) => {
                            if let Some(conn) = conn {
                                conn.close().await;
                            }
                            return self.stop(e).await;
                        }
                        Outcome::Lost(e) => e,
                    }
                }
                Err(e) if e.is_fatal() => return self.stop(e).await,
                Err(e) => e,
            };
            failures += 1;
            if failures > self.config.backoff.max_attempts {
                return self
                    .stop(ClientError::Connection(format!(
                        "gave up after {} attempts: {error}",
                        failures - 1
                    )))
                    .await;
            }
            let delay = self.config.backoff.delay(failures, OsRng.next_u32());
            tracing::info!(%error, ?delay, "disconnected; reconnecting");
            self.emit(Event::Disconnected {
                reason: error.to_string(),
                retry_in: delay,
            })
            .await;
            if let Some(reply) = self.wait(delay).await {
                self.downloads.abort_all();
                self.emit(Event::Stopped { error: None }).await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
                return;
            }
        }
    }

    async fn stop(&mut self, error: ClientError) {
        tracing::warn!(%error, "client stopped");
        self.downloads.abort_all();
        self.emit(Event::Stopped {
            error: Some(error.to_string()),
        })
        .await;
        // Waiting commands fail with `Stopped` as their replies drop.
        self.waiting.clear();
    }

    /// Waits out a backoff delay, answering what needs no connection and
    /// keeping the rest. Returns `Some` when asked to stop.
    async fn wait(&mut self, delay: Duration) -> Option<Option<oneshot::Sender<()>>> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return None,
                command = self.commands.recv() => match command {
                    None => return Some(None),
                    Some(Command::Shutdown { reply }) => return Some(Some(reply)),
                    Some(command) if groups::needs_relay(&command) => {
                        self.waiting.push_back(Job::Command(command));
                    }
                    Some(
                        command @ (Command::Send { .. }
                        | Command::SendFile { .. }
                        | Command::AllocateAttachment { .. }
                        | Command::Read { .. }
                        | Command::ApproveLink { .. }
                        | Command::RemoveDevice { .. }
                        | Command::AcceptUserKey { .. }),
                    ) => {
                        // Done once the connection is back.
                        self.waiting.push_back(Job::Command(command));
                    }
                    Some(command) => self.local_command(command),
                },
            }
        }
    }

    /// Serves the logged-in connection held in `self.account`.
    async fn serve(&mut self) -> Outcome {
        while let Some(job) = self.waiting.pop_front() {
            let job = match job {
                Job::Command(command) => match self.account_command(command).await {
                    None => continue,
                    Some(command) => Job::Command(command),
                },
                job => job,
            };
            if let Some(outcome) = self.job(job).await {
                return outcome;
            }
        }
        loop {
            let idle = self.courier.idle_deadline();
            tokio::select! {
                () = sleep_until(idle) => self.courier.close().await,
                frame = next_frame(&mut self.account) => match frame {
                    Ok(frame) => {
                        let Some(mut conn) = self.account.take() else {
                            return Outcome::Lost(gone());
                        };
                        let outcome = self.frame(&mut conn, frame).await;
                        self.account = Some(conn);
                        if let Some(outcome) = outcome {
                            return outcome;
                        }
                    }
                    Err(e) => return Outcome::Lost(e),
                },
                command = self.commands.recv() => match command {
                    None => return Outcome::Shutdown(None),
                    Some(command) => {
                        let Some(command) = self.account_command(command).await else {
                            continue;
                        };
                        if let Some(outcome) = self.job(Job::Command(command)).await {
                            return outcome;
                        }
                    }
                },
            }
        }
    }

    /// Runs a command that needs the logged-in connection (lending it);
    /// gives any other back.
    async fn account_command(&mut self, command: Command) -> Option<Command> {
        let Some(mut conn) = self.account.take() else {
            return Some(command);
        };
        let rest = self.relay_command(&mut conn, command).await;
        self.account = Some(conn);
        rest
    }

    /// Classifies an error met while connected.
    fn outcome(error: ClientError) -> Outcome {
        if error.is_fatal() {
            Outcome::Fatal(error)
        } else {
            Outcome::Lost(error)
        }
    }

    async fn frame(&mut self, conn: &mut Conn, frame: ServerFrame) -> Option<Outcome> {
        let result = match frame {
            ServerFrame::Push(push) if self.config.receive => self.receive(conn, push).await,
            ServerFrame::Push(_) => Ok(()),
            ServerFrame::QueueEmpty => {
                self.backlog = false;
                self.emit(Event::QueueDrained {
                    delivered: self.counts.delivered,
                    duplicates: self.counts.duplicates,
                })
                .await;
                match self.expire_group_pending().await {
                    Ok(()) => self.flush_receipts().await,
                    Err(e) => Err(e),
                }
            }
            ServerFrame::PreKeysLow {
                remaining,
                kem_remaining,
            } => {
                let relay = Stored {
                    one_time: remaining,
                    one_time_kem: kem_remaining,
                };
                let first = UploadPreKeys::default();
                match prekeys::top_up(&mut self.manager, conn, &self.config, relay, first).await {
                    Ok(Some(published)) => {
                        self.emit(published.event(false)).await;
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            ServerFrame::MessagesExpired { count } => {
                self.emit(Event::MessagesExpired { count }).await;
                Ok(())
            }
            ServerFrame::Response(Response {
                request_id: 0,
                result: Err(e),
            }) => Err(ClientError::Relay(e)),
            ServerFrame::Response(response) => {
                conn.note_unawaited(response);
                Ok(())
            }
            // A frame kind newer than this client: nothing to do with it.
            _ => Ok(()),
        };
        result.err().map(Self::outcome)
    }
}

/// The next frame of the logged-in connection, or never without one.
async fn next_frame(account: &mut Option<Conn>) -> Result<ServerFrame, ClientError> {
    match account {
        Some(conn) => conn.next_frame().await,
        None => std::future::pending().await,
    }
}

/// The error of a logged-in connection that is not there.
fn gone() -> ClientError {
    ClientError::Connection("the logged-in connection is gone".into())
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
