//! The client's task: connection, login, prekeys, receiving, sending.
//!
//! Two connections: the account's, which logs in and carries prekeys,
//! pushes and acknowledgements; and the anonymous one ([`Courier`]), which
//! never logs in and carries every `Submit` and `FetchBundles`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tacit::envelope::{Content, ContentKind, MESSAGE_ID_LEN};
use tacit::error::{SessionError, UserKeyConflict};
use tacit::identity::{DeviceList, UserKey, UserKeyPair};
use tacit::session::{
    DeviceListUpdate, OutgoingEnvelope, Received, SafetyNumber, SessionConfig, SessionManager,
};
use tacit::{Account, Address};
use tacit_relay_proto::{
    Ack, EnvelopeKind, ErrorCode, FetchBundles, FetchDeviceList, LoggedIn, Login, Push, Register,
    Reply, Request, Response, ServerFrame, Submit, UploadPreKeys,
};
use tokio::sync::{mpsc, oneshot};

use crate::conn::{Conn, Role};
use crate::courier::Courier;
use crate::endpoint::{login_name, Endpoint};
use crate::store::{content_key, envelope_digest, ClientStore, HeldEnvelope, Profile, Writes};
use crate::worker;
use crate::{
    now_ms, ClientConfig, ClientError, Command, Direction, Event, HistoryEntry, IncomingMessage,
    MessageId, PeerSession, ReceiptKind, Registration, SentMessage, Status,
};

/// The most message ids one delivery receipt carries (16 bytes each).
const RECEIPT_BATCH: usize = 256;

/// The most envelopes held per claimed user under another user key than
/// the trusted one (the oldest is deleted first).
const MAX_HELD_PER_USER: usize = 16;
/// The most envelopes held in all.
const MAX_HELD: usize = 256;

mod devices;
mod groups;
mod prekeys;

use prekeys::{Published, Stored};

type Manager = SessionManager<ClientStore>;

/// How a new store is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Creation<'a> {
    /// The first device of a new user: a new user key and a one-device list.
    NewUser(&'a Address),
    /// A device to be linked: its list comes from the device that links it.
    LinkedDevice(&'a Address),
}

impl<'a> Creation<'a> {
    fn address(self) -> &'a Address {
        match self {
            Self::NewUser(a) | Self::LinkedDevice(a) => a,
        }
    }
}

/// Opens the store and its session manager, creating the account (and the
/// profile naming the address) when `create` is set and the store is new.
pub(crate) fn open_manager(
    config: &ClientConfig,
    create: Option<Creation<'_>>,
) -> Result<Manager, ClientError> {
    let store = ClientStore::open(&config.store_path, config.store_key.as_bytes())?;
    match (store.profile()?, create) {
        (Some(profile), requested) => {
            let address = profile.address()?;
            if let Some(requested) = requested.map(Creation::address) {
                if *requested != address {
                    return Err(ClientError::ProfileMismatch {
                        stored: address.to_string(),
                        requested: requested.to_string(),
                    });
                }
            }
            let mut manager = SessionManager::open(store, address, SessionConfig::default())?;
            // A store from before tacit-v2 gets its KEM prekeys now; they
            // are uploaded at the next login.
            prekeys::enable_post_quantum(&mut manager)?;
            Ok(manager)
        }
        (None, None) => Err(ClientError::NotRegistered),
        (None, Some(Creation::LinkedDevice(address))) => {
            // The account and the profile; the own list comes from the
            // device that links this one.
            store.hold()?;
            let account = Account::generate(&mut OsRng, now_ms());
            let created =
                SessionManager::create(store, address.clone(), account, SessionConfig::default());
            let manager = created?;
            let held = manager.store().release()?;
            let profile = Profile {
                user_id: address.user_id().into(),
                device_id: address.device_id(),
            };
            manager.store().set_profile(&profile, None, held)?;
            Ok(manager)
        }
        (None, Some(Creation::NewUser(address))) => {
            // The account, the user key, the device's own signed list and
            // the profile are written in one transaction.
            store.hold()?;
            let account = Account::generate(&mut OsRng, now_ms());
            let identity = account.identity().public_key();
            let created =
                SessionManager::create(store, address.clone(), account, SessionConfig::default());
            let mut manager = created?;
            let user_key = UserKeyPair::generate(&mut OsRng);
            let list = DeviceList::sign(
                &user_key,
                address.user_id(),
                1,
                &[(address.device_id(), identity, now_ms())],
            )
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
            manager.update_device_list(&list)?;
            let held = manager.store().release()?;
            let profile = Profile {
                user_id: address.user_id().into(),
                device_id: address.device_id(),
            };
            manager
                .store()
                .set_profile(&profile, Some(&user_key), held)?;
            Ok(manager)
        }
    }
}

/// Creates the device's identity in the store at `config.store_path` (or
/// reuses the one there, which must be for `address`), registers it with
/// the relay (again, if the relay already knows it with this key, or has
/// lost its database) and publishes its signed, fallback and one-time
/// prekeys. The work runs on a thread of its own (see `worker`).
pub async fn register(
    config: &ClientConfig,
    address: Address,
) -> Result<Registration, ClientError> {
    let config = config.clone();
    worker::run("tacit-register", move || async move {
        register_here(&config, address).await
    })
    .await
}

/// [`register`] on the calling thread.
pub(crate) async fn register_here(
    config: &ClientConfig,
    address: Address,
) -> Result<Registration, ClientError> {
    // The URL is checked before the store is touched.
    let endpoint = Endpoint::new(config)?;
    let mut manager = open_manager(config, Some(Creation::NewUser(&address)))?;
    let mut conn = Conn::connect(&endpoint, config.request_timeout, Role::Account).await?;
    let challenge = challenge(&mut conn).await?;
    let server_name = login_name(&config.server_name, &challenge.server_name)?;
    let own_list = manager
        .device_list(address.user_id())?
        .ok_or(ClientError::Session(SessionError::NotOnOwnList))?;
    let request = Register::sign(
        manager.account().identity(),
        server_name,
        &challenge.challenge,
        now_ms(),
        address.clone(),
        &own_list,
    );
    let info = match conn.request(Request::Register(request)).await? {
        Ok(Reply::LoggedIn(info)) => info,
        Ok(other) => return Err(unexpected(&other)),
        Err(e) => return Err(ClientError::Relay(e)),
    };
    let relay = Stored {
        one_time: info.one_time_prekeys,
        one_time_kem: info.one_time_kem_prekeys,
    };
    let stored = if info.registered || !info.has_signed_prekey {
        prekeys::publish_all(&mut manager, &mut conn, config)
            .await?
            .stored
    } else if !info.has_kem_prekey && manager.account().has_kem_prekeys() {
        prekeys::publish_kem(&mut manager, &mut conn, config, info.one_time_prekeys)
            .await?
            .stored
    } else {
        prekeys::top_up(
            &mut manager,
            &mut conn,
            config,
            relay,
            UploadPreKeys::default(),
        )
        .await?
        .map_or(relay, |p| p.stored)
    };
    conn.close().await;
    Ok(Registration {
        address,
        newly_registered: info.registered,
        one_time_prekeys: stored.one_time,
        one_time_kem_prekeys: stored.one_time_kem,
    })
}

pub(crate) fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected answer {reply:?}"))
}

async fn challenge(conn: &mut Conn) -> Result<tacit_relay_proto::Challenge, ClientError> {
    match conn.request(Request::GetChallenge).await? {
        Ok(Reply::Challenge(c)) => Ok(c),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}

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
    /// Whether the stored queue is still being delivered (from login to
    /// `QueueEmpty`).
    backlog: bool,
    /// Delivery receipts held while the backlog drains, by sender user,
    /// sent as one receipt per user (and per [`RECEIPT_BATCH`] ids) at
    /// `QueueEmpty`.
    receipts_due: BTreeMap<String, Vec<MessageId>>,
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
        Ok(Self {
            manager,
            endpoint,
            config,
            commands,
            events,
            waiting: VecDeque::new(),
            counts: Counts::default(),
            courier,
            backlog: false,
            receipts_due: BTreeMap::new(),
        })
    }

    pub(crate) fn address(&self) -> &Address {
        self.manager.local_address()
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
                Ok(mut conn) => {
                    failures = 0;
                    let outcome = self.serve(&mut conn).await;
                    // The next connected period opens its own.
                    self.courier.close().await;
                    match outcome {
                        Outcome::Shutdown(reply) => {
                            conn.close().await;
                            self.emit(Event::Stopped { error: None }).await;
                            if let Some(reply) = reply {
                                let _ = reply.send(());
                            }
                            return;
                        }
                        Outcome::Fatal(e) => {
                            conn.close().await;
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

    async fn connect(&mut self) -> Result<Conn, ClientError> {
        let mut conn =
            Conn::connect(&self.endpoint, self.config.request_timeout, Role::Account).await?;
        let challenge = challenge(&mut conn).await?;
        let server_name = login_name(&self.config.server_name, &challenge.server_name)?;
        let login = Login::sign(
            self.manager.account().identity(),
            server_name,
            &challenge.challenge,
            now_ms(),
            self.manager.local_address().clone(),
        );
        let info = match conn.request(Request::Login(login)).await? {
            Ok(Reply::LoggedIn(info)) => info,
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(ClientError::Relay(e)),
        };
        self.counts = Counts::default();
        self.backlog = true;
        self.emit(Event::Connected).await;
        self.maintain_prekeys(&mut conn, info).await?;
        Ok(conn)
    }

    /// At login: rotate an old signed prekey (and the last-resort KEM
    /// prekey with it), restore prekeys the relay lacks, top up one-time
    /// prekeys and one-time KEM prekeys below the low mark.
    async fn maintain_prekeys(
        &mut self,
        conn: &mut Conn,
        info: LoggedIn,
    ) -> Result<(), ClientError> {
        let now = now_ms();
        let max_age =
            u64::try_from(self.config.signed_prekey_max_age.as_millis()).unwrap_or(u64::MAX);
        let grace = u64::try_from(self.config.signed_prekey_grace.as_millis()).unwrap_or(u64::MAX);
        let age = now.saturating_sub(self.manager.account().signed_prekey().created_at());
        let rotated = age > max_age;
        if rotated {
            prekeys::rotate(&mut self.manager, now, grace)?;
        }
        let relay = Stored {
            one_time: info.one_time_prekeys,
            one_time_kem: info.one_time_kem_prekeys,
        };
        let has_kem = self.manager.account().has_kem_prekeys();
        let published = if !info.has_signed_prekey {
            Some(prekeys::publish_all(&mut self.manager, conn, &self.config).await?)
        } else if has_kem && !info.has_kem_prekey {
            // The relay has the classical prekeys but no KEM prekey: an
            // account upgraded to tacit-v2, or a relay from before it.
            let mut published =
                prekeys::publish_kem(&mut self.manager, conn, &self.config, relay.one_time).await?;
            if rotated {
                let first = self.replacing_keys();
                published.stored = prekeys::upload_batches(conn, first, &[], &[])
                    .await?
                    .unwrap_or(published.stored);
            }
            if relay.one_time < self.config.prekeys_low {
                let stock = Stored {
                    one_time: relay.one_time,
                    one_time_kem: published.stored.one_time_kem,
                };
                if let Some(p) = prekeys::top_up(
                    &mut self.manager,
                    conn,
                    &self.config,
                    stock,
                    UploadPreKeys::default(),
                )
                .await?
                {
                    published.uploaded = p.uploaded;
                    published.stored = p.stored;
                }
            }
            Some(published)
        } else {
            let low = relay.one_time < self.config.prekeys_low
                || (has_kem && relay.one_time_kem < self.config.prekeys_low);
            let first = if rotated {
                self.replacing_keys()
            } else {
                UploadPreKeys::default()
            };
            if low {
                prekeys::top_up(&mut self.manager, conn, &self.config, relay, first).await?
            } else {
                prekeys::upload_batches(conn, first, &[], &[])
                    .await?
                    .map(|stored| Published {
                        stored,
                        ..Published::default()
                    })
            }
        };
        if let Some(published) = published {
            self.emit(published.event(rotated)).await;
        }
        Ok(())
    }

    /// The signed prekey and the last-resort KEM prekey, for upload after
    /// a rotation.
    fn replacing_keys(&self) -> UploadPreKeys {
        UploadPreKeys {
            signed_prekey: Some(prekeys::signed_prekey(&self.manager)),
            kem_last_resort_prekey: prekeys::kem_last_resort(&self.manager),
            ..UploadPreKeys::default()
        }
    }

    async fn serve(&mut self, conn: &mut Conn) -> Outcome {
        while let Some(job) = self.waiting.pop_front() {
            let job = match job {
                Job::Command(command) => match self.relay_command(conn, command).await {
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
                frame = conn.next_frame() => match frame {
                    Ok(frame) => {
                        if let Some(outcome) = self.frame(conn, frame).await {
                            return outcome;
                        }
                    }
                    Err(e) => return Outcome::Lost(e),
                },
                command = self.commands.recv() => match command {
                    None => return Outcome::Shutdown(None),
                    Some(command) => {
                        let Some(command) = self.relay_command(conn, command).await else {
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

    /// Receives one push. The order (see `docs/client.md`):
    ///
    /// 1. An envelope already processed (by digest) is acknowledged again
    ///    and dropped.
    /// 2. Open and decrypt it with the store's commits held back.
    /// 3. Write the held session changes, the envelope's digest, the
    ///    content id and the history entry (or receipt statuses) in one
    ///    transaction; or, for an envelope under a user key other than the
    ///    trusted one, the envelope itself, held sealed in the store.
    /// 4. Report it to the application.
    /// 5. Acknowledge it; then send a delivery receipt.
    ///
    /// A store failure stops the client before anything is acknowledged.
    async fn receive(&mut self, conn: &mut Conn, push: Push) -> Result<(), ClientError> {
        let digest = envelope_digest(&push.envelope);
        if self.manager.store().seen_envelope(&digest)? {
            self.counts.duplicates += 1;
            return self.ack(conn, push.message_id).await;
        }
        let receipt_to = if push.kind == EnvelopeKind::Group {
            self.process_group(&push.envelope, push.message_id).await?
        } else {
            self.process(&push.envelope, push.message_id, false).await?
        };
        self.ack(conn, push.message_id).await?;
        if let Some((user, id)) = receipt_to {
            if self.backlog {
                self.receipts_due.entry(user).or_default().push(id);
            } else {
                self.send_receipt(&user, ReceiptKind::Delivered, &[id])
                    .await?;
            }
        }
        Ok(())
    }

    /// Opens, decrypts, records and reports one envelope (steps 2 to 4 of
    /// [`receive`](Self::receive)); `from_held` for an envelope that was
    /// held and is processed after its user key was accepted: it leaves
    /// the held records in the same transaction. Returns the delivery
    /// receipt to send, if any.
    async fn process(
        &mut self,
        envelope: &[u8],
        relay_id: u64,
        from_held: bool,
    ) -> Result<Option<(String, MessageId)>, ClientError> {
        let digest = envelope_digest(envelope);
        let (opened, first_contact) = self.open_with_lists(envelope).await?;
        let held = self.manager.store().release()?;
        let now = now_ms();
        let mut writes = Writes::default();
        writes.seen_envelope(&digest, now);
        if from_held {
            writes.unhold(&digest);
        }
        let received = match opened {
            Ok(received) => received,
            Err(SessionError::Store(e)) => return Err(e.into()),
            Err(SessionError::UserKeyChanged(_)) if from_held => return Ok(None),
            Err(SessionError::UserKeyChanged(conflict)) => {
                self.hold(envelope, relay_id, digest, &conflict, writes)
                    .await?;
                return Ok(None);
            }
            Err(e) => {
                // It cannot be processed, now or later. The session may
                // have advanced past it (content that did not decode).
                self.manager.store().commit_with(held, writes)?;
                self.emit(Event::Dropped {
                    relay_id,
                    reason: e.to_string(),
                })
                .await;
                return Ok(None);
            }
        };
        let content = &received.content;
        let key = content_key(&received.sender, content.message_id());
        let mut event = None;
        let mut receipt_to = None;
        let mut group = groups::ControlOutcome::default();
        if self.manager.store().seen_content(&key)? {
            // The same content again in a new envelope: the sender retried.
            self.counts.duplicates += 1;
        } else {
            self.counts.delivered += 1;
            writes.seen_content(&key, now);
            match content.kind() {
                ContentKind::Text => {
                    let text = String::from_utf8_lossy(content.body()).into_owned();
                    writes.history(&HistoryEntry {
                        direction: Direction::Incoming,
                        peer: received.sender.clone(),
                        message_id: *content.message_id(),
                        timestamp_ms: content.timestamp(),
                        text: text.clone(),
                        status: Status::Received,
                    })?;
                    if received.sender.user_id() != self.manager.local_address().user_id() {
                        receipt_to =
                            Some((received.sender.user_id().to_owned(), *content.message_id()));
                    }
                    event = Some(Event::Message(IncomingMessage {
                        sender: received.sender.clone(),
                        message_id: *content.message_id(),
                        timestamp_ms: content.timestamp(),
                        text,
                        relay_id,
                        first_contact,
                    }));
                }
                ContentKind::DeliveryReceipt | ContentKind::ReadReceipt => {
                    let (kind, status) = if content.kind() == ContentKind::ReadReceipt {
                        (ReceiptKind::Read, Status::Read)
                    } else {
                        (ReceiptKind::Delivered, Status::Delivered)
                    };
                    let ids: Vec<MessageId> = content
                        .body()
                        .chunks_exact(MESSAGE_ID_LEN)
                        .filter_map(|c| MessageId::try_from(c).ok())
                        .collect();
                    for id in &ids {
                        if let Some(mut entry) = self.manager.store().outgoing(id)? {
                            if entry.peer.user_id() == received.sender.user_id()
                                && entry.status < status
                            {
                                entry.status = status;
                                writes.history(&entry)?;
                            }
                        }
                        self.group_receipt(id, &received.sender, status, &mut writes)?;
                    }
                    event = Some(Event::Receipt {
                        from: received.sender.clone(),
                        kind,
                        message_ids: ids,
                    });
                }
                ContentKind::SessionControl => {
                    group = self.group_control(&received, relay_id, &mut writes)?;
                }
                // Other kinds are recorded as processed and not shown.
                _ => {}
            }
        }
        self.manager.store().commit_with(held, writes)?;
        if let Some(event) = event {
            self.emit(event).await;
        }
        for event in group.events {
            self.emit(event).await;
        }
        if group.stored {
            self.retry_group_pending().await?;
        }
        Ok(receipt_to.filter(|_| self.config.delivery_receipts))
    }

    /// Keeps an envelope that came under another user key than the trusted
    /// one, sealed in the store, so that it can be acknowledged at once (the
    /// mailbox is not jammed) and processed if the application accepts the
    /// key. At most [`MAX_HELD_PER_USER`] per claimed user and
    /// [`MAX_HELD`] in all: the oldest goes first.
    async fn hold(
        &mut self,
        envelope: &[u8],
        relay_id: u64,
        digest: [u8; 32],
        conflict: &UserKeyConflict,
        mut writes: Writes,
    ) -> Result<(), ClientError> {
        let stored = self.manager.store().held()?;
        let of_user: Vec<_> = stored
            .iter()
            .filter(|h| h.user_id == conflict.user_id)
            .collect();
        if of_user.len() >= MAX_HELD_PER_USER {
            writes.unhold(&of_user[0].digest);
        } else if stored.len() >= MAX_HELD {
            writes.unhold(&stored[0].digest);
        }
        writes.hold(&HeldEnvelope {
            digest,
            user_id: conflict.user_id.clone(),
            user_key: conflict.received,
            envelope: envelope.to_vec(),
        })?;
        self.manager.store().commit_with(None, writes)?;
        let safety_number = self.safety_number_with(&conflict.user_id, &conflict.received)?;
        self.emit(Event::Held {
            relay_id,
            user_id: conflict.user_id.clone(),
            user_key: conflict.received,
            safety_number,
            reason: format!(
                "a message as {} under another user key than the trusted one: \
                 an impersonation, or a new key; verify it before reading",
                conflict.user_id
            ),
        })
        .await;
        Ok(())
    }

    /// Sends the delivery receipts held while the backlog drained: one per
    /// sender user (per [`RECEIPT_BATCH`] ids) rather than one per message,
    /// which keeps a long backlog well within the relay's rate limits for
    /// connections that are not logged in. Receipts not yet sent when the
    /// connection drops are sent after the next backlog.
    async fn flush_receipts(&mut self) -> Result<(), ClientError> {
        while let Some(mut due) = self.receipts_due.first_entry() {
            let user = due.key().clone();
            let ids = due.get_mut();
            let batch: Vec<MessageId> = ids.drain(..ids.len().min(RECEIPT_BATCH)).collect();
            if ids.is_empty() {
                due.remove();
            }
            self.send_receipt(&user, ReceiptKind::Delivered, &batch)
                .await?;
        }
        Ok(())
    }

    async fn ack(&mut self, conn: &mut Conn, relay_id: u64) -> Result<(), ClientError> {
        if self.config.acknowledge {
            conn.send(Request::Ack(Ack::new(vec![relay_id])?)).await?;
        }
        Ok(())
    }

    /// Sends a receipt; a refusal is logged, a lost connection returned.
    async fn send_receipt(
        &mut self,
        user: &str,
        kind: ReceiptKind,
        ids: &[MessageId],
    ) -> Result<(), ClientError> {
        let content_kind = match kind {
            ReceiptKind::Delivered => ContentKind::DeliveryReceipt,
            ReceiptKind::Read => ContentKind::ReadReceipt,
        };
        let body = ids.concat();
        let pending = match self.seal(user, content_kind, body, None).await {
            Ok(p) => p,
            Err(e) if matches!(e, ClientError::Connection(_) | ClientError::Timeout(_)) => {
                return Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %e, "receipt not sent");
                return Ok(());
            }
        };
        match self.submit(pending).await {
            Ok(()) => Ok(()),
            Err((e, pending)) => {
                // Resumed after the reconnection.
                self.waiting.push_back(Job::Resume(pending));
                Err(e)
            }
        }
    }

    /// Runs a command or resumes a send. Returns how the connection ended
    /// if it did. Sends go over the anonymous connection only.
    async fn job(&mut self, job: Job) -> Option<Outcome> {
        let pending = match job {
            Job::Resume(pending) => pending,
            Job::Command(Command::Shutdown { reply }) => {
                return Some(Outcome::Shutdown(Some(reply)))
            }
            Job::Command(Command::Send { peer, text, reply }) => {
                let body = text.clone().into_bytes();
                let entry = |peer: Address, message_id| HistoryEntry {
                    direction: Direction::Outgoing,
                    peer,
                    message_id,
                    timestamp_ms: now_ms(),
                    text,
                    status: Status::Sent,
                };
                match self.seal(&peer, ContentKind::Text, body, Some(reply)).await {
                    Ok(mut pending) => {
                        let first = pending
                            .envelopes
                            .iter()
                            .find(|e| e.recipient.user_id() == peer)
                            .map(|e| e.recipient.clone());
                        if let Some(first) = first {
                            pending.entry = Some(entry(first, pending.message_id));
                        }
                        pending.peer = Some(peer);
                        pending
                    }
                    Err(e) => return Self::transport_outcome(e),
                }
            }
            Job::Command(Command::Read {
                peer,
                message_ids,
                reply,
            }) => {
                let result = self
                    .send_receipt(&peer, ReceiptKind::Read, &message_ids)
                    .await;
                let outcome = match &result {
                    Err(ClientError::Connection(m)) => {
                        Some(Outcome::Lost(ClientError::Connection(m.clone())))
                    }
                    Err(ClientError::Timeout(m)) => Some(Outcome::Lost(ClientError::Timeout(m))),
                    _ => None,
                };
                let _ = reply.send(result);
                return outcome;
            }
            Job::Command(Command::Group(command)) => return self.group_command(command).await,
            Job::Command(command) => {
                self.local_command(command);
                return None;
            }
        };
        match self.submit(pending).await {
            Ok(()) => None,
            Err((e, pending)) => {
                self.waiting.push_back(Job::Resume(pending));
                Some(Outcome::Lost(e))
            }
        }
    }

    /// Runs a command that needs the logged-in connection or the relay
    /// (device changes, accepting a user key); gives any other back.
    async fn relay_command(&mut self, conn: &mut Conn, command: Command) -> Option<Command> {
        match command {
            Command::ApproveLink { code, reply } => {
                let _ = reply.send(self.approve_link(conn, &code).await);
            }
            Command::RemoveDevice { device_id, reply } => {
                let _ = reply.send(self.remove_device(conn, device_id).await);
            }
            Command::AcceptUserKey {
                user_id,
                user_key,
                reply,
            } => {
                let _ = reply.send(self.accept_user_key(&user_id, &user_key).await);
            }
            other => return Some(other),
        }
        None
    }

    /// Errors from sealing: the reply was already sent; a lost connection
    /// ends the connected period.
    fn transport_outcome(error: ClientError) -> Option<Outcome> {
        match error {
            ClientError::Connection(_) | ClientError::Timeout(_) => Some(Outcome::Lost(error)),
            _ => None,
        }
    }

    /// Accepts `user_key` for `user_id`: fetches the user's list from the
    /// relay, which must be signed by that key, trusts it, then processes
    /// the envelopes from that user held under that key, oldest first, each
    /// leaving the held records in the transaction that records it. Returns
    /// how many were processed.
    async fn accept_user_key(
        &mut self,
        user_id: &str,
        user_key: &UserKey,
    ) -> Result<usize, ClientError> {
        let list = self
            .fetch_list(user_id, Some(user_key))
            .await?
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "the relay has no list of {user_id} signed by that user key"
                ))
            })?;
        self.manager.accept_user_key(&list)?;
        let mut released = 0;
        for held in self.manager.store().held()? {
            if held.user_id != user_id || held.user_key != *user_key {
                continue;
            }
            if let Some((user, id)) = self.process(&held.envelope, 0, true).await? {
                self.send_receipt(&user, ReceiptKind::Delivered, &[id])
                    .await?;
            }
            released += 1;
        }
        Ok(released)
    }

    /// Deletes the envelopes held for `user_id` (the application judged
    /// them an impersonation). Returns how many.
    fn reject_user_key(&mut self, user_id: &str) -> Result<usize, ClientError> {
        let mut writes = Writes::default();
        let mut count = 0;
        for held in self.manager.store().held()? {
            if held.user_id == user_id {
                writes.unhold(&held.digest);
                count += 1;
            }
        }
        self.manager.store().commit_with(None, writes)?;
        Ok(count)
    }

    /// The current sessions with `peer`'s listed devices.
    fn sessions(&self, peer: &str) -> Result<Vec<PeerSession>, ClientError> {
        let mut out = Vec::new();
        for address in self.manager.fan_out(peer)? {
            let Some(info) = self.manager.session_info(&address)? else {
                continue;
            };
            if let Some(profile) = info.current_profile {
                out.push(PeerSession {
                    address,
                    profile,
                    acknowledged: info.current_acknowledged,
                });
            }
        }
        Ok(out)
    }

    /// Commands that need no connection.
    fn local_command(&mut self, command: Command) {
        match command {
            Command::AcceptUserKey { reply, .. } => {
                // The new list comes from the relay.
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::RejectUserKey { user_id, reply } => {
                let _ = reply.send(self.reject_user_key(&user_id));
            }
            Command::ApproveLink { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::RemoveDevice { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::Devices { reply } => {
                let _ = reply.send(self.devices());
            }
            Command::Sessions { peer, reply } => {
                let _ = reply.send(self.sessions(&peer));
            }
            Command::RecoveryCode { reply } => {
                let _ = reply.send(self.recovery_code());
            }
            Command::SafetyNumber { peer, reply } => {
                let result = self
                    .manager
                    .safety_number(&peer)
                    .map(|n| n.as_str().to_owned())
                    .map_err(|e| match e {
                        SessionError::UnknownUser(_) => ClientError::UnknownPeer(peer.clone()),
                        other => other.into(),
                    });
                let _ = reply.send(result);
            }
            Command::History { reply } => {
                let _ = reply.send(self.manager.store().history().map_err(Into::into));
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
            Command::Send { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::Read { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::Group(command) => self.local_group_command(command),
        }
    }

    /// Makes sure there are sessions with `peer`'s devices (fetching their
    /// bundles if there is none), then seals a content of `kind` for the
    /// user. On error the reply (if any) is answered here.
    async fn seal(
        &mut self,
        peer: &str,
        kind: ContentKind,
        body: Vec<u8>,
        reply: Option<oneshot::Sender<Result<SentMessage, ClientError>>>,
    ) -> Result<PendingSend, ClientError> {
        let result = self.seal_inner(peer, kind, body).await;
        match result {
            Ok((content_id, envelopes)) => Ok(PendingSend {
                message_id: content_id,
                envelopes,
                stored_for: Vec::new(),
                refused: Vec::new(),
                entry: None,
                peer: None,
                reply,
            }),
            Err(e) => {
                let copy = match &e {
                    ClientError::Connection(m) => ClientError::Connection(m.clone()),
                    ClientError::Timeout(m) => ClientError::Timeout(m),
                    other => ClientError::Invalid(other.to_string()),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e));
                }
                Err(copy)
            }
        }
    }

    /// Brings the verified device lists of `peer` and of the local user up
    /// to date from the relay, fetches bundles for listed devices without a
    /// session, then seals for every listed device that has one. Lists,
    /// bundles and envelopes go over the anonymous connection, so that the
    /// relay does not learn which device asked.
    async fn seal_inner(
        &mut self,
        peer: &str,
        kind: ContentKind,
        body: Vec<u8>,
    ) -> Result<(MessageId, Vec<OutgoingEnvelope>), ClientError> {
        let own_user = self.manager.local_address().user_id().to_owned();
        if peer == own_user {
            return Err(ClientError::Invalid("cannot send to yourself".into()));
        }
        for user in [peer, own_user.as_str()] {
            let served = self.refresh_list(user).await?;
            if !served && user == peer && self.manager.device_list(user)?.is_none() {
                return Err(ClientError::UnknownPeer(peer.into()));
            }
        }
        for address in self.manager.missing_sessions(peer)? {
            let bundles = match self
                .courier
                .fetch_bundles(FetchBundles::device(&address))
                .await?
            {
                Ok(Reply::Bundles(b)) => b.bundles,
                // Not registered yet, or no prekeys: not reachable now.
                _ => continue,
            };
            for bundle in bundles
                .iter()
                .filter(|b| b.device_id == address.device_id())
            {
                match self
                    .manager
                    .process_bundle(&address, &bundle.bundle, &mut OsRng)
                {
                    Ok(_) => {}
                    Err(SessionError::Store(e)) => return Err(e.into()),
                    Err(e) => tracing::warn!(%address, error = %e, "bundle refused"),
                }
            }
        }
        let missing = self.manager.missing_sessions(peer)?;
        let reachable: Vec<Address> = self
            .manager
            .fan_out(peer)?
            .into_iter()
            .filter(|a| !missing.contains(a))
            .collect();
        if !reachable.iter().any(|a| a.user_id() == peer) {
            return Err(ClientError::UnknownPeer(peer.into()));
        }
        let content = Content::new_with_rng(kind, body, now_ms(), &mut OsRng)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let mut envelopes = Vec::with_capacity(reachable.len());
        for address in &reachable {
            envelopes.push(
                self.manager
                    .seal_for_device(address, &content, &mut OsRng)?,
            );
        }
        Ok((*content.message_id(), envelopes))
    }

    /// Fetches `user_id`'s list from the relay and trusts it if it is newer
    /// than the stored one (an older one is ignored: the newest verified
    /// list stays). Returns whether the relay served a list that verifies.
    async fn refresh_list(&mut self, user_id: &str) -> Result<bool, ClientError> {
        let Some(list) = self.fetch_list(user_id, None).await? else {
            return Ok(false);
        };
        match self.manager.update_device_list(&list) {
            Ok(_) | Err(SessionError::StaleDeviceList { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The user's current list from the relay, verified, for that user and
    /// (when `expected` is given) under that user key. `None` when the
    /// relay has none or serves one that does not verify: a relay cannot
    /// make this client trust a list the user key did not sign.
    async fn fetch_list(
        &mut self,
        user_id: &str,
        expected: Option<&UserKey>,
    ) -> Result<Option<DeviceList>, ClientError> {
        let request = FetchDeviceList::new(user_id)?;
        let bytes = match self.courier.fetch_device_list(request).await? {
            Ok(Reply::DeviceList(bytes)) => bytes,
            Ok(other) => return Err(unexpected(&other)),
            Err(_) => return Ok(None),
        };
        let Ok(list) = bytes.verify() else {
            tracing::warn!(
                user_id,
                "the relay served a device list that does not verify"
            );
            return Ok(None);
        };
        if list.user_id() != user_id || expected.is_some_and(|k| k != list.user_key()) {
            return Ok(None);
        }
        Ok(Some(list))
    }

    /// Opens `envelope`, refreshing the sender's device list once from the
    /// relay when the sender's user is unknown or its device not listed
    /// (it may have been linked since). Returns the result and whether the
    /// sender's user was met for the first time. The store's hold is active
    /// when it returns.
    async fn open_with_lists(
        &mut self,
        envelope: &[u8],
    ) -> Result<(Result<Received, SessionError>, bool), ClientError> {
        let mut first_contact = false;
        let mut refreshed = false;
        loop {
            self.manager.store().hold()?;
            let opened = self.manager.open_envelope(envelope, &mut OsRng);
            let retry = match &opened {
                Err(SessionError::UnknownUser(u)) if !refreshed => {
                    Some((u.user_id.clone(), u.user_key))
                }
                Err(SessionError::DeviceNotListed(a)) if !refreshed => {
                    Some((a.user_id().to_owned(), None))
                }
                _ => None,
            };
            let Some((user, expected)) = retry else {
                return Ok((opened, first_contact));
            };
            // The failed open wrote nothing.
            self.manager.store().release()?;
            refreshed = true;
            let Some(list) = self.fetch_list(&user, expected.as_ref()).await? else {
                self.manager.store().hold()?;
                return Ok((opened, first_contact));
            };
            match self.manager.update_device_list(&list) {
                Ok(DeviceListUpdate::FirstContact) => first_contact = true,
                Ok(_) => {}
                Err(SessionError::Store(e)) => return Err(e.into()),
                Err(_) => {
                    self.manager.store().hold()?;
                    return Ok((opened, first_contact));
                }
            }
        }
    }

    /// The safety number of the local user and `user_id` under `user_key`.
    fn safety_number_with(&self, user_id: &str, user_key: &UserKey) -> Result<String, ClientError> {
        let own = self
            .manager
            .device_list(self.manager.local_address().user_id())?
            .ok_or(SessionError::NotOnOwnList)?;
        Ok(SafetyNumber::new(
            self.manager.local_address().user_id(),
            own.user_key(),
            user_id,
            user_key,
        )
        .as_str()
        .to_owned())
    }

    /// Submits every envelope not yet stored, over the anonymous
    /// connection and without a delivery token (this client sets none; a
    /// recipient that did refuses with `DeliveryTokenRefused`). Rate
    /// limits are waited out by the courier. On a lost connection, returns
    /// the error and the send, to be resumed after reconnecting (the same
    /// envelope bytes, so a copy stored twice is recognised by the
    /// recipient).
    async fn submit(&mut self, mut pending: PendingSend) -> Result<(), (ClientError, PendingSend)> {
        while let Some(outgoing) = pending.envelopes.first().cloned() {
            let answer =
                match Submit::new(outgoing.recipient.clone(), outgoing.envelope.clone(), None) {
                    Ok(request) => match self.courier.submit(request).await {
                        Ok(answer) => answer,
                        Err(e) => return Err((e, pending)),
                    },
                    Err(e) => Err(tacit_relay_proto::ErrorReply::new(
                        ErrorCode::InvalidRequest,
                        e.to_string(),
                    )),
                };
            match answer {
                Ok(Reply::Submitted { .. }) => pending.stored_for.push(outgoing.recipient.clone()),
                Ok(other) => pending.refused.push((
                    outgoing.recipient.clone(),
                    tacit_relay_proto::ErrorReply::new(
                        ErrorCode::InvalidRequest,
                        format!("unexpected answer {other:?}"),
                    ),
                )),
                Err(e) => pending.refused.push((outgoing.recipient.clone(), e)),
            }
            pending.envelopes.remove(0);
        }
        let mut result = Ok(());
        if let Some(entry) = pending.entry.take() {
            if !pending.stored_for.is_empty() {
                let mut writes = Writes::default();
                let written = writes
                    .history(&entry)
                    .and_then(|()| self.manager.store().commit_with(None, writes));
                if let Err(e) = written {
                    tracing::warn!(error = %e, "history not written");
                    result = Err(ClientError::from(e));
                }
            }
        }
        if let Some(reply) = pending.reply.take() {
            // A send that reached none of the peer's devices failed.
            let reached_peer = pending
                .stored_for
                .iter()
                .any(|a| Some(a.user_id()) == pending.peer.as_deref());
            if result.is_ok() && !reached_peer && pending.peer.is_some() {
                result = Err(match pending.refused.first() {
                    Some((_, e)) => ClientError::Relay(e.clone()),
                    None => ClientError::Protocol("no envelope for the peer".into()),
                });
            }
            let _ = reply.send(result.map(|()| SentMessage {
                message_id: pending.message_id,
                stored_for: pending.stored_for,
                refused: pending.refused,
            }));
        }
        Ok(())
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
