#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code,
    unreachable_pub
)]
//! A minimal test client for the relay, and helpers to start relays.

pub mod pg;
pub mod tokens;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::kem::{KemKeyPair, SignedKemPreKey};
use tacit::{Address, IdentityKeyPair, KeyPair};
use tacit_relay::{Config, Rate, Relay};
use tacit_relay_proto::{
    ClientFrame, ErrorCode, ErrorReply, FetchBundles, Login, OneTimePreKey, Push, Register, Reply,
    Request, Response, ServerFrame, SignedPreKey, Submit, UploadPreKeys,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a test waits for any one frame.
pub const WAIT: Duration = Duration::from_secs(20);

/// A scratch directory (`tempfile`), removed on drop.
#[derive(Debug)]
pub struct TempDir(pub tempfile::TempDir);

impl TempDir {
    pub fn new(name: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("tacit-relay-test-{name}-"))
                .tempdir()
                .unwrap(),
        )
    }

    pub fn db(&self) -> PathBuf {
        self.path("relay.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// A config for tests: an ephemeral port on 127.0.0.1, generous rates.
pub fn config(db: &Path) -> Config {
    let mut c = Config::new(db);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.server_name = "test-relay".into();
    c.unauthenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_rate = Rate::new(100_000.0, 100_000);
    c.authenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_byte_rate = Rate::new(1e12, u32::MAX);
    c.per_account_byte_rate = Rate::new(1e12, u32::MAX);
    c.mailbox_bytes_cap = 1 << 40;
    c.registration_rate_per_ip = Rate::new(1e6, u32::MAX);
    c.registration_rate = Rate::new(1e6, u32::MAX);
    c.claim_rate_per_requester = Rate::new(1e6, u32::MAX);
    c.one_time_claim_rate_per_target = Rate::new(1e6, u32::MAX);
    c.max_connections_per_ip = 10_000;
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c
}

/// The relay's `/metrics` page, from its metrics listener.
pub async fn metrics(relay: &Relay) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let at = relay.metrics_addr().expect("metrics_listen is set");
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    body
}

/// The value of the metric line that starts with `name`.
pub fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {page}"))
}

pub async fn start(db: &Path) -> Relay {
    Relay::bind(config(db)).await.unwrap()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

pub fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

/// The user key tests use for `user`: derived from the user id, so every
/// device of a user made here shares it.
pub fn user_key(user: &str) -> UserKeyPair {
    let mut seed = [0xa5; 32];
    for (i, b) in user.bytes().enumerate() {
        seed[i % 32] ^= b.rotate_left(i as u32 / 32);
    }
    UserKeyPair::from_seed(&seed)
}

/// A device: address, identity, and the device list it registers with.
#[derive(Debug, Clone)]
pub struct Device {
    pub address: Address,
    pub identity: IdentityKeyPair,
    /// By default a one-device list, version 1, under [`user_key`].
    pub list: DeviceList,
}

impl Device {
    pub fn new(user: &str, device: u32, seed: u8) -> Self {
        Self::with_identity(user, device, identity(seed))
    }

    pub fn with_identity(user: &str, device: u32, identity: IdentityKeyPair) -> Self {
        let list = DeviceList::sign(
            &user_key(user),
            user,
            1,
            &[(device, identity.public_key(), 0)],
        )
        .unwrap();
        Self {
            address: addr(user, device),
            identity,
            list,
        }
    }

    /// The same device with a one-device list signed by `user_key`.
    pub fn signed_by(mut self, user_key: &UserKeyPair) -> Self {
        self.list = DeviceList::sign(
            user_key,
            self.address.user_id(),
            1,
            &[(self.address.device_id(), self.identity.public_key(), 0)],
        )
        .unwrap();
        self
    }

    /// The same device presenting `list`.
    pub fn with_list(mut self, list: &DeviceList) -> Self {
        self.list = list.clone();
        self
    }

    /// A device whose identity is derived from `n`.
    pub fn numbered(user: &str, device: u32, n: u32) -> Self {
        let mut seed = [0x5a; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        Self::with_identity(user, device, IdentityKeyPair::from_seed(&seed))
    }
}

/// A minimal client over any stream.
pub struct Client<S> {
    pub ws: WebSocketStream<S>,
    next_id: u64,
    /// Frames read while waiting for a response.
    pub pending: VecDeque<ServerFrame>,
}

pub type TcpClient = Client<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(relay: SocketAddr) -> TcpClient {
    let url = format!("ws://{relay}/v1");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    Client::new(ws)
}

/// Devices of one user, all on one list (version `version`, under
/// [`user_key`]); each presents it.
pub fn same_user(version: u64, devices: Vec<Device>) -> (DeviceList, Vec<Device>) {
    let user = devices[0].address.user_id().to_owned();
    let entries: Vec<_> = devices
        .iter()
        .map(|d| (d.address.device_id(), d.identity.public_key(), 0))
        .collect();
    let list = DeviceList::sign(&user_key(&user), &user, version, &entries).unwrap();
    let devices = devices.into_iter().map(|d| d.with_list(&list)).collect();
    (list, devices)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            next_id: 1,
            pending: VecDeque::new(),
        }
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// Sends a request and returns its id.
    pub async fn send(&mut self, request: Request) -> u64 {
        let request_id = self.next_id;
        self.next_id += 1;
        let bytes = ClientFrame {
            request_id,
            request,
        }
        .encode();
        self.send_raw(Message::binary(bytes)).await;
        request_id
    }

    /// The next frame from the relay; None when the connection closed.
    pub async fn read(&mut self) -> Option<ServerFrame> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame from the relay in time");
            match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Binary(b))) => return Some(ServerFrame::decode(&b).unwrap()),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame, buffered ones first.
    pub async fn next_frame(&mut self) -> Option<ServerFrame> {
        match self.pending.pop_front() {
            Some(f) => Some(f),
            None => self.read().await,
        }
    }

    /// Waits for the response to `id`, buffering other frames.
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

    pub async fn request(&mut self, request: Request) -> Result<Reply, ErrorReply> {
        let id = self.send(request).await;
        self.response(id).await
    }

    pub async fn challenge(&mut self) -> [u8; 32] {
        match self.request(Request::GetChallenge).await {
            Ok(Reply::Challenge(c)) => {
                assert_eq!(c.server_name, "test-relay");
                c.challenge
            }
            other => panic!("{other:?}"),
        }
    }

    pub async fn register(&mut self, device: &Device) -> Result<Reply, ErrorReply> {
        let challenge = self.challenge().await;
        let r = Register::sign(
            &device.identity,
            "test-relay",
            &challenge,
            now_ms(),
            device.address.clone(),
            &device.list,
        );
        self.request(Request::Register(r)).await
    }

    pub async fn login(&mut self, device: &Device) -> Result<Reply, ErrorReply> {
        let challenge = self.challenge().await;
        let l = Login::sign(
            &device.identity,
            "test-relay",
            &challenge,
            now_ms(),
            device.address.clone(),
        );
        self.request(Request::Login(l)).await
    }

    pub async fn submit(&mut self, to: &Address, envelope: &[u8]) -> Result<Reply, ErrorReply> {
        self.request(Request::Submit(
            Submit::new(to.clone(), envelope.to_vec(), None).unwrap(),
        ))
        .await
    }

    pub async fn ack(&mut self, ids: Vec<u64>) -> Result<Reply, ErrorReply> {
        self.request(Request::Ack(tacit_relay_proto::Ack::new(ids).unwrap()))
            .await
    }

    /// Reads pushes until `QueueEmpty`.
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

    pub async fn fetch(&mut self, address: &Address) -> Result<Reply, ErrorReply> {
        self.request(Request::FetchBundles(FetchBundles::device(address)))
            .await
    }

    /// Expects the connection to close (after any frames).
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
}

/// A KEM prekey with id `id`, its key derived from the id, signed by
/// `signer`.
pub fn kem_prekey(signer: &IdentityKeyPair, id: u32) -> SignedKemPreKey {
    let mut seed = [0x3c; 64];
    seed[..4].copy_from_slice(&id.to_be_bytes());
    let key = KemKeyPair::from_seed(&seed).public_key().clone();
    SignedKemPreKey {
        id,
        signature: signer.sign_kem_prekey(&key),
        key,
    }
}

/// The error code of a failed result.
pub fn code<T: std::fmt::Debug>(result: Result<T, ErrorReply>) -> ErrorCode {
    result.expect_err("expected an error").code
}

/// Connects, registers and returns the client.
pub async fn registered(relay: SocketAddr, device: &Device) -> TcpClient {
    let mut c = connect(relay).await;
    match c.register(device).await {
        Ok(Reply::LoggedIn(_)) => c,
        other => panic!("{other:?}"),
    }
}

/// The built `tacit-relay` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_tacit-relay");

/// Starts the relay binary on `db` and an ephemeral port: the process
/// (killed when dropped) and its address.
pub async fn spawn(db: &Path) -> (tokio::process::Child, SocketAddr) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--server-name",
            "test-relay",
            "--db",
        ])
        .arg(db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the relay did not start in time")
        .unwrap()
        .expect("no address line");
    let addr = line.strip_prefix("listening on ").unwrap().parse().unwrap();
    (child, addr)
}
