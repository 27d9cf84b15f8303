//! The relay's request handling, fed sequences of frames on several
//! connections, on an in-memory database: raw and mutated frames mixed with
//! well-formed requests (registration and login signed over the relay's
//! real challenges, submissions, acknowledgements, prekey uploads, bundle
//! fetches, delivery tokens), bursts of pipelined requests, disconnections
//! and purges.
//!
//! Registrations present signed device lists (of the right or a wrong user
//! key, of a few versions, listing the device or not), and connections
//! publish and fetch lists and use link slots.
//!
//! Asserts: the relay never panics and never hangs (each frame is answered,
//! or the connection closed, within a deadline); every frame it sends
//! decodes as a client would decode it and re-encodes to the same bytes; a
//! mailbox message is pushed only to the device it was submitted to, only
//! on a logged-in connection, never to two devices, and never after its
//! acknowledgement committed; and an acknowledgement succeeds only for
//! messages of the acknowledging device.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::keys::{IdentityKeyPair, KeyPair};
use tacit::Address;
use tacit_relay::fuzzing::{Event, FuzzConnection, FuzzRelay};
use tacit_relay::{Config, Rate};
use tacit_relay_proto::{
    Ack, ClientFrame, DeliveryToken, ErrorCode, FetchBundles, FetchDeviceList, LinkPut, LinkTake,
    Login, OneTimePreKey, PublishDeviceList, Register, Reply, Request, Response, ServerFrame,
    SetDeliveryToken, SignedPreKey, Submit, UploadPreKeys,
};

/// How long the relay may take to answer before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(20);
const CONNECTIONS: usize = 3;
const MAX_OPS: usize = 48;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn identities() -> &'static [IdentityKeyPair] {
    static IDS: OnceLock<Vec<IdentityKeyPair>> = OnceLock::new();
    IDS.get_or_init(|| {
        (1..=3u8)
            .map(|i| IdentityKeyPair::from_seed(&[i; 32]))
            .collect()
    })
}

/// Three KEM public keys, for KEM prekey uploads.
fn kem_keys() -> &'static [tacit::kem::KemPublicKey] {
    static KEYS: OnceLock<Vec<tacit::kem::KemPublicKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (1..=3u8)
            .map(|i| {
                tacit::kem::KemKeyPair::from_seed(&[i; 64])
                    .public_key()
                    .clone()
            })
            .collect()
    })
}

/// Two user keys: any user id is bound to whichever signs its first list.
fn user_keys() -> &'static [UserKeyPair] {
    static KEYS: OnceLock<Vec<UserKeyPair>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (1..=2u8)
            .map(|i| UserKeyPair::from_seed(&[0x80 | i; 32]))
            .collect()
    })
}

/// A signed list of `address`'s user: one of the user keys, version 1 to
/// 3, `address` with `identity` (most often), and maybe the user's other
/// addresses. Signing is deterministic: the same choices give the same
/// bytes.
fn device_list(
    u: &mut Unstructured<'_>,
    address: &Address,
    identity: &IdentityKeyPair,
) -> arbitrary::Result<DeviceList> {
    let key = &user_keys()[u.choose_index(user_keys().len())?];
    let version = u.int_in_range(1..=3u64)?;
    let mut devices = Vec::new();
    for a in addresses()
        .iter()
        .filter(|a| a.user_id() == address.user_id())
    {
        if a == address {
            if u.ratio(7, 8)? {
                devices.push((a.device_id(), identity.public_key(), 0));
            }
        } else if u.arbitrary()? {
            let other = &identities()[u.choose_index(identities().len())?];
            devices.push((a.device_id(), other.public_key(), 0));
        }
    }
    DeviceList::sign(key, address.user_id(), version, &devices)
        .or_else(|_| {
            DeviceList::sign(
                key,
                address.user_id(),
                version,
                &[(address.device_id(), identity.public_key(), 0)],
            )
        })
        .map_err(|_| arbitrary::Error::IncorrectFormat)
}

fn addresses() -> &'static [Address] {
    static ADDRS: OnceLock<Vec<Address>> = OnceLock::new();
    ADDRS.get_or_init(|| {
        [("alice", 1), ("alice", 2), ("bob", 1), ("carol", 5)]
            .into_iter()
            .map(|(u, d)| Address::new(u, d).expect("address"))
            .collect()
    })
}

/// `RELAY_HANDLER_TRACE=1`: print every frame sent and every event read,
/// to follow a finding.
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("RELAY_HANDLER_TRACE").is_some())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The harness's view of one connection.
struct Client {
    conn: FuzzConnection,
    open: bool,
    /// Frames sent and not answered: request id -> the decoded frame (if it
    /// decodes).
    pending: Vec<(u64, Option<ClientFrame>)>,
    logged_in: Option<Address>,
    /// Messages whose acknowledgement had committed when this connection
    /// logged in: its delivery must not push them.
    acked_at_login: HashSet<u64>,
    /// The acknowledgements committed when the last login was sent.
    acked_before_login: HashSet<u64>,
    challenge: Option<[u8; 32]>,
}

/// The harness's view of the relay.
#[derive(Default)]
struct Model {
    /// Envelopes submitted to each device (by any frame that decodes).
    submitted: HashMap<Address, Vec<Vec<u8>>>,
    /// Message ids the relay gave out, with the recipient when known.
    owner: HashMap<u64, Option<Address>>,
    /// Which device each message was pushed to.
    pushed_to: HashMap<u64, Address>,
    /// Messages acknowledged (committed).
    acked: HashSet<u64>,
    /// Submissions whose answer never came (their connection closed first):
    /// the relay may have stored them under ids the harness cannot know.
    unanswered_submits: usize,
}

impl Model {
    /// Forgets the requests still waiting on a connection that closed.
    fn drop_pending(&mut self, pending: &mut Vec<(u64, Option<ClientFrame>)>) {
        self.unanswered_submits += pending
            .drain(..)
            .filter(|(_, frame)| {
                matches!(
                    frame,
                    Some(ClientFrame {
                        request: Request::Submit(_),
                        ..
                    })
                )
            })
            .count();
    }
}

struct Harness {
    relay: FuzzRelay,
    clients: Vec<Client>,
    model: Model,
    next_request: u64,
}

impl Harness {
    fn connect(&self, i: usize) -> Client {
        let peer = SocketAddr::from(([10, 0, 0, (i % 2) as u8 + 1], 40_000 + i as u16));
        Client {
            conn: self.relay.connect(peer),
            open: true,
            pending: Vec::new(),
            logged_in: None,
            acked_at_login: HashSet::new(),
            acked_before_login: HashSet::new(),
            challenge: None,
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Sends bytes on connection `c`, remembering what they decode to.
    fn send(&mut self, c: usize, bytes: Vec<u8>) {
        let decoded = ClientFrame::decode(&bytes).ok();
        if trace() {
            eprintln!("[{c}] -> {decoded:?} ({} bytes)", bytes.len());
        }
        if let Some(ClientFrame {
            request: Request::Submit(s),
            ..
        }) = &decoded
        {
            self.model
                .submitted
                .entry(s.recipient.clone())
                .or_default()
                .push(s.envelope().to_vec());
        }
        let client = &mut self.clients[c];
        if client.open && client.conn.send(bytes) {
            let id = decoded.as_ref().map_or(0, |f| f.request_id);
            client.pending.push((id, decoded));
        }
    }

    fn send_frame(&mut self, c: usize, request: Request) -> u64 {
        let request_id = self.request_id();
        self.send(
            c,
            ClientFrame {
                request_id,
                request,
            }
            .encode(),
        );
        request_id
    }

    /// Reads what connection `c` sent until every frame sent on it is
    /// answered or it closed; drains the others without waiting.
    async fn settle(&mut self, c: usize) {
        loop {
            for other in 0..self.clients.len() {
                while let Some(event) = self.clients[other].conn.try_next() {
                    self.event(other, event);
                }
            }
            let client = &mut self.clients[c];
            if client.pending.is_empty() || !client.open {
                return;
            }
            match tokio::time::timeout(DEADLINE, client.conn.next()).await {
                Err(_) => panic!("the relay did not answer within {DEADLINE:?}"),
                Ok(None) => {
                    client.open = false;
                    self.model.drop_pending(&mut client.pending);
                }
                Ok(Some(event)) => self.event(c, event),
            }
        }
    }

    fn event(&mut self, c: usize, event: Event) {
        if trace() {
            eprintln!("[{c}] <- {event:?}");
        }
        let frame = match event {
            Event::Closed(_) => {
                let client = &mut self.clients[c];
                client.open = false;
                self.model.drop_pending(&mut client.pending);
                return;
            }
            Event::Frame(frame) => frame,
        };
        let bytes = frame.encode();
        assert_eq!(
            ServerFrame::decode(&bytes).as_ref(),
            Ok(&frame),
            "the relay sent a frame a client refuses"
        );
        match frame {
            ServerFrame::Response(response) => self.response(c, response),
            ServerFrame::Push(push) => {
                let client = &self.clients[c];
                let Some(device) = &client.logged_in else {
                    panic!("a push on a connection not logged in");
                };
                assert!(
                    self.model
                        .submitted
                        .get(device)
                        .is_some_and(|e| e.contains(&push.envelope)),
                    "{device} was pushed an envelope not submitted to it"
                );
                if let Some(Some(owner)) = self.model.owner.get(&push.message_id) {
                    assert_eq!(owner, device, "message pushed to another device");
                }
                let first = self
                    .model
                    .pushed_to
                    .entry(push.message_id)
                    .or_insert_with(|| device.clone());
                assert_eq!(first, device, "one message pushed to two devices");
                assert!(
                    !client.acked_at_login.contains(&push.message_id),
                    "an acknowledged message was pushed again"
                );
            }
            ServerFrame::QueueEmpty
            | ServerFrame::PreKeysLow { .. }
            | ServerFrame::MessagesExpired { .. } => {
                assert!(
                    self.clients[c].logged_in.is_some(),
                    "a push on a connection not logged in"
                );
            }
            other => panic!("a frame the model does not know: {other:?}"),
        }
    }

    fn response(&mut self, c: usize, response: Response) {
        let unsolicited = response.request_id == 0
            && matches!(
                &response.result,
                Err(e) if matches!(e.code, ErrorCode::TooManyErrors | ErrorCode::Superseded | ErrorCode::DeviceRemoved | ErrorCode::ShuttingDown)
            );
        if unsolicited {
            return;
        }
        let client = &mut self.clients[c];
        // Find the request answered: by its id; an answer with an id the
        // harness never sent answers a frame the harness could not decode
        // (the relay may still read a request id out of it, or answer with
        // id 0), the oldest such.
        let index = client
            .pending
            .iter()
            .position(|(id, _)| *id == response.request_id && response.request_id != 0)
            .or_else(|| client.pending.iter().position(|(_, frame)| frame.is_none()));
        let Some(index) = index else {
            panic!("an answer to no request: {response:?}");
        };
        let (_, request) = client.pending.remove(index);
        let request = request.map(|f| f.request);
        match (response.result, request) {
            (Ok(Reply::Challenge(ch)), _) => client.challenge = Some(ch.challenge),
            (Ok(Reply::LoggedIn(_)), Some(Request::Register(r))) => {
                self.login(c, r.address);
            }
            (Ok(Reply::LoggedIn(_)), Some(Request::Login(l))) => {
                self.login(c, l.address);
            }
            (Ok(Reply::LoggedIn(_)), other) => panic!("logged in by {other:?}"),
            (Ok(Reply::Submitted { message_id }), request) => {
                let recipient = match request {
                    Some(Request::Submit(s)) => Some(s.recipient),
                    _ => None,
                };
                let previous = self.model.owner.insert(message_id, recipient);
                assert!(
                    previous.is_none(),
                    "message id {message_id} given out twice"
                );
            }
            (Ok(Reply::Acked { removed }), request) => {
                let Some(device) = client.logged_in.clone() else {
                    panic!("an acknowledgement on a connection not logged in");
                };
                if let Some(Request::Ack(a)) = request {
                    assert_eq!(removed as usize, a.message_ids().len());
                    for id in a.message_ids() {
                        let owner = self
                            .model
                            .owner
                            .get(id)
                            .cloned()
                            .or_else(|| self.model.pushed_to.get(id).cloned().map(Some));
                        match owner.as_ref() {
                            None => assert!(
                                self.model.unanswered_submits > 0,
                                "acknowledged message {id}, never given out"
                            ),
                            Some(Some(owner)) => {
                                assert_eq!(
                                    owner, &device,
                                    "{device} acknowledged a message of {owner}"
                                )
                            }
                            Some(None) => {}
                        }
                        assert!(
                            self.model.acked.insert(*id),
                            "message {id} acknowledged twice"
                        );
                    }
                }
            }
            (
                Ok(
                    Reply::PreKeysStored { .. }
                    | Reply::DeliveryTokenSet
                    | Reply::DeviceListStored { .. },
                ),
                _,
            ) => {
                assert!(
                    client.logged_in.is_some(),
                    "a device request answered before login"
                );
            }
            (
                Ok(
                    Reply::Bundles(_)
                    | Reply::DeviceList(_)
                    | Reply::LinkStored
                    | Reply::LinkBlob(_),
                )
                | Err(_),
                _,
            ) => {}
            (Ok(other), _) => panic!("a reply the model does not know: {other:?}"),
        }
    }

    fn login(&mut self, c: usize, address: Address) {
        let client = &mut self.clients[c];
        assert!(
            client.logged_in.is_none(),
            "logged in twice on one connection"
        );
        client.logged_in = Some(address);
        client.acked_at_login = std::mem::take(&mut client.acked_before_login);
    }

    /// Asks for a challenge and signs a registration or login with it.
    async fn authenticate(&mut self, c: usize, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
        self.send_frame(c, Request::GetChallenge);
        self.settle(c).await;
        let challenge = self.clients[c].challenge.take().unwrap_or([0; 32]);
        let identity = &identities()[u.choose_index(identities().len())?];
        let address = u.choose(addresses())?.clone();
        let skew: i64 = match u.int_in_range(0..=7u8)? {
            0 => u.int_in_range(-120_000..=120_000)?,
            _ => 0,
        };
        let timestamp = now_ms().saturating_add_signed(skew);
        let name = self.relay.server_name().to_owned();
        let request = if u.arbitrary()? {
            let list = device_list(u, &address, identity)?;
            Request::Register(Register::sign(
                identity, &name, &challenge, timestamp, address, &list,
            ))
        } else {
            Request::Login(Login::sign(identity, &name, &challenge, timestamp, address))
        };
        // Only acknowledgements answered before the login was sent have
        // surely committed before its delivery starts.
        self.clients[c].acked_before_login = self.model.acked.clone();
        self.send_frame(c, request);
        self.settle(c).await;
        Ok(())
    }

    /// A well-formed request other than login.
    fn request(&self, u: &mut Unstructured<'_>) -> arbitrary::Result<Request> {
        let known: Vec<u64> = self.model.owner.keys().copied().collect();
        Ok(match u.int_in_range(0..=9u8)? {
            0 => {
                let len = u.int_in_range(1..=48)?;
                let token = if u.ratio(1, 4)? {
                    DeliveryToken::new(&[u.int_in_range(0..=1u8)?; 16]).ok()
                } else {
                    None
                };
                let recipient = u.choose(addresses())?.clone();
                match Submit::new(recipient, u.bytes(len)?.to_vec(), token) {
                    Ok(s) => Request::Submit(s),
                    Err(_) => Request::GetChallenge,
                }
            }
            1 => {
                let n = u.int_in_range(1..=4)?;
                let mut ids = Vec::new();
                for _ in 0..n {
                    let id = if !known.is_empty() && u.ratio(3, 4)? {
                        *u.choose(&known)?
                    } else {
                        u.int_in_range(1..=64)?
                    };
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                match Ack::new(ids) {
                    Ok(a) => Request::Ack(a),
                    Err(_) => Request::GetChallenge,
                }
            }
            2 => {
                let signer = &identities()[u.choose_index(identities().len())?];
                let key = |seed: u8| KeyPair::from_private_bytes([seed; 32]).public_key();
                let spk = key(u.arbitrary()?);
                let signed_prekey = u.arbitrary::<bool>()?.then(|| SignedPreKey {
                    id: 1,
                    key: spk,
                    signature: signer.sign_prekey(&spk),
                });
                let fallback_prekey = u.arbitrary::<bool>()?.then(|| OneTimePreKey {
                    id: 900,
                    key: key(9),
                });
                let n = u.int_in_range(0..=4)?;
                let mut one_time_prekeys = Vec::new();
                for _ in 0..n {
                    let id = u.int_in_range(1..=8u32)?;
                    one_time_prekeys.push(OneTimePreKey {
                        id,
                        key: key(id as u8 + 20),
                    });
                }
                // KEM prekeys, signed by the chosen identity (which may not
                // be the logged-in device's: the relay must refuse those).
                let kem = |u: &mut Unstructured<'_>, id: u32| {
                    let key = u.choose(kem_keys())?.clone();
                    Ok(tacit::kem::SignedKemPreKey {
                        id,
                        signature: signer.sign_kem_prekey(&key),
                        key,
                    })
                };
                let kem_last_resort_prekey = if u.arbitrary()? {
                    Some(kem(u, 1)?)
                } else {
                    None
                };
                let mut one_time_kem_prekeys = Vec::new();
                for _ in 0..u.int_in_range(0..=3)? {
                    let id = u.int_in_range(2..=6u32)?;
                    if !one_time_kem_prekeys
                        .iter()
                        .any(|k: &tacit::kem::SignedKemPreKey| k.id == id)
                    {
                        one_time_kem_prekeys.push(kem(u, id)?);
                    }
                }
                Request::UploadPreKeys(UploadPreKeys {
                    signed_prekey,
                    fallback_prekey,
                    one_time_prekeys,
                    kem_last_resort_prekey,
                    one_time_kem_prekeys,
                })
            }
            3 => {
                let address = u.choose(addresses())?;
                if u.arbitrary()? {
                    Request::FetchBundles(FetchBundles::device(address))
                } else {
                    match FetchBundles::user(address.user_id()) {
                        Ok(f) => Request::FetchBundles(f),
                        Err(_) => Request::GetChallenge,
                    }
                }
            }
            4 => Request::SetDeliveryToken(SetDeliveryToken {
                token: if u.arbitrary()? {
                    DeliveryToken::new(&[u.int_in_range(0..=1u8)?; 16]).ok()
                } else {
                    None
                },
            }),
            5 => {
                let address = u.choose(addresses())?.clone();
                let identity = &identities()[u.choose_index(identities().len())?];
                Request::PublishDeviceList(PublishDeviceList {
                    device_list: (&device_list(u, &address, identity)?).into(),
                })
            }
            6 => match FetchDeviceList::new(u.choose(addresses())?.user_id()) {
                Ok(f) => Request::FetchDeviceList(f),
                Err(_) => Request::GetChallenge,
            },
            7 => {
                let slot = [u.int_in_range(0..=2u8)?; 32];
                let len = u.int_in_range(1..=16)?;
                match LinkPut::new(slot, u.bytes(len)?.to_vec()) {
                    Ok(p) => Request::LinkPut(p),
                    Err(_) => Request::GetChallenge,
                }
            }
            8 => Request::LinkTake(LinkTake {
                slot: [u.int_in_range(0..=2u8)?; 32],
            }),
            _ => Request::GetChallenge,
        })
    }

    async fn op(&mut self, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
        let c = u.choose_index(CONNECTIONS)?;
        match u.int_in_range(0..=9u8)? {
            // Raw bytes.
            0 => {
                let len = u.int_in_range(0..=256)?;
                let bytes = u.bytes(len)?.to_vec();
                self.send(c, bytes);
            }
            // A well-formed frame with bytes flipped.
            1 => {
                let request = self.request(u)?;
                let request_id = self.request_id();
                let mut bytes = ClientFrame {
                    request_id,
                    request,
                }
                .encode();
                if !bytes.is_empty() {
                    let at = u.choose_index(bytes.len())?;
                    bytes[at] ^= u.arbitrary::<u8>()?.max(1);
                }
                self.send(c, bytes);
            }
            2 | 3 => self.authenticate(c, u).await?,
            4..=6 => {
                let request = self.request(u)?;
                self.send_frame(c, request);
            }
            // Pipelined requests.
            7 => {
                for _ in 0..u.int_in_range(2..=8)? {
                    let request = self.request(u)?;
                    self.send_frame(c, request);
                }
            }
            8 => {
                if u.arbitrary()? {
                    self.clients[c].conn.send_text("hello");
                    self.clients[c].pending.push((0, None));
                } else {
                    let _ = self.relay.purge().await;
                }
            }
            // Disconnect, and connect again.
            _ => {
                self.close(c).await;
                self.clients[c] = self.connect(c);
            }
        }
        self.settle(c).await;
        Ok(())
    }

    /// Closes connection `c` and reads everything it still sends.
    async fn close(&mut self, c: usize) {
        self.clients[c].conn.close();
        loop {
            match tokio::time::timeout(DEADLINE, self.clients[c].conn.next()).await {
                Err(_) => panic!("a closed connection did not end within {DEADLINE:?}"),
                Ok(None) => break,
                Ok(Some(event)) => self.event(c, event),
            }
        }
        let client = &mut self.clients[c];
        client.open = false;
        self.model.drop_pending(&mut client.pending);
    }
}

async fn run(data: &[u8]) {
    let mut config = Config::new("unused");
    config.queue_cap = 6;
    config.max_one_time_prekeys = 6;
    config.prekeys_low_threshold = 2;
    config.max_batch = 4;
    config.max_bad_frames = 6;
    config.readers = 1;
    config.unauthenticated_rate = Rate::new(20.0, 30);
    config.message_ttl = if data.first().is_some_and(|b| b & 1 == 1) {
        Duration::from_millis(1)
    } else {
        Duration::from_secs(3600)
    };
    let relay = FuzzRelay::start(config).await.expect("relay");
    let mut harness = Harness {
        relay,
        clients: Vec::new(),
        model: Model::default(),
        next_request: 1_000_000,
    };
    for i in 0..CONNECTIONS {
        let client = harness.connect(i);
        harness.clients.push(client);
    }
    let mut u = Unstructured::new(data.get(1..).unwrap_or_default());
    for _ in 0..MAX_OPS {
        if u.is_empty() || harness.op(&mut u).await.is_err() {
            break;
        }
    }
    for c in 0..CONNECTIONS {
        harness.close(c).await;
    }
    harness.relay.stop().await;
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(run(data));
});
