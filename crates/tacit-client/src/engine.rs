//! The client's task: connection, login, prekeys, receiving, sending.
//!
//! Two connections: the account's, which logs in and carries prekeys,
//! pushes and acknowledgements; and the anonymous one ([`Courier`]), which
//! never logs in and carries every `Submit` and `FetchBundles`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tacit::envelope::{Content, ContentKind, MESSAGE_ID_LEN};
use tacit::error::SessionError;
use tacit::identity::{DeviceList, UserKey, UserKeyPair};
use tacit::keys::IdentityKey;
use tacit::session::{
    OutgoingEnvelope, SafetyNumber, SessionConfig, SessionManager, MAX_ONE_TIME_PREKEYS,
};
use tacit::{Account, Address};
use tacit_relay_proto::{
    Ack, ErrorCode, FetchBundles, LoggedIn, Login, OneTimePreKey, Push, Register, Reply, Request,
    Response, ServerFrame, SignedPreKey, Submit, UploadPreKeys, MAX_PREKEYS_PER_UPLOAD,
};
use tokio::sync::{mpsc, oneshot};

use crate::conn::{Conn, Role};
use crate::courier::Courier;
use crate::store::{content_key, envelope_digest, ClientStore, Profile, Writes};
use crate::{
    now_ms, ClientConfig, ClientError, Command, Direction, Event, HistoryEntry, IncomingMessage,
    MessageId, ReceiptKind, Registration, SentMessage, Status,
};

/// The most message ids one delivery receipt carries (16 bytes each).
const RECEIPT_BATCH: usize = 256;

type Manager = SessionManager<ClientStore>;

/// Opens the store and its session manager, creating the account (and the
/// profile naming `address`) when `create` is set and the store is new.
fn open_manager(config: &ClientConfig, create: Option<&Address>) -> Result<Manager, ClientError> {
    let store = ClientStore::open(&config.store_path, config.store_key.as_bytes())?;
    match (store.profile()?, create) {
        (Some(profile), requested) => {
            let address = profile.address()?;
            if let Some(requested) = requested {
                if *requested != address {
                    return Err(ClientError::ProfileMismatch {
                        stored: address.to_string(),
                        requested: requested.to_string(),
                    });
                }
            }
            Ok(SessionManager::open(
                store,
                address,
                SessionConfig::default(),
            )?)
        }
        (None, None) => Err(ClientError::NotRegistered),
        (None, Some(address)) => {
            // The account and the profile are written in one transaction.
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
            manager.store().set_profile(&profile, held)?;
            Ok(manager)
        }
    }
}

/// Creates the device's identity in the store at `config.store_path` (or
/// reuses the one there, which must be for `address`), registers it with
/// the relay (again, if the relay already knows it with this key, or has
/// lost its database) and publishes its signed, fallback and one-time
/// prekeys.
pub async fn register(
    config: &ClientConfig,
    address: Address,
) -> Result<Registration, ClientError> {
    let mut manager = open_manager(config, Some(&address))?;
    let mut conn = Conn::connect(&config.relay_url, config.request_timeout, Role::Account).await?;
    let challenge = challenge(&mut conn).await?;
    // A new user of its own: a fresh user key, held in memory only, signs a
    // one-device list, version 1. Linking further devices is not done here.
    let user_key = UserKeyPair::generate(&mut OsRng);
    let device_list = DeviceList::sign(
        &user_key,
        address.user_id(),
        1,
        &[(
            address.device_id(),
            manager.account().identity().public_key(),
            now_ms(),
        )],
    )
    .map_err(|e| ClientError::Invalid(format!("device list: {e}")))?;
    drop(user_key);
    let request = Register::sign(
        manager.account().identity(),
        &challenge.server_name,
        &challenge.challenge,
        now_ms(),
        address.clone(),
        &device_list,
    );
    let info = match conn.request(Request::Register(request)).await? {
        Ok(Reply::LoggedIn(info)) => info,
        Ok(other) => return Err(unexpected(&other)),
        Err(e) => return Err(ClientError::Relay(e)),
    };
    let stored = if info.registered || !info.has_signed_prekey {
        publish_all(&mut manager, &mut conn, config).await?
    } else {
        top_up(&mut manager, &mut conn, config, info.one_time_prekeys)
            .await?
            .map(|(_, stored)| stored)
            .unwrap_or(info.one_time_prekeys)
    };
    conn.close().await;
    Ok(Registration {
        address,
        newly_registered: info.registered,
        one_time_prekeys: stored,
    })
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected answer {reply:?}"))
}

async fn challenge(conn: &mut Conn) -> Result<tacit_relay_proto::Challenge, ClientError> {
    match conn.request(Request::GetChallenge).await? {
        Ok(Reply::Challenge(c)) => Ok(c),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}

fn signed_prekey(manager: &Manager) -> SignedPreKey {
    let spk = manager.account().signed_prekey();
    SignedPreKey {
        id: spk.id(),
        key: spk.public_key(),
        signature: spk.signature(),
    }
}

/// Uploads `upload`; returns the relay's count of one-time prekeys.
async fn upload(conn: &mut Conn, upload: UploadPreKeys) -> Result<u32, ClientError> {
    match conn.request(Request::UploadPreKeys(upload)).await? {
        Ok(Reply::PreKeysStored { one_time_prekeys }) => Ok(one_time_prekeys),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}

/// Uploads one-time prekeys in batches the relay accepts; the first batch
/// also carries `first_extra` (signed and fallback prekeys).
async fn upload_batches(
    conn: &mut Conn,
    keys: &[(u32, tacit::PublicKey)],
    mut first_extra: Option<(SignedPreKey, OneTimePreKey)>,
) -> Result<u32, ClientError> {
    let mut stored = 0;
    let mut chunks = keys.chunks(MAX_PREKEYS_PER_UPLOAD).peekable();
    if chunks.peek().is_none() {
        if let Some((spk, fallback)) = first_extra.take() {
            stored = upload(
                conn,
                UploadPreKeys {
                    signed_prekey: Some(spk),
                    fallback_prekey: Some(fallback),
                    one_time_prekeys: Vec::new(),
                },
            )
            .await?;
        }
    }
    for chunk in chunks {
        let extra = first_extra.take();
        stored = upload(
            conn,
            UploadPreKeys {
                signed_prekey: extra.map(|(s, _)| s),
                fallback_prekey: extra.map(|(_, f)| f),
                one_time_prekeys: chunk
                    .iter()
                    .map(|&(id, key)| OneTimePreKey { id, key })
                    .collect(),
            },
        )
        .await?;
    }
    Ok(stored)
}

/// After a fresh registration (or a relay that lost the device's prekeys):
/// the signed and fallback prekeys and every unused one-time prekey the
/// account holds, topped up to the target.
async fn publish_all(
    manager: &mut Manager,
    conn: &mut Conn,
    config: &ClientConfig,
) -> Result<u32, ClientError> {
    let held = manager.account().one_time_prekey_count();
    let target = usize::try_from(config.one_time_prekeys).unwrap_or(usize::MAX);
    if held < target {
        let room = MAX_ONE_TIME_PREKEYS.saturating_sub(held);
        manager.generate_one_time_prekeys((target - held).min(room), &mut OsRng)?;
    }
    let keys = manager.account().one_time_prekeys();
    let fallback = manager.account().fallback_prekey();
    let extra = (
        signed_prekey(manager),
        OneTimePreKey {
            id: fallback.id(),
            key: fallback.public_key(),
        },
    );
    upload_batches(conn, &keys, Some(extra)).await
}

/// Generates and uploads one-time prekeys up to the target when the relay
/// holds `remaining`; returns (uploaded, stored) if it uploaded any.
async fn top_up(
    manager: &mut Manager,
    conn: &mut Conn,
    config: &ClientConfig,
    remaining: u32,
) -> Result<Option<(u32, u32)>, ClientError> {
    if remaining >= config.one_time_prekeys {
        return Ok(None);
    }
    let want = usize::try_from(config.one_time_prekeys - remaining).unwrap_or(usize::MAX);
    // Keys handed out but never used stay in the account; the account caps
    // how many it holds.
    let room = MAX_ONE_TIME_PREKEYS.saturating_sub(manager.account().one_time_prekey_count());
    let count = want.min(room);
    if count == 0 {
        tracing::warn!("the account holds the most one-time prekeys it can; none uploaded");
        return Ok(None);
    }
    // The private keys are durable before the public ones are published.
    let keys = manager.generate_one_time_prekeys(count, &mut OsRng)?;
    let stored = upload_batches(conn, &keys, None).await?;
    Ok(Some((u32::try_from(count).unwrap_or(u32::MAX), stored)))
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
    events: mpsc::UnboundedSender<Event>,
    waiting: VecDeque<Job>,
    counts: Counts,
    /// The connection that never logs in, for submissions and fetches.
    courier: Courier,
    /// Whether the stored queue is still being delivered (from login to
    /// `QueueEmpty`).
    backlog: bool,
    /// Delivery receipts held while the backlog drains, by sender user,
    /// sent as one receipt per user (and per [`RECEIPT_BATCH`] ids) at
    /// `QueueEmpty`.
    receipts_due: BTreeMap<String, Vec<MessageId>>,
    /// Pushes held in this connection (their sender's identity changed),
    /// with the sender: processed again if its identity is accepted.
    held: Vec<(Address, Push)>,
}

impl Engine {
    pub(crate) fn open(
        config: ClientConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Self, ClientError> {
        let manager = open_manager(&config, None)?;
        let courier = Courier::new(&config.relay_url, config.request_timeout);
        Ok(Self {
            manager,
            config,
            commands,
            events,
            waiting: VecDeque::new(),
            counts: Counts::default(),
            courier,
            backlog: false,
            receipts_due: BTreeMap::new(),
            held: Vec::new(),
        })
    }

    pub(crate) fn address(&self) -> &Address {
        self.manager.local_address()
    }

    fn emit(&self, event: Event) {
        // The application may have dropped its handle: nothing to do then.
        let _ = self.events.send(event);
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
                            self.emit(Event::Stopped { error: None });
                            if let Some(reply) = reply {
                                let _ = reply.send(());
                            }
                            return;
                        }
                        Outcome::Fatal(e) => {
                            conn.close().await;
                            return self.stop(e);
                        }
                        Outcome::Lost(e) => e,
                    }
                }
                Err(e) if e.is_fatal() => return self.stop(e),
                Err(e) => e,
            };
            failures += 1;
            if failures > self.config.backoff.max_attempts {
                return self.stop(ClientError::Connection(format!(
                    "gave up after {} attempts: {error}",
                    failures - 1
                )));
            }
            let delay = self.config.backoff.delay(failures, OsRng.next_u32());
            tracing::info!(%error, ?delay, "disconnected; reconnecting");
            self.emit(Event::Disconnected {
                reason: error.to_string(),
                retry_in: delay,
            });
            if let Some(reply) = self.wait(delay).await {
                self.emit(Event::Stopped { error: None });
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
                return;
            }
        }
    }

    fn stop(&mut self, error: ClientError) {
        tracing::warn!(%error, "client stopped");
        self.emit(Event::Stopped {
            error: Some(error.to_string()),
        });
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
                    Some(command @ (Command::Send { .. } | Command::Read { .. })) => {
                        self.waiting.push_back(Job::Command(command));
                    }
                    Some(command) => self.local_command(command),
                },
            }
        }
    }

    async fn connect(&mut self) -> Result<Conn, ClientError> {
        let mut conn = Conn::connect(
            &self.config.relay_url,
            self.config.request_timeout,
            Role::Account,
        )
        .await?;
        let challenge = challenge(&mut conn).await?;
        let login = Login::sign(
            self.manager.account().identity(),
            &challenge.server_name,
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
        // The relay offers every unacknowledged message again.
        self.held.clear();
        self.emit(Event::Connected);
        self.maintain_prekeys(&mut conn, info).await?;
        Ok(conn)
    }

    /// At login: rotate an old signed prekey, restore prekeys the relay
    /// lacks, top up one-time prekeys below the low mark.
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
        let mut rotated = false;
        if age > max_age {
            self.manager.rotate_signed_prekey(now, grace, &mut OsRng)?;
            rotated = true;
        }
        if !info.has_signed_prekey {
            let stored = publish_all(&mut self.manager, conn, &self.config).await?;
            self.emit(Event::PreKeysPublished {
                uploaded: stored.saturating_sub(info.one_time_prekeys),
                stored,
                signed_prekey_rotated: rotated,
            });
            return Ok(());
        }
        if rotated {
            upload(
                conn,
                UploadPreKeys {
                    signed_prekey: Some(signed_prekey(&self.manager)),
                    fallback_prekey: None,
                    one_time_prekeys: Vec::new(),
                },
            )
            .await?;
        }
        let mut uploaded = 0;
        let mut stored = info.one_time_prekeys;
        if info.one_time_prekeys < self.config.prekeys_low {
            if let Some((u, s)) =
                top_up(&mut self.manager, conn, &self.config, info.one_time_prekeys).await?
            {
                uploaded = u;
                stored = s;
            }
        }
        if rotated || uploaded > 0 {
            self.emit(Event::PreKeysPublished {
                uploaded,
                stored,
                signed_prekey_rotated: rotated,
            });
        }
        Ok(())
    }

    async fn serve(&mut self, conn: &mut Conn) -> Outcome {
        while let Some(job) = self.waiting.pop_front() {
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
                    Some(Command::AcceptIdentity { address, identity, reply }) => {
                        if let Some(outcome) =
                            self.accept_identity(conn, &address, &identity, reply).await
                        {
                            return outcome;
                        }
                    }
                    Some(command) => {
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
                });
                self.flush_receipts().await
            }
            ServerFrame::PreKeysLow { remaining } => {
                match top_up(&mut self.manager, conn, &self.config, remaining).await {
                    Ok(Some((uploaded, stored))) => {
                        self.emit(Event::PreKeysPublished {
                            uploaded,
                            stored,
                            signed_prekey_rotated: false,
                        });
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            ServerFrame::MessagesExpired { count } => {
                self.emit(Event::MessagesExpired { count });
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
    ///    transaction.
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
        self.manager.store().hold()?;
        let opened = self.manager.open_envelope(&push.envelope, &mut OsRng);
        let held = self.manager.store().release()?;
        let now = now_ms();
        let mut writes = Writes::default();
        writes.seen_envelope(&digest, now);
        let received = match opened {
            Ok(received) => received,
            Err(SessionError::Store(e)) => return Err(e.into()),
            Err(SessionError::UntrustedIdentity(conflict)) => {
                let local = self.manager.local_address().user_id();
                // Over the identity keys read as user keys, as
                // `SessionManager::safety_number` does for now.
                let as_user_key = |k: &IdentityKey| UserKey::from_bytes(&k.to_bytes()).ok();
                let safety_number = as_user_key(&self.manager.account().identity().public_key())
                    .zip(as_user_key(&conflict.received))
                    .map(|(mine, theirs)| {
                        SafetyNumber::new(local, &mine, conflict.address.user_id(), &theirs)
                    });
                self.emit(Event::Held {
                    relay_id: push.message_id,
                    sender: conflict.address.clone(),
                    identity: conflict.received,
                    safety_number: safety_number
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    reason: format!(
                        "the identity of {} changed; verify it before reading its messages",
                        conflict.address
                    ),
                });
                if !self
                    .held
                    .iter()
                    .any(|(_, p)| p.message_id == push.message_id)
                {
                    self.held.push((conflict.address.clone(), push));
                }
                return Ok(());
            }
            Err(e) => {
                // It cannot be processed, now or later. The session may
                // have advanced past it (content that did not decode).
                self.manager.store().commit_with(held, writes)?;
                self.emit(Event::Dropped {
                    relay_id: push.message_id,
                    reason: e.to_string(),
                });
                return self.ack(conn, push.message_id).await;
            }
        };
        let content = &received.content;
        let key = content_key(&received.sender, content.message_id());
        let mut event = None;
        let mut receipt_to = None;
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
                        relay_id: push.message_id,
                        first_contact: received.first_contact,
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
                    }
                    event = Some(Event::Receipt {
                        from: received.sender.clone(),
                        kind,
                        message_ids: ids,
                    });
                }
                // Other kinds are recorded as processed and not shown.
                _ => {}
            }
        }
        self.manager.store().commit_with(held, writes)?;
        if let Some(event) = event {
            self.emit(event);
        }
        self.ack(conn, push.message_id).await?;
        if let Some((user, id)) = receipt_to.filter(|_| self.config.delivery_receipts) {
            if self.backlog {
                self.receipts_due.entry(user).or_default().push(id);
            } else {
                self.send_receipt(&user, ReceiptKind::Delivered, &[id])
                    .await?;
            }
        }
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

    /// Errors from sealing: the reply was already sent; a lost connection
    /// ends the connected period.
    fn transport_outcome(error: ClientError) -> Option<Outcome> {
        match error {
            ClientError::Connection(_) | ClientError::Timeout(_) => Some(Outcome::Lost(error)),
            _ => None,
        }
    }

    /// Accepts a new identity for `address`, then processes the messages
    /// from it held in this connection. The reply (the number released)
    /// is sent once the identity is stored; a failure while processing
    /// ends the connection, and the relay offers the rest again.
    async fn accept_identity(
        &mut self,
        conn: &mut Conn,
        address: &Address,
        identity: &IdentityKey,
        reply: oneshot::Sender<Result<usize, ClientError>>,
    ) -> Option<Outcome> {
        if let Err(e) = self.manager.accept_identity(address, identity) {
            let _ = reply.send(Err(e.into()));
            return None;
        }
        let (released, kept) = std::mem::take(&mut self.held)
            .into_iter()
            .partition::<Vec<_>, _>(|(sender, _)| sender == address);
        self.held = kept;
        let _ = reply.send(Ok(released.len()));
        for (_, push) in released {
            if let Err(e) = self.receive(conn, push).await {
                return Some(Self::outcome(e));
            }
        }
        None
    }

    /// Commands that need no connection.
    fn local_command(&mut self, command: Command) {
        match command {
            Command::AcceptIdentity {
                address,
                identity,
                reply,
            } => {
                // Disconnected: held messages come again at the next login.
                let result = self.manager.accept_identity(&address, &identity);
                let _ = reply.send(result.map(|()| 0).map_err(Into::into));
            }
            Command::SafetyNumbers { peer, reply } => {
                let _ = reply.send(self.safety_numbers(&peer));
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
        }
    }

    fn safety_numbers(&self, peer: &str) -> Result<Vec<(Address, String)>, ClientError> {
        let mut out = Vec::new();
        for address in self.manager.fan_out(peer)? {
            if address.user_id() == peer {
                let number = self.manager.safety_number(&address)?;
                out.push((address, number.as_str().to_owned()));
            }
        }
        if out.is_empty() {
            return Err(ClientError::UnknownPeer(peer.into()));
        }
        Ok(out)
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

    /// The bundles are fetched over the anonymous connection, so that the
    /// relay does not learn which device asked for whose bundles.
    async fn seal_inner(
        &mut self,
        peer: &str,
        kind: ContentKind,
        body: Vec<u8>,
    ) -> Result<(MessageId, Vec<OutgoingEnvelope>), ClientError> {
        let fetch = FetchBundles::user(peer)?;
        if peer == self.manager.local_address().user_id() {
            return Err(ClientError::Invalid("cannot send to yourself".into()));
        }
        let known = self
            .manager
            .fan_out(peer)?
            .iter()
            .any(|a| a.user_id() == peer);
        if !known {
            let bundles = match self.courier.fetch_bundles(fetch).await? {
                Ok(Reply::Bundles(b)) => b.bundles,
                Ok(other) => return Err(unexpected(&other)),
                Err(e) if matches!(e.code, ErrorCode::UnknownDevice | ErrorCode::NoPreKeys) => {
                    return Err(ClientError::UnknownPeer(peer.into()))
                }
                Err(e) => return Err(ClientError::Relay(e)),
            };
            if bundles.is_empty() {
                return Err(ClientError::UnknownPeer(peer.into()));
            }
            for bundle in bundles {
                let address = Address::new(peer, bundle.device_id)?;
                self.manager
                    .process_bundle(&address, &bundle.bundle, &mut OsRng)?;
            }
        }
        let content = Content::new_with_rng(kind, body, now_ms(), &mut OsRng)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let envelopes = self.manager.seal_for_user(peer, &content, &mut OsRng)?;
        Ok((*content.message_id(), envelopes))
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
