//! One WebSocket connection: reading frames, answering requests, pushing
//! the mailbox of the device logged in on it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{FuturesUnordered, SplitSink};
use futures_util::{SinkExt, Stream, StreamExt};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tacit::{Address, IdentityKey};
use tacit_relay_proto::{
    login_transcript, register_transcript, Bundles, Challenge, ClientFrame, DeviceListBytes,
    EnvelopeKind, ErrorCode, ErrorReply, LoggedIn, Push, Reply, Request, Response, ServerFrame,
    CHALLENGE_LEN,
};
use tokio::sync::{mpsc, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use crate::limits::{Bucket, Requester};
use crate::listener::ip_key;
use crate::metrics::inc;
use crate::online::Signal;
use crate::store::{Command, Outcome, StoredMessage};
use crate::within::within;
use crate::{now_ms, Shared};

/// Requests whose answers may be pending at once on one connection.
const MAX_IN_FLIGHT: usize = 128;
/// Frames waiting to be written. A peer that stops reading holds at most
/// these, for at most the write timeout.
const OUTBOUND_CAPACITY: usize = 256;
/// Envelope bytes of the pushes queued for one connection, at most: the
/// mailbox is read no further ahead of the socket than this (a push larger
/// than the whole budget waits for the queue to empty).
const PUSH_BUDGET: u32 = 4 * 1024 * 1024;
/// Frames written with one flush, at most.
const COALESCE: usize = 64;
/// Messages read from the mailbox at a time.
const PAGE: usize = 64;
/// Failed logins allowed on one connection.
const MAX_FAILED_LOGINS: u32 = 5;

/// WebSocket close codes.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

type Answer = Pin<Box<dyn Future<Output = ServerFrame> + Send + Sync>>;

/// What the writing half sends.
pub(crate) enum Outbound {
    Frame(ServerFrame),
    Ping,
    Close(u16, &'static str),
}

/// What, from outside the connection, ended it, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    /// The relay is shutting down.
    Shutdown,
    /// The writer gave up on the peer.
    PeerGone,
    /// Another login replaced the device's connection, or the device was
    /// removed.
    Kicked,
}

impl Ending {
    /// What ends the connection when `self` completed: of events that
    /// coincide, the first in order of precedence, given whether the relay
    /// is `shutting_down` now and whether the writer is `writer_gone`.
    fn first(self, shutting_down: bool, writer_gone: bool) -> Self {
        let now = if shutting_down {
            Self::Shutdown
        } else if writer_gone {
            Self::PeerGone
        } else {
            Self::Kicked
        };
        self.min(now)
    }
}

/// Why the reading loop ended.
enum End {
    PeerClosed,
    Close(u16, &'static str),
}

/// The device logged in on a connection.
struct Session {
    address: Address,
    identity_key: IdentityKey,
    signal: Arc<Signal>,
    delivery: JoinHandle<()>,
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    out: mpsc::Sender<Outbound>,
    challenge: Option<([u8; CHALLENGE_LEN], Instant)>,
    session: Option<Session>,
    bucket: Bucket,
    /// When the connection is closed if it has not logged in by then.
    login_deadline: tokio::time::Instant,
    bad_frames: u32,
    failed_logins: u32,
    in_flight: FuturesUnordered<Answer>,
    /// What bounds the pushes queued (see [`PUSH_BUDGET`]), when the
    /// transport's writer gives it back.
    push_budget: Option<Arc<Semaphore>>,
}

/// Counts open connections for a graceful shutdown.
struct Guard(Arc<Shared>);

impl Guard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.connections.send_modify(|n| *n += 1);
        inc(&shared.metrics.connections_total);
        inc(&shared.metrics.connections_open);
        Self(Arc::clone(shared))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.connections.send_modify(|n| *n = n.saturating_sub(1));
        self.0
            .metrics
            .connections_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves one WebSocket connection until it closes.
pub(crate) async fn run(shared: Arc<Shared>, socket: WebSocket, peer: SocketAddr) {
    let (sink, stream) = socket.split();
    let (out, out_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let write_timeout = shared.config.write_timeout;
    let budget = Arc::new(Semaphore::new(PUSH_BUDGET as usize));
    let writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        write_timeout,
        Arc::clone(&shared.metrics),
        Arc::clone(&budget),
    ));
    let abort = writer.abort_handle();
    let id = serve_with_budget(shared, stream, out, peer, Some(budget)).await;
    if tokio::time::timeout(write_timeout, writer).await.is_err() {
        // Its writes time out by themselves; this is a backstop.
        abort.abort();
        tracing::debug!(id, "writer did not finish");
    }
    tracing::debug!(id, "connection closed");
}

/// Serves one connection, reading its messages from `stream` and queueing
/// what to send on `out`, until it closes; returns the connection's number.
/// The transport is the caller's: [`run`] for WebSocket.
#[cfg(feature = "fuzzing")]
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    out: mpsc::Sender<Outbound>,
    peer: SocketAddr,
) -> u64
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    serve_with_budget(shared, stream, out, peer, None).await
}

/// `serve`, with pushes bounded by `push_budget` (whose permits the
/// writer gives back as it writes).
async fn serve_with_budget<S>(
    shared: Arc<Shared>,
    stream: S,
    out: mpsc::Sender<Outbound>,
    peer: SocketAddr,
    push_budget: Option<Arc<Semaphore>>,
) -> u64
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let _guard = Guard::new(&shared);
    let id = shared
        .next_connection
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut conn = Conn {
        bucket: Bucket::full(shared.config.unauthenticated_rate),
        login_deadline: tokio::time::Instant::now() + shared.config.login_timeout,
        shared,
        id,
        peer,
        out,
        challenge: None,
        session: None,
        bad_frames: 0,
        failed_logins: 0,
        in_flight: FuturesUnordered::new(),
        push_budget,
    };
    tracing::debug!(id, %peer, "connection opened");
    let end = if *conn.shared.shutdown.borrow() {
        conn.error(0, ErrorCode::ShuttingDown, "the relay is shutting down")
            .await;
        End::Close(CLOSE_GOING_AWAY, "shutting down")
    } else {
        conn.read_loop(stream).await
    };
    conn.finish(end).await;
    id
}

/// Writes what the connection queues. Every write waits at most `timeout`
/// for the peer: a peer that stopped reading is dropped, and with it what
/// was queued for it (the queue's senders then fail at once).
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    push_budget: Arc<Semaphore>,
) {
    // Each write sets its deadline only if it has to wait for the peer
    // (`within`): nearly all of them go into the transport's buffer at once.
    let timed = |result: Option<Result<(), axum::Error>>| match result {
        Some(Ok(())) => true,
        Some(Err(_)) => false,
        None => {
            inc(&metrics.write_timeouts_total);
            tracing::debug!("write timed out: the peer stopped reading");
            false
        }
    };
    // Frames waiting are written together: each is only buffered, and one
    // flush per round puts them on the socket (one write instead of one per
    // frame).
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            let mut cost = 0;
            let message = match item {
                Outbound::Frame(frame) => {
                    if let ServerFrame::Push(p) = &frame {
                        cost = push_cost(p.envelope.len());
                    }
                    Message::Binary(frame.into_encoded().into())
                }
                Outbound::Ping => Message::Ping(Default::default()),
                Outbound::Close(code, reason) => {
                    let close = Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    }));
                    if timed(within(timeout, sink.send(close)).await) {
                        let _ = tokio::time::timeout(timeout, sink.close()).await;
                    }
                    return;
                }
            };
            if !timed(within(timeout, sink.feed(message)).await) {
                return;
            }
            push_budget.add_permits(cost as usize);
            written += 1;
            if written < COALESCE {
                next = rx.try_recv().ok();
            }
        }
        if !timed(within(timeout, sink.flush()).await) {
            return;
        }
    }
    let _ = tokio::time::timeout(timeout, sink.close()).await;
}

impl Conn {
    /// Queues `item` for the writer, waiting at most the write timeout
    /// for room; false if it could not.
    async fn send(&self, item: Outbound) -> bool {
        match queue_now(&self.out, item) {
            Ok(queued) => queued,
            Err(item) => matches!(
                within(self.shared.config.write_timeout, self.out.send(item)).await,
                Some(Ok(()))
            ),
        }
    }

    async fn send_frame(&self, frame: ServerFrame) -> bool {
        if let ServerFrame::Response(Response { result: Err(e), .. }) = &frame {
            self.shared.metrics.record_error(e.code);
        }
        self.send(Outbound::Frame(frame)).await
    }

    async fn respond(&self, request_id: u64, result: Outcome<Reply>) -> bool {
        self.send_frame(ServerFrame::Response(Response { request_id, result }))
            .await
    }

    async fn error(&self, request_id: u64, code: ErrorCode, message: &str) -> bool {
        self.respond(request_id, Err(ErrorReply::new(code, message)))
            .await
    }

    async fn read_loop<S>(&mut self, mut stream: S) -> End
    where
        S: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let interval = self.shared.config.ping_interval;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut last_heard = Instant::now();
        let shutdown = self.shared.shutdown.clone();
        let login = tokio::time::sleep_until(self.login_deadline);
        tokio::pin!(login);
        let out = self.out.clone();
        // What ends the connection from outside (shutdown, the writer
        // giving up, a kick) is waited for by futures made once and polled
        // only when woken: made anew on every turn of the loop, each
        // registered and unregistered its waker, and was polled, for every
        // frame read and every answer sent.
        let mut ends: FuturesUnordered<Pin<Box<dyn Future<Output = Ending> + Send>>> =
            FuturesUnordered::new();
        let mut shutdown_rx = shutdown.clone();
        ends.push(Box::pin(async move {
            let _ = shutdown_rx.wait_for(|s| *s).await;
            Ending::Shutdown
        }));
        ends.push(Box::pin(async move {
            out.closed().await;
            Ending::PeerGone
        }));
        // The signal of the device logged in, watched since its login.
        let mut kicked: Option<Arc<Signal>> = None;
        loop {
            if kicked.is_none() {
                if let Some(session) = &self.session {
                    let signal = Arc::clone(&session.signal);
                    kicked = Some(Arc::clone(&signal));
                    ends.push(Box::pin(async move {
                        signal.kicked.notified().await;
                        Ending::Kicked
                    }));
                }
            }
            if login.deadline() != self.login_deadline {
                login.as_mut().reset(self.login_deadline);
            }
            tokio::select! {
                biased;
                Some(ending) = ends.next() => {
                    // Of events that coincide, the first in order of
                    // precedence ends the connection.
                    match ending.first(*shutdown.borrow(), self.out.is_closed()) {
                        Ending::Shutdown => return End::Close(CLOSE_GOING_AWAY, "shutting down"),
                        // The writer gave up on the peer (a write timed out).
                        Ending::PeerGone => return End::PeerClosed,
                        Ending::Kicked => {}
                    }
                    if kicked.as_ref().is_some_and(|s| s.was_removed()) {
                        self.error(0, ErrorCode::DeviceRemoved, "this device was removed from its user's device list").await;
                        return End::Close(CLOSE_POLICY, "device removed");
                    }
                    self.error(0, ErrorCode::Superseded, "another connection logged in as this device").await;
                    return End::Close(CLOSE_POLICY, "superseded");
                }
                () = &mut login, if self.session.is_none() => {
                    inc(&self.shared.metrics.login_timeouts_total);
                    self.error(0, ErrorCode::NotAuthenticated, "no login or request in time").await;
                    return End::Close(CLOSE_POLICY, "login timeout");
                }
                Some(frame) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    if !self.send_frame(frame).await {
                        return End::PeerClosed;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > 2 * interval {
                        return End::Close(CLOSE_POLICY, "keepalive timeout");
                    }
                    if !self.send(Outbound::Ping).await {
                        return End::PeerClosed;
                    }
                }
                message = stream.next(), if self.in_flight.len() < MAX_IN_FLIGHT => {
                    last_heard = Instant::now();
                    let flow = match message {
                        None => return End::PeerClosed,
                        Some(Err(e)) => {
                            let text = e.to_string();
                            if text.contains("Space limit exceeded") || text.contains("too long") {
                                self.error(0, ErrorCode::FrameTooLarge, "frame exceeds the relay's limit").await;
                                return End::Close(CLOSE_TOO_BIG, "frame too large");
                            }
                            tracing::debug!(id = self.id, error = %text, "transport error");
                            self.error(0, ErrorCode::MalformedFrame, "WebSocket protocol error").await;
                            return End::Close(CLOSE_PROTOCOL, "protocol error");
                        }
                        Some(Ok(Message::Binary(bytes))) => self.frame(&bytes).await,
                        Some(Ok(Message::Text(_))) => {
                            self.bad_frame(0, ErrorCode::MalformedFrame, "frames are binary WebSocket messages").await
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                        Some(Ok(Message::Close(_))) => return End::PeerClosed,
                    };
                    if let Err(end) = flow {
                        return end;
                    }
                }
            }
        }
    }

    /// Counts a refused frame; too many close the connection.
    async fn bad_frame(
        &mut self,
        request_id: u64,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), End> {
        self.bad_frames += 1;
        if !self.error(request_id, code, message).await {
            return Err(End::PeerClosed);
        }
        if self.bad_frames > self.shared.config.max_bad_frames {
            self.error(0, ErrorCode::TooManyErrors, "too many refused frames")
                .await;
            return Err(End::Close(CLOSE_POLICY, "too many errors"));
        }
        Ok(())
    }

    async fn frame(&mut self, bytes: &[u8]) -> Result<(), End> {
        inc(&self.shared.metrics.frames_in_total);
        let max = self.shared.config.max_frame_len;
        if bytes.len() > max {
            self.error(
                0,
                ErrorCode::FrameTooLarge,
                &format!("frame of {} bytes exceeds the limit of {max}", bytes.len()),
            )
            .await;
            return Err(End::Close(CLOSE_TOO_BIG, "frame too large"));
        }
        let frame = match ClientFrame::decode_with_limit(bytes, max) {
            Ok(frame) => frame,
            Err(e) => {
                return self
                    .bad_frame(e.request_id().unwrap_or(0), e.code(), &e.to_string())
                    .await;
            }
        };
        let request_id = frame.request_id;
        if let Err(wait) = self.rate_limit(bytes.len()) {
            let mut reply = ErrorReply::new(ErrorCode::RateLimited, "too many requests");
            reply.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
            return if self.respond(request_id, Err(reply)).await {
                Ok(())
            } else {
                Err(End::PeerClosed)
            };
        }
        self.request(request_id, frame.request).await
    }

    /// Counts a request of `len` bytes: per connection; after login also
    /// per account (the user id, across its devices and connections) in
    /// bytes; before login per peer network, in requests and in bytes.
    fn rate_limit(&mut self, len: usize) -> Result<(), Duration> {
        let config = &self.shared.config;
        let now = Instant::now();
        if let Some(session) = &self.session {
            self.bucket.take(config.authenticated_rate, now)?;
            self.shared
                .per_account_bytes
                .take_borrowed(session.address.user_id(), len)
        } else {
            self.bucket.take(config.unauthenticated_rate, now)?;
            self.shared.per_ip.take(self.peer.ip())?;
            self.shared.per_ip_bytes.take_n(self.peer.ip(), len)
        }
    }

    async fn request(&mut self, request_id: u64, request: Request) -> Result<(), End> {
        let kind = request.name();
        self.shared
            .metrics
            .record_request(kind, self.session.is_some());
        let needs_login = matches!(
            request,
            Request::UploadPreKeys(_)
                | Request::Ack(_)
                | Request::SetDeliveryToken(_)
                | Request::SetPushEndpoint(_)
                | Request::PublishDeviceList(_)
                | Request::AllocateAttachment(_)
        );
        let anonymous = matches!(
            request,
            Request::Submit(_)
                | Request::SubmitGroup(_)
                | Request::FetchBundles(_)
                | Request::FetchDeviceList(_)
                | Request::LinkPut(_)
                | Request::LinkTake(_)
        );
        if anonymous && self.session.is_none() {
            self.login_deadline = tokio::time::Instant::now() + self.shared.config.login_timeout;
        }
        if needs_login && self.session.is_none() {
            return self
                .bad_frame(
                    request_id,
                    ErrorCode::NotAuthenticated,
                    &format!("{kind} needs a logged-in connection"),
                )
                .await;
        }
        match request {
            Request::GetChallenge => {
                let mut challenge = [0u8; CHALLENGE_LEN];
                OsRng.fill_bytes(&mut challenge);
                self.challenge = Some((challenge, Instant::now()));
                let reply = Reply::Challenge(Challenge {
                    challenge,
                    server_name: self.shared.config.server_name.clone(),
                    server_time_ms: now_ms(),
                });
                self.answer(request_id, Ok(reply)).await
            }
            Request::Register(_) | Request::Login(_) if self.session.is_some() => {
                self.bad_frame(
                    request_id,
                    ErrorCode::AlreadyAuthenticated,
                    "this connection is logged in",
                )
                .await
            }
            Request::Register(r) => {
                let result = self
                    .authenticate(&r.address, r.timestamp_ms, |name, challenge| {
                        let t = register_transcript(
                            name,
                            challenge,
                            r.timestamp_ms,
                            &r.address,
                            &r.identity_key,
                        );
                        r.identity_key.verify(&t, &r.signature).is_ok()
                    })
                    .await;
                let result = result.and_then(|()| self.throttle_registration());
                let result = result.and_then(|()| {
                    let list = registration_list(&r)?;
                    Ok((list, r.device_list.clone().into_bytes()))
                });
                let result = match result {
                    Ok((device_list, list_bytes)) => {
                        let (address, identity_key) = (r.address.clone(), r.identity_key);
                        match self
                            .shared
                            .writer
                            .call(|reply| Command::Register {
                                address,
                                identity_key,
                                device_list: Box::new(device_list),
                                list_bytes,
                                now_ms: now_ms(),
                                reply,
                            })
                            .await
                        {
                            Ok(created) => {
                                self.shared
                                    .readers
                                    .device(&r.address)
                                    .await
                                    .and_then(|info| {
                                        info.map(|i| (created, i)).ok_or_else(|| {
                                            ErrorReply::new(ErrorCode::Internal, "device vanished")
                                        })
                                    })
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                self.logged_in(request_id, r.address, result).await
            }
            Request::Login(l) => {
                let device = self.shared.readers.device(&l.address).await;
                let result = match device {
                    Err(e) => Err(e),
                    Ok(device) => {
                        match device {
                            None => {
                                // The attempt still spends the challenge.
                                self.challenge = None;
                                Err(ErrorReply::new(ErrorCode::UnknownDevice, "no such device"))
                            }
                            Some(info) => {
                                let key = info.identity_key;
                                self.authenticate(&l.address, l.timestamp_ms, |name, challenge| {
                                    let t = login_transcript(
                                        name,
                                        challenge,
                                        l.timestamp_ms,
                                        &l.address,
                                    );
                                    key.verify(&t, &l.signature).is_ok()
                                })
                                .await
                                .map(|()| (false, info))
                            }
                        }
                    }
                };
                self.logged_in(request_id, l.address, result).await
            }
            Request::UploadPreKeys(upload) => {
                let Some(session) = &self.session else {
                    return Ok(());
                };
                if let Some(spk) = &upload.signed_prekey {
                    if session
                        .identity_key
                        .verify_signed_prekey(&spk.key, &spk.signature)
                        .is_err()
                    {
                        return self
                            .answer(
                                request_id,
                                Err(ErrorReply::new(
                                    ErrorCode::InvalidPreKeys,
                                    "the signed prekey's signature does not verify",
                                )),
                            )
                            .await;
                    }
                }
                if let Err(refusal) = crate::kem::verify_upload(&session.identity_key, &upload) {
                    return self.answer(request_id, Err(refusal)).await;
                }
                let address = session.address.clone();
                let max_one_time = self.shared.config.max_one_time_prekeys;
                let max_one_time_kem = self.shared.config.max_one_time_kem_prekeys;
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::UploadPreKeys {
                        address,
                        upload,
                        max_one_time,
                        max_one_time_kem,
                        reply,
                    })
                    .await;
                self.later(request_id, async move {
                    answer.await.map(|counts| Reply::PreKeysStored {
                        one_time_prekeys: counts.one_time,
                        one_time_kem_prekeys: counts.one_time_kem,
                    })
                });
                Ok(())
            }
            Request::FetchBundles(f) => {
                let user_id = f.user_id().to_owned();
                let device_id = f.device_id();
                let requester = match &self.session {
                    Some(s) => Requester::Account(s.address.user_id().to_owned()),
                    None => Requester::Network(ip_key(self.peer.ip())),
                };
                if let Err(wait) = self.shared.claims_per_requester.take_key(requester, 1) {
                    let mut reply =
                        ErrorReply::new(ErrorCode::RateLimited, "too many bundle claims");
                    reply.retry_after_ms =
                        Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
                    return self.answer(request_id, Err(reply)).await;
                }
                // Past the target's budget, bundles carry the fallback
                // prekeys: nobody can drain a device's one-time prekeys.
                let spend_one_time = self
                    .shared
                    .one_time_claims_per_target
                    .take_key(user_id.clone(), 1)
                    .is_ok();
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::ClaimBundles {
                        user_id,
                        device_id,
                        spend_one_time,
                        reply,
                    })
                    .await;
                let metrics = Arc::clone(&self.shared.metrics);
                self.later(request_id, async move {
                    let (list, bundles) = answer.await?;
                    metrics
                        .bundles_total
                        .fetch_add(bundles.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    Ok(Reply::Bundles(Bundles {
                        device_list: stored_list(list)?,
                        bundles: bundles
                            .into_iter()
                            .map(|(device_id, bundle)| tacit_relay_proto::DeviceBundle {
                                device_id,
                                bundle,
                            })
                            .collect(),
                    }))
                });
                Ok(())
            }
            Request::Submit(s) => {
                // Nothing about the submitter is stored or logged.
                let token_hash = s.delivery_token.as_ref().map(|t| token_hash(t.as_bytes()));
                let recipient = s.recipient.clone();
                let sender = self.sender();
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::Submit {
                        recipient,
                        envelope: s.into_envelope(),
                        token_hash,
                        sender,
                        now_ms: now_ms(),
                        reply,
                    })
                    .await;
                self.later(request_id, async move {
                    answer
                        .await
                        .map(|message_id| Reply::Submitted { message_id })
                });
                Ok(())
            }
            Request::SubmitGroup(s) => {
                // As for `Submit`: nothing about the submitter is kept.
                let sender = self.sender();
                let (shared, copies) = crate::group::copies(s);
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::SubmitGroup {
                        shared,
                        copies,
                        sender,
                        now_ms: now_ms(),
                        reply,
                    })
                    .await;
                self.later(request_id, async move {
                    answer.await.map(|queued| Reply::SubmittedGroup { queued })
                });
                Ok(())
            }
            Request::Ack(a) => {
                let Some(session) = &self.session else {
                    return Ok(());
                };
                let address = session.address.clone();
                let ids = a.message_ids().to_vec();
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::Ack {
                        address,
                        ids,
                        reply,
                    })
                    .await;
                self.later(request_id, async move {
                    answer.await.map(|removed| Reply::Acked { removed })
                });
                Ok(())
            }
            Request::SetDeliveryToken(t) => {
                let Some(session) = &self.session else {
                    return Ok(());
                };
                let address = session.address.clone();
                let token_hash = t.token.as_ref().map(|t| token_hash(t.as_bytes()));
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::SetToken {
                        address,
                        token_hash,
                        reply,
                    })
                    .await;
                self.later(request_id, async move {
                    answer.await.map(|()| Reply::DeliveryTokenSet)
                });
                Ok(())
            }
            Request::SetPushEndpoint(p) => {
                let Some(session) = &self.session else {
                    return Ok(());
                };
                let endpoint = p.url;
                if let Some(url) = &endpoint {
                    if let Err(why) = crate::push::check_endpoint(url, self.shared.push.settings())
                    {
                        return self
                            .bad_frame(request_id, ErrorCode::InvalidRequest, why)
                            .await;
                    }
                }
                let address = session.address.clone();
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::SetPush {
                        address,
                        endpoint,
                        reply,
                    })
                    .await;
                self.later(request_id, async move {
                    answer.await.map(|()| Reply::PushEndpointSet)
                });
                Ok(())
            }
            Request::PublishDeviceList(p) => {
                let Some(session) = &self.session else {
                    return Ok(());
                };
                let publisher = session.address.clone();
                let device_list = match p.device_list.verify() {
                    Ok(list) if list.user_id() == publisher.user_id() => list,
                    Ok(_) => {
                        return self
                            .answer(
                                request_id,
                                Err(ErrorReply::new(
                                    ErrorCode::InvalidDeviceList,
                                    "the list names another user id than the logged-in device's",
                                )),
                            )
                            .await;
                    }
                    Err(e) => {
                        return self.answer(request_id, Err(invalid_list(&e))).await;
                    }
                };
                let list_bytes = p.device_list.into_bytes();
                let answer = self
                    .shared
                    .writer
                    .queue(|reply| Command::PublishList {
                        publisher,
                        device_list: Box::new(device_list),
                        list_bytes,
                        now_ms: now_ms(),
                        reply,
                    })
                    .await;
                self.later(request_id, async move {
                    answer
                        .await
                        .map(|version| Reply::DeviceListStored { version })
                });
                Ok(())
            }
            Request::FetchDeviceList(f) => {
                let result = match self.shared.readers.device_list(f.user_id()).await {
                    Ok(Some(list)) => stored_list(list).map(Reply::DeviceList),
                    Ok(None) => Err(ErrorReply::new(
                        ErrorCode::UnknownUser,
                        "the user has no device list",
                    )),
                    Err(e) => Err(e),
                };
                self.answer(request_id, result).await
            }
            Request::LinkPut(l) => {
                let slot = l.slot;
                let result = self
                    .shared
                    .links
                    .put(slot, l.into_blob())
                    .await
                    .map(|()| Reply::LinkStored);
                self.answer(request_id, result).await
            }
            Request::LinkTake(l) => {
                let result = self.shared.links.take(&l.slot).await.map(Reply::LinkBlob);
                self.answer(request_id, result).await
            }
            Request::AllocateAttachment(a) => {
                let Some(session) = &self.session else {
                    return Ok(());
                };
                let owner = session.address.user_id().to_owned();
                let config = &self.shared.config;
                let limits = crate::attachments::Limits {
                    max_len: config.attachment_max_len,
                    quota: config.attachment_quota,
                    ttl: config.attachment_ttl,
                };
                let result = self
                    .shared
                    .blobs
                    .allocate(&owner, a.size, limits, now_ms())
                    .await
                    .map(
                        |(id, upload_token, expires_ms)| Reply::AttachmentAllocated {
                            id,
                            upload_token,
                            expires_ms,
                        },
                    );
                self.answer(request_id, result).await
            }
            // A request kind added to the protocol crate but not served here.
            _ => {
                self.bad_frame(request_id, ErrorCode::InvalidRequest, "unsupported request")
                    .await
            }
        }
    }

    /// Answers now.
    async fn answer(&self, request_id: u64, result: Outcome<Reply>) -> Result<(), End> {
        if self.respond(request_id, result).await {
            Ok(())
        } else {
            Err(End::PeerClosed)
        }
    }

    /// Answers when `answer` completes, without holding up the next
    /// request.
    fn later(
        &mut self,
        request_id: u64,
        answer: impl Future<Output = Outcome<Reply>> + Send + Sync + 'static,
    ) {
        self.in_flight.push(Box::pin(async move {
            ServerFrame::Response(Response {
                request_id,
                result: answer.await,
            })
        }));
    }

    /// Checks the challenge (taking it: one attempt per challenge), the
    /// timestamp and the signature.
    async fn authenticate(
        &mut self,
        address: &Address,
        timestamp_ms: u64,
        verify: impl FnOnce(&str, &[u8; CHALLENGE_LEN]) -> bool,
    ) -> Outcome<()> {
        let window = self.shared.config.login_window;
        let Some((challenge, issued)) = self.challenge.take() else {
            return Err(ErrorReply::new(
                ErrorCode::NoChallenge,
                "no live challenge on this connection; ask for one",
            ));
        };
        if issued.elapsed() > window {
            return Err(ErrorReply::new(
                ErrorCode::NoChallenge,
                "the challenge expired; ask for another",
            ));
        }
        let now = now_ms();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        if now.abs_diff(timestamp_ms) > window_ms {
            return Err(ErrorReply::new(
                ErrorCode::StaleTimestamp,
                format!(
                    "timestamp is {} ms from the relay's clock; at most {window_ms} allowed",
                    now.abs_diff(timestamp_ms)
                ),
            ));
        }
        if !verify(&self.shared.config.server_name, &challenge) {
            tracing::debug!(id = self.id, device = %address, "login refused: bad signature");
            return Err(ErrorReply::new(
                ErrorCode::BadSignature,
                "the signature does not verify",
            ));
        }
        Ok(())
    }

    /// Takes one registration from the peer network's budget, then from
    /// the relay's, or refuses with `RateLimited`.
    fn throttle_registration(&self) -> Outcome<()> {
        let shared = &self.shared;
        let taken = shared
            .registrations_per_ip
            .take(self.peer.ip())
            .and_then(|()| shared.registrations.take_key((), 1));
        taken.map_err(|wait| {
            let mut reply = ErrorReply::new(
                ErrorCode::RateLimited,
                "too many registrations; nothing was registered",
            );
            reply.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
            reply
        })
    }

    /// Finishes a login or registration: answers, and on success makes this
    /// the device's connection and starts pushing its mailbox.
    async fn logged_in(
        &mut self,
        request_id: u64,
        address: Address,
        result: Outcome<(bool, crate::store::DeviceInfo)>,
    ) -> Result<(), End> {
        let (registered, info) = match result {
            Ok(v) => v,
            Err(e) => {
                let closes = matches!(
                    e.code,
                    ErrorCode::BadSignature
                        | ErrorCode::StaleTimestamp
                        | ErrorCode::NoChallenge
                        | ErrorCode::UnknownDevice
                        | ErrorCode::AddressTaken
                        | ErrorCode::InvalidDeviceList
                        | ErrorCode::StaleDeviceList
                        | ErrorCode::UserKeyMismatch
                        | ErrorCode::NotOnDeviceList
                );
                if closes {
                    self.failed_logins += 1;
                }
                self.answer(request_id, Err(e)).await?;
                if self.failed_logins >= MAX_FAILED_LOGINS {
                    self.error(0, ErrorCode::TooManyErrors, "too many failed logins")
                        .await;
                    return Err(End::Close(CLOSE_POLICY, "too many failed logins"));
                }
                return Ok(());
            }
        };
        inc(&self.shared.metrics.logins_total);
        if registered {
            inc(&self.shared.metrics.registrations_total);
        }
        tracing::info!(id = self.id, registered, "logged in");
        tracing::debug!(id = self.id, device = %address, "logged in as");
        self.bucket = Bucket::full(self.shared.config.authenticated_rate);
        let signal = Arc::new(Signal::new(self.id));
        self.shared
            .online
            .insert(address.clone(), Arc::clone(&signal));
        // A list published between reading the device and the line above
        // may have removed it without finding this connection: look again
        // now that the connection can be found.
        let refusal = match self.shared.readers.device(&address).await {
            Ok(Some(_)) => None,
            Ok(None) => Some(ErrorReply::new(ErrorCode::UnknownDevice, "no such device")),
            Err(e) => Some(e),
        };
        if let Some(refusal) = refusal {
            self.shared.online.remove(&address, self.id);
            return self.answer(request_id, Err(refusal)).await;
        }
        self.answer(
            request_id,
            Ok(Reply::LoggedIn(LoggedIn {
                registered,
                one_time_prekeys: info.one_time_prekeys,
                has_signed_prekey: info.has_signed_prekey,
                one_time_kem_prekeys: info.one_time_kem_prekeys,
                has_kem_prekey: info.has_kem_prekey,
            })),
        )
        .await?;
        let expired_for = address.clone();
        if let Ok(count) = self
            .shared
            .writer
            .call(|reply| Command::TakeExpired {
                address: expired_for,
                reply,
            })
            .await
        {
            if count > 0
                && !self
                    .send_frame(ServerFrame::MessagesExpired { count })
                    .await
            {
                return Err(End::PeerClosed);
            }
        }
        let threshold = self.shared.config.prekeys_low_threshold;
        let kem_low = info.has_kem_prekey && info.one_time_kem_prekeys < threshold;
        if (info.one_time_prekeys < threshold || kem_low)
            && !self
                .send_frame(ServerFrame::PreKeysLow {
                    remaining: info.one_time_prekeys,
                    kem_remaining: info.one_time_kem_prekeys,
                })
                .await
        {
            return Err(End::PeerClosed);
        }
        let delivery = tokio::spawn(deliver(
            Arc::clone(&self.shared),
            address.clone(),
            Arc::clone(&signal),
            self.out.clone(),
            self.push_budget.clone(),
        ));
        self.session = Some(Session {
            address,
            identity_key: info.identity_key,
            signal,
            delivery,
        });
        Ok(())
    }

    /// Lets in-flight requests finish and send their answers, stops
    /// pushing, and closes.
    async fn finish(mut self, end: End) {
        let grace = self.shared.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while let Some(frame) = self.in_flight.next().await {
                if !self.send_frame(frame).await {
                    break;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(id = self.id, "in-flight requests did not finish");
        }
        if let Some(session) = self.session.take() {
            session.delivery.abort();
            self.shared.online.remove(&session.address, self.id);
        }
        let (code, reason) = match end {
            End::PeerClosed => (CLOSE_NORMAL, ""),
            End::Close(code, reason) => (code, reason),
        };
        let _ = self.send(Outbound::Close(code, reason)).await;
    }
}

/// Pushes the device's mailbox in id order: the stored backlog, then
/// `QueueEmpty`, then each message as it is committed, as the writer hands
/// it over, reading the store again only when the inbox went stale
/// (`crate::inbox` explains why nothing is skipped or pushed twice).
async fn deliver(
    shared: Arc<Shared>,
    address: Address,
    signal: Arc<Signal>,
    out: mpsc::Sender<Outbound>,
    push_budget: Option<Arc<Semaphore>>,
) {
    let pusher = Pusher {
        shared: &shared,
        out: &out,
        budget: push_budget.as_deref(),
    };
    let mut cursor = 0u64;
    let mut backlog_sent = false;
    loop {
        if let Some(remaining) = signal.take_low() {
            if out
                .send(Outbound::Frame(ServerFrame::PreKeysLow {
                    remaining: remaining.one_time,
                    kem_remaining: remaining.one_time_kem,
                }))
                .await
                .is_err()
            {
                return;
            }
        }
        let taken = signal.inbox.take();
        if taken.stale {
            loop {
                let page = match shared
                    .readers
                    .messages_after(&address, cursor, now_ms(), PAGE)
                    .await
                {
                    Ok(page) => page,
                    Err(_) => {
                        // Retry after a pause; the mailbox is not lost.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let full = page.len() == PAGE;
                for m in page {
                    cursor = m.id;
                    if !pusher.push(m).await {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
        }
        for m in crate::inbox::after(cursor, taken.messages) {
            cursor = m.id;
            if !pusher.push(m).await {
                return;
            }
        }
        if !backlog_sent {
            backlog_sent = true;
            if out
                .send(Outbound::Frame(ServerFrame::QueueEmpty))
                .await
                .is_err()
            {
                return;
            }
        }
        signal.wake.notified().await;
    }
}

/// Queues pushes on one connection.
struct Pusher<'a> {
    shared: &'a Shared,
    out: &'a mpsc::Sender<Outbound>,
    budget: Option<&'a Semaphore>,
}

impl Pusher<'_> {
    /// Queues one message's push; false once the connection is gone.
    async fn push(&self, m: StoredMessage) -> bool {
        let push = ServerFrame::Push(Push {
            message_id: m.id,
            server_time_ms: m.server_ms,
            envelope: m.envelope,
            kind: EnvelopeKind::from_u32(m.kind).unwrap_or_default(),
        });
        if let Some(budget) = self.budget {
            let cost = push_cost(push_len(&push));
            let permits = match budget.try_acquire_many(cost) {
                Ok(permits) => permits,
                Err(TryAcquireError::Closed) => return false,
                // The queue holds its budget's worth: wait for the writer.
                Err(TryAcquireError::NoPermits) => match budget.acquire_many(cost).await {
                    Ok(permits) => permits,
                    Err(_) => return false,
                },
            };
            // The writer gives the permits back once written.
            permits.forget();
        }
        let queued = match queue_now(self.out, Outbound::Frame(push)) {
            Ok(queued) => queued,
            Err(item) => self.out.send(item).await.is_ok(),
        };
        if !queued {
            return false;
        }
        inc(&self.shared.metrics.pushed_total);
        true
    }
}

/// Queues `item` for the writer if the queue has room, without the
/// machinery of a send that may wait: `Ok(true)` once queued, `Ok(false)`
/// if the writer is gone, `Err(item)` if the queue is full (the caller
/// then waits for room as before).
fn queue_now(out: &mpsc::Sender<Outbound>, item: Outbound) -> Result<bool, Outbound> {
    match out.try_send(item) {
        Ok(()) => Ok(true),
        Err(mpsc::error::TrySendError::Closed(_)) => Ok(false),
        Err(mpsc::error::TrySendError::Full(item)) => Err(item),
    }
}

/// What a push of `len` envelope bytes takes from [`PUSH_BUDGET`].
fn push_cost(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX).min(PUSH_BUDGET)
}

/// The envelope length of a push frame.
fn push_len(frame: &ServerFrame) -> usize {
    match frame {
        ServerFrame::Push(p) => p.envelope.len(),
        _ => 0,
    }
}

/// Verifies the list a registration presents: it decodes and verifies,
/// names the device's user id, and lists the device with its identity key.
fn registration_list(r: &tacit_relay_proto::Register) -> Outcome<tacit::identity::DeviceList> {
    let list = r.device_list.verify().map_err(|e| invalid_list(&e))?;
    if list.user_id() != r.address.user_id() {
        return Err(ErrorReply::new(
            ErrorCode::InvalidDeviceList,
            "the list names another user id",
        ));
    }
    if !list.lists(r.address.device_id(), &r.identity_key) {
        return Err(ErrorReply::new(
            ErrorCode::NotOnDeviceList,
            "the device is not on the list with this identity key",
        ));
    }
    Ok(list)
}

/// The refusal of a list that does not decode or verify.
fn invalid_list(error: &tacit::error::IdentityError) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::InvalidDeviceList,
        format!("the device list does not verify: {error}"),
    )
}

/// A stored list, as a frame carries it.
fn stored_list(list: Vec<u8>) -> Outcome<DeviceListBytes> {
    DeviceListBytes::new(list)
        .map_err(|_| ErrorReply::new(ErrorCode::Internal, "the stored device list is corrupt"))
}

impl Conn {
    /// The sender of a submission on this connection, for the token check.
    fn sender(&self) -> crate::tokenless::Sender {
        match &self.session {
            Some(session) => crate::tokenless::Sender::Account {
                user_id: session.address.user_id().to_owned(),
                quota: Arc::clone(&self.shared.tokenless),
            },
            None => crate::tokenless::Sender::Anonymous,
        }
    }
}

/// The stored form of a delivery token.
pub(crate) fn token_hash(token: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tacit-relay-delivery-token-v1");
    h.update(token);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::Ending;

    #[test]
    fn a_shutdown_or_a_dead_writer_comes_before_a_kick() {
        // What completed, and nothing else since.
        for ending in [Ending::Shutdown, Ending::PeerGone, Ending::Kicked] {
            assert_eq!(ending.first(false, false), ending);
        }
        // A kick that coincides with a shutdown or a dead writer.
        assert_eq!(Ending::Kicked.first(true, false), Ending::Shutdown);
        assert_eq!(Ending::Kicked.first(false, true), Ending::PeerGone);
        assert_eq!(Ending::Kicked.first(true, true), Ending::Shutdown);
        // A dead writer seen while the relay shuts down.
        assert_eq!(Ending::PeerGone.first(true, true), Ending::Shutdown);
        // A shutdown signal whose sender is gone still shuts down.
        assert_eq!(Ending::Shutdown.first(false, true), Ending::Shutdown);
    }
}
