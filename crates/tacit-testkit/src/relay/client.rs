//! The relay frame client: `ClientFrame`s out, `ServerFrame`s in, over a
//! WebSocket on any stream.
//!
//! Every operation comes twice: a `try_` form that returns the transport's
//! failure (for a load generator, or a test that expects the connection to
//! go), and a form that panics on it, under a timeout of [`WAIT`], which is
//! a failed test.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tacit::{Address, IdentityKeyPair, KeyPair};
use tacit_relay_proto::{
    Ack, ClientFrame, ErrorCode, ErrorReply, FetchBundles, FrameError, OneTimePreKey, Push, Reply,
    Request, Response, ServerFrame, SignedPreKey, Submit, UploadPreKeys,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::account::{kem_prekey, Device};

/// How long the panicking operations wait for the relay: longer than the
/// relay takes to answer at worst while its PostgreSQL database is
/// unreachable (it retries a batch for 20 s, each attempt bounded by 10 s
/// timeouts, then answers with an error), so that a test around a
/// database restart sees the relay's answer, not its own timeout.
pub const WAIT: Duration = Duration::from_secs(45);

/// The server name test relays are configured with, which [`Client::new`]
/// expects in challenges and signs registrations and logins for.
pub const SERVER_NAME: &str = "test-relay";

/// A WebSocket to a relay over TCP.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client over TCP, as [`connect`] opens it.
pub type TcpClient = Client<MaybeTlsStream<TcpStream>>;

/// Why the connection failed: the transport, a frame that did not decode,
/// or the relay closing it.
#[derive(Debug)]
pub enum ClientError {
    /// The WebSocket failed.
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    /// The relay sent bytes that are no server frame.
    Frame(FrameError),
    /// The connection closed.
    Closed,
    /// A request was answered with something other than expected.
    Unexpected(String),
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Ws(e) => write!(f, "websocket: {e}"),
            Self::Frame(e) => write!(f, "a frame that does not decode: {e}"),
            Self::Closed => f.write_str("the relay closed the connection"),
            Self::Unexpected(what) => write!(f, "unexpected answer: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::Ws(Box::new(e))
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

/// The frame in one WebSocket message: `None` for a message that carries
/// none (ping, pong, text), `Closed` for a close.
fn frame_of(message: Message) -> Result<Option<ServerFrame>, ClientError> {
    match message {
        Message::Binary(b) => Ok(Some(ServerFrame::decode(&b)?)),
        Message::Close(_) => Err(ClientError::Closed),
        _ => Ok(None),
    }
}

/// The message that carries `frame`.
fn message_of(frame: &ClientFrame) -> Message {
    Message::binary(frame.encode())
}

/// Connects to the relay at `relay` (`ws://relay/v1`), panicking if that
/// fails or takes longer than [`WAIT`].
pub async fn connect(relay: SocketAddr) -> TcpClient {
    tokio::time::timeout(WAIT, Client::try_connect(relay))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// A client: a WebSocket, the id of its next request, and the frames read
/// while waiting for a response.
pub struct Client<S> {
    /// The WebSocket, for tests that send what no frame is.
    pub ws: WebSocketStream<S>,
    next_id: u64,
    /// Frames read while waiting for a response.
    pub pending: VecDeque<ServerFrame>,
    server_name: String,
}

impl<S> core::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("next_id", &self.next_id)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl TcpClient {
    /// Connects to `ws://relay/v1`.
    pub async fn try_connect(relay: SocketAddr) -> Result<Self, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{relay}/v1")).await?;
        Ok(Self::new(ws))
    }

    /// The WebSocket handshake for `ws://relay/v1` over `stream`, a TCP
    /// connection to `relay` (from a chosen local address, say).
    pub async fn try_connect_over(
        stream: TcpStream,
        relay: SocketAddr,
    ) -> Result<Self, ClientError> {
        Self::over(&format!("ws://{relay}/v1"), MaybeTlsStream::Plain(stream)).await
    }

    /// Connects to `ws://relay/v1` with the WebSocket settings `config`.
    pub async fn try_connect_with(
        relay: SocketAddr,
        config: WebSocketConfig,
    ) -> Result<Self, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{relay}/v1"),
            Some(config),
            true,
        )
        .await?;
        Ok(Self::new(ws))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client over the WebSocket `ws`, for a relay named [`SERVER_NAME`].
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            next_id: 1,
            pending: VecDeque::new(),
            server_name: SERVER_NAME.into(),
        }
    }

    /// The WebSocket handshake for `url` over `stream` (TLS, or a socket
    /// bound to a chosen address).
    pub async fn over(url: &str, stream: S) -> Result<Self, ClientError> {
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
        Ok(Self::new(ws))
    }

    /// The same client for a relay named `name`.
    pub fn named(mut self, name: &str) -> Self {
        self.server_name = name.into();
        self
    }

    /// Sends `message` as it is (any bytes, text, a close).
    pub async fn try_send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        Ok(self.ws.send(message).await?)
    }

    /// [`try_send_raw`](Self::try_send_raw), panicking on failure.
    pub async fn send_raw(&mut self, message: Message) {
        self.try_send_raw(message)
            .await
            .expect("the message is sent");
    }

    /// Sends `request` under a new request id and returns the id.
    pub async fn try_send(&mut self, request: Request) -> Result<u64, ClientError> {
        let request_id = self.next_id;
        self.next_id += 1;
        self.ws
            .send(message_of(&ClientFrame {
                request_id,
                request,
            }))
            .await?;
        Ok(request_id)
    }

    /// [`try_send`](Self::try_send), panicking on failure.
    pub async fn send(&mut self, request: Request) -> u64 {
        self.try_send(request).await.expect("the request is sent")
    }

    /// The next frame from the relay, without a timeout.
    pub async fn try_read(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            let message = self.ws.next().await.ok_or(ClientError::Closed)??;
            if let Some(frame) = frame_of(message)? {
                return Ok(frame);
            }
        }
    }

    /// The next frame from the relay within `wait`: `Ok(None)` if none
    /// came by then.
    pub async fn try_read_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<ServerFrame>, ClientError> {
        tokio::time::timeout(wait, self.try_read())
            .await
            .ok()
            .transpose()
    }

    /// The next frame from the relay; `None` when the connection closed or
    /// failed. Panics if none comes within [`WAIT`] or one does not decode.
    pub async fn read(&mut self) -> Option<ServerFrame> {
        match self.try_read_within(WAIT).await {
            Ok(Some(frame)) => Some(frame),
            Ok(None) => panic!("no frame from the relay in time"),
            Err(ClientError::Frame(e)) => panic!("the relay sent a bad frame: {e}"),
            Err(_) => None,
        }
    }

    /// The next frame, buffered ones first.
    pub async fn next_frame(&mut self) -> Option<ServerFrame> {
        match self.pending.pop_front() {
            Some(f) => Some(f),
            None => self.read().await,
        }
    }

    /// Waits (without a timeout) for the response to `id`, buffering other
    /// frames.
    pub async fn try_response(
        &mut self,
        id: u64,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        loop {
            match self.try_read().await? {
                ServerFrame::Response(Response { request_id, result }) if request_id == id => {
                    return Ok(result)
                }
                other => self.pending.push_back(other),
            }
        }
    }

    /// Waits for the response to `id`, buffering other frames; panics if
    /// the connection closes first.
    pub async fn response(&mut self, id: u64) -> Result<Reply, ErrorReply> {
        loop {
            match self.read().await {
                Some(ServerFrame::Response(Response { request_id, result }))
                    if request_id == id =>
                {
                    return result
                }
                Some(other) => self.pending.push_back(other),
                None => panic!("connection closed while waiting for response {id}"),
            }
        }
    }

    /// Sends `request` and waits (without a timeout) for its answer.
    pub async fn try_request(
        &mut self,
        request: Request,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        let id = self.try_send(request).await?;
        self.try_response(id).await
    }

    /// Sends `request` and returns the relay's answer.
    pub async fn request(&mut self, request: Request) -> Result<Reply, ErrorReply> {
        let id = self.send(request).await;
        self.response(id).await
    }

    /// A challenge, from a relay that names itself as this client expects.
    pub async fn try_challenge(&mut self) -> Result<[u8; 32], ClientError> {
        match self.try_request(Request::GetChallenge).await? {
            Ok(Reply::Challenge(c)) => {
                assert_eq!(c.server_name, self.server_name, "the relay's name");
                Ok(c.challenge)
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A challenge; panics if there is none.
    pub async fn challenge(&mut self) -> [u8; 32] {
        tokio::time::timeout(WAIT, self.try_challenge())
            .await
            .expect("a challenge in time")
            .expect("a challenge")
    }

    /// Registers `device` (or logs it in, if it is registered with the
    /// same list): the relay's answer.
    pub async fn try_register(
        &mut self,
        device: &Device,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        let challenge = self.try_challenge().await?;
        let request = device.register_request(&self.server_name, &challenge);
        self.try_request(request).await
    }

    /// Registers `device`: the relay's answer.
    pub async fn register(&mut self, device: &Device) -> Result<Reply, ErrorReply> {
        let challenge = self.challenge().await;
        let request = device.register_request(&self.server_name, &challenge);
        self.request(request).await
    }

    /// Logs `device` in: the relay's answer.
    pub async fn login(&mut self, device: &Device) -> Result<Reply, ErrorReply> {
        let challenge = self.challenge().await;
        let request = device.login_request(&self.server_name, &challenge);
        self.request(request).await
    }

    /// Submits `envelope` for `to`.
    pub async fn submit(&mut self, to: &Address, envelope: &[u8]) -> Result<Reply, ErrorReply> {
        self.request(Request::Submit(
            Submit::new(to.clone(), envelope.to_vec(), None).expect("a valid submission"),
        ))
        .await
    }

    /// Acknowledges the messages `ids`.
    pub async fn ack(&mut self, ids: Vec<u64>) -> Result<Reply, ErrorReply> {
        self.request(Request::Ack(Ack::new(ids).expect("a valid ack")))
            .await
    }

    /// Reads pushes until `QueueEmpty` (notices skipped; anything else
    /// panics).
    pub async fn drain(&mut self) -> Vec<Push> {
        let mut pushes = Vec::new();
        loop {
            match self.next_frame().await {
                Some(ServerFrame::Push(p)) => pushes.push(p),
                Some(ServerFrame::QueueEmpty) => return pushes,
                Some(ServerFrame::PreKeysLow { .. } | ServerFrame::MessagesExpired { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The ids of the pushes up to `QueueEmpty`, in order.
    pub async fn drain_ids(&mut self) -> Vec<u64> {
        self.drain().await.iter().map(|p| p.message_id).collect()
    }

    /// The next push, skipping notices.
    pub async fn next_push(&mut self) -> Push {
        loop {
            match self.next_frame().await {
                Some(ServerFrame::Push(p)) => return p,
                Some(ServerFrame::Response(r)) => panic!("unexpected response {r:?}"),
                Some(_) => {}
                None => panic!("closed"),
            }
        }
    }

    /// Uploads a signed prekey, a fallback and `count` one-time prekeys
    /// with ids `first..first + count`.
    pub async fn upload(
        &mut self,
        device: &Device,
        first: u32,
        count: u32,
    ) -> Result<Reply, ErrorReply> {
        let spk = KeyPair::from_private_bytes([7; 32]).public_key();
        let upload = UploadPreKeys {
            signed_prekey: Some(SignedPreKey {
                id: 1,
                key: spk,
                signature: device.identity.sign_prekey(&spk),
            }),
            fallback_prekey: Some(OneTimePreKey {
                id: 0xffff,
                key: KeyPair::from_private_bytes([8; 32]).public_key(),
            }),
            one_time_prekeys: (first..first + count)
                .map(|id| OneTimePreKey {
                    id,
                    key: KeyPair::from_private_bytes([(id % 251) as u8 + 1; 32]).public_key(),
                })
                .collect(),
            ..UploadPreKeys::default()
        };
        self.request(Request::UploadPreKeys(upload)).await
    }

    /// Uploads KEM prekeys signed by `signer`: a last-resort KEM prekey
    /// (id `last_resort`) if asked, and one-time KEM prekeys with ids
    /// `first..first + count`. The keys are derived from their ids.
    pub async fn upload_kem(
        &mut self,
        signer: &IdentityKeyPair,
        last_resort: Option<u32>,
        first: u32,
        count: u32,
    ) -> Result<Reply, ErrorReply> {
        let upload = UploadPreKeys {
            kem_last_resort_prekey: last_resort.map(|id| kem_prekey(signer, id)),
            one_time_kem_prekeys: (first..first + count)
                .map(|id| kem_prekey(signer, id))
                .collect(),
            ..UploadPreKeys::default()
        };
        self.request(Request::UploadPreKeys(upload)).await
    }

    /// The bundles of `address`.
    pub async fn fetch(&mut self, address: &Address) -> Result<Reply, ErrorReply> {
        self.request(Request::FetchBundles(FetchBundles::device(address)))
            .await
    }

    /// Expects the connection to close (after any frames, which it
    /// returns).
    pub async fn expect_closed(&mut self) -> Vec<ServerFrame> {
        let mut frames = Vec::new();
        for _ in 0..1000 {
            match self.read().await {
                Some(f) => frames.push(f),
                None => return frames,
            }
        }
        panic!("connection stayed open");
    }

    /// Closes the connection, ignoring failures.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The two halves, to write and read at once (pipelining). Frames
    /// buffered while waiting for a response are dropped.
    pub fn split(self) -> (FrameSink<S>, FrameStream<S>) {
        let (sink, stream) = self.ws.split();
        (FrameSink(sink), FrameStream(stream))
    }
}

/// The writing half of a [`Client`].
pub struct FrameSink<S>(SplitSink<WebSocketStream<S>, Message>);

impl<S> core::fmt::Debug for FrameSink<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FrameSink")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameSink<S> {
    /// Queues `frame` without flushing (see [`flush`](Self::flush)).
    pub async fn feed(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        Ok(self.0.feed(message_of(frame)).await?)
    }

    /// Writes out what [`feed`](Self::feed) queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        Ok(self.0.flush().await?)
    }

    /// Sends `frame` at once.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        Ok(self.0.send(message_of(frame)).await?)
    }

    /// Sends a close, ignoring failures.
    pub async fn close(mut self) {
        let _ = self.0.send(Message::Close(None)).await;
    }
}

/// The reading half of a [`Client`].
pub struct FrameStream<S>(SplitStream<WebSocketStream<S>>);

impl<S> core::fmt::Debug for FrameStream<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FrameStream")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameStream<S> {
    /// The next frame; [`ClientError::Closed`] when the connection closed.
    pub async fn next(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            let message = self.0.next().await.ok_or(ClientError::Closed)??;
            if let Some(frame) = frame_of(message)? {
                return Ok(frame);
            }
        }
    }
}

/// The error code of a failed result.
pub fn code<T: core::fmt::Debug>(result: Result<T, ErrorReply>) -> ErrorCode {
    result.expect_err("expected an error").code
}

/// Connects to `relay`, registers `device` and returns the client; panics
/// unless the relay logs it in.
pub async fn registered(relay: SocketAddr, device: &Device) -> TcpClient {
    let mut c = connect(relay).await;
    match c.register(device).await {
        Ok(Reply::LoggedIn(_)) => c,
        other => panic!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_to_frames_closes_and_nothing() {
        let frame = ServerFrame::QueueEmpty;
        assert_eq!(
            frame_of(Message::binary(frame.encode())).expect("decodes"),
            Some(ServerFrame::QueueEmpty)
        );
        assert!(matches!(
            frame_of(Message::Close(None)),
            Err(ClientError::Closed)
        ));
        assert!(matches!(frame_of(Message::text("hi")), Ok(None)));
        assert!(matches!(
            frame_of(Message::binary(vec![0xff, 0xff])),
            Err(ClientError::Frame(_))
        ));
    }
}
