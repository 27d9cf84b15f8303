//! Writes the seed corpora into `fuzz/seeds/TARGET/`: from the committed
//! test vectors (`test-vectors/*.json`) and from traffic recorded on a
//! relay (the fuzzing seam, driven as a client would). Run from `fuzz/`:
//! `cargo +nightly run --example seeds`. Deterministic except the recorded
//! traffic, whose challenges, signatures and times vary.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tacit::envelope::{Content, ContentKind};
use tacit::identity::{DeviceList, LinkCode, UserKeyPair};
use tacit::keys::{IdentityKeyPair, KeyPair};
use tacit::ratchet::EncryptedMessage;
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
use tacit::store::InMemoryStore;
use tacit::wire::{PreKeyBundleMessage, WireMessage};
use tacit::Address;
use tacit_relay::fuzzing::{Event, FuzzRelay};
use tacit_relay::Config;
use tacit_relay_proto::{
    Ack, ClientFrame, EnvelopeKind, FetchBundles, FetchDeviceList, GroupRecipient, LinkPut,
    LinkTake, Login, OneTimePreKey, PublishDeviceList, Push, Register, Reply, Request, ServerFrame,
    SharedPayloadBytes, SignedPreKey, Submit, SubmitGroup, UploadPreKeys,
};

type Error = Box<dyn std::error::Error>;

/// Seeds larger than this are left out (the fuzz runs use -max_len=4096).
const MAX_SEED: usize = 4096;

struct Seeds {
    root: PathBuf,
    written: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > MAX_SEED {
            return Ok(());
        }
        let dir = self.root.join(target);
        fs::create_dir_all(&dir)?;
        let name: String = Sha256::digest(bytes)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        fs::write(dir.join(name), bytes)?;
        self.written += 1;
        Ok(())
    }
}

fn hex(v: &Value) -> Result<Vec<u8>, Error> {
    Ok(hex::decode(v.as_str().ok_or("not a string")?)?)
}

fn seed32(v: &Value) -> Result<[u8; 32], Error> {
    hex(v)?.try_into().map_err(|_| "not 32 bytes".into())
}

fn load(root: &Path, name: &str) -> Result<Value, Error> {
    Ok(serde_json::from_str(&fs::read_to_string(
        root.join("test-vectors").join(name),
    )?)?)
}

fn from_vectors(repo: &Path, s: &mut Seeds) -> Result<(), Error> {
    // X3DH: the bundles the cases publish.
    let x3dh = load(repo, "x3dh.json")?;
    for case in x3dh["cases"].as_array().ok_or("cases")? {
        let bob = IdentityKeyPair::from_seed(&seed32(&case["bob_identity_seed"])?);
        let spk = KeyPair::from_private_bytes(seed32(&case["bob_signed_prekey_private"])?);
        let mut one_times = vec![None];
        if !case["bob_one_time_prekey_private"].is_null() {
            let otpk = KeyPair::from_private_bytes(seed32(&case["bob_one_time_prekey_private"])?);
            one_times.push(Some((7, otpk.public_key())));
        }
        for one_time in one_times {
            let bundle = PreKeyBundleMessage {
                identity_key: bob.public_key(),
                signed_prekey_id: 1,
                signed_prekey: spk.public_key(),
                signed_prekey_signature: bob.sign_prekey(&spk.public_key()),
                one_time_prekey: one_time,
                kem_prekey: None,
            };
            s.put("wire_decode", &bundle.to_wire())?;
        }
    }
    // Ratchet: every message of every case, as the wire carries it.
    let ratchet = load(repo, "ratchet.json")?;
    for case in ratchet["cases"].as_array().ok_or("cases")? {
        for m in case["messages"]
            .as_array()
            .ok_or("messages")?
            .iter()
            .take(3)
        {
            let header = hex(&m["expected"]["enc_header"])?;
            let ciphertext = hex(&m["expected"]["ciphertext"])?;
            let header = header.try_into().map_err(|_| "header length")?;
            let message = EncryptedMessage::new(header, ciphertext)?;
            s.put("wire_decode", &message.to_bytes())?;
            s.put("wire_decode", &message.to_wire())?;
        }
    }
    // Envelope: padding, contents, sealed envelopes, refused inputs.
    let envelope = load(repo, "envelope.json")?;
    for c in envelope["contents"].as_array().ok_or("contents")? {
        s.put("content_decode", &hex(&c["expected"]["encoded"])?)?;
        let padded = hex(&c["expected"]["padded"])?;
        s.put("content_decode", &padded)?;
        s.put("padding", &padded)?;
    }
    for c in envelope["invalid_contents"]
        .as_array()
        .ok_or("invalid_contents")?
    {
        s.put("content_decode", &hex(&c["padded"])?)?;
        s.put("padding", &hex(&c["padded"])?)?;
    }
    for p in envelope["padding"].as_array().ok_or("padding")? {
        let len = p["unpadded_len"].as_u64().ok_or("unpadded_len")? as usize;
        if let Ok(padded) = tacit::envelope::padding::pad(&vec![0x41; len]) {
            s.put("padding", &padded)?;
        }
    }
    for c in envelope["sealed"].as_array().ok_or("sealed")? {
        let sealed = hex(&c["expected"]["envelope"])?;
        s.put("sealed_decode", &sealed)?;
        s.put("sealed_open", &[[0x80].as_slice(), &sealed].concat())?;
        s.put("wire_decode", &hex(&c["session_message"])?)?;
    }
    for c in envelope["invalid_sealed"]
        .as_array()
        .ok_or("invalid_sealed")?
    {
        let sealed = hex(&c["envelope"])?;
        s.put("sealed_decode", &sealed)?;
        s.put("sealed_open", &[[0x80].as_slice(), &sealed].concat())?;
    }
    // Identity: every signed device list, valid or refused.
    let identity = load(repo, "identity.json")?;
    for c in identity["device_lists"].as_array().ok_or("device_lists")? {
        s.put("device_list", &hex(&c["expected"]["wire"])?)?;
    }
    for c in identity["invalid_device_lists"]
        .as_array()
        .ok_or("invalid_device_lists")?
    {
        s.put("device_list", &hex(&c["wire"])?)?;
    }
    Ok(())
}

/// Records, accounts and ratchet states as a real device stores them.
fn from_sessions(s: &mut Seeds) -> Result<(), Error> {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let rng = &mut rng;
    let mut alice = SessionManager::create(
        InMemoryStore::new(),
        Address::new("alice", 1)?,
        Account::generate(0, rng),
        SessionConfig::default(),
    )?;
    let bob_address = Address::new("bob", 1)?;
    let mut bob = SessionManager::create(
        InMemoryStore::new(),
        bob_address.clone(),
        Account::generate(0, rng),
        SessionConfig::default(),
    )?;
    bob.generate_one_time_prekeys(3, rng)?;
    for (user, identity, seed) in [
        ("alice", alice.account().identity().public_key(), 0xa1),
        ("bob", bob.account().identity().public_key(), 0xb0),
    ] {
        let list = tacit::identity::DeviceList::sign(
            &tacit::identity::UserKeyPair::from_seed(&[seed; 32]),
            user,
            1,
            &[(1, identity, 0)],
        )?;
        alice.update_device_list(&list)?;
        bob.update_device_list(&list)?;
    }
    let dump = |m: &SessionManager<InMemoryStore>, s: &mut Seeds| -> Result<(), Error> {
        for (key, bytes) in m.store().dump() {
            if key == "account" {
                s.put("session_record", &bytes)?;
            } else if key.starts_with("session/") {
                s.put("session_record", &bytes)?;
                if let Ok(record) = tacit::session::SessionRecord::from_bytes(&bytes) {
                    if let Some(state) = record.current() {
                        s.put("session_record", &state.ratchet().to_bytes())?;
                    }
                }
            }
        }
        Ok(())
    };
    dump(&bob, s)?;
    alice.process_bundle(
        &bob_address,
        &bob.account().bundle(BundlePreKey::Auto)?,
        rng,
    )?;
    dump(&alice, s)?;
    for round in 0..3u8 {
        let content = Content::new(ContentKind::Text, vec![round; 5], 1, rng)?;
        let out = alice.seal_for_device(&bob_address, &content, rng)?;
        bob.open_envelope(&out.envelope, rng)?;
        let reply = Content::new(ContentKind::Text, vec![round; 3], 2, rng)?;
        let back = bob.seal_for_device(alice.local_address(), &reply, rng)?;
        alice.open_envelope(&back.envelope, rng)?;
        dump(&alice, s)?;
        dump(&bob, s)?;
    }
    Ok(())
}

/// A KEM prekey signed by `identity`, its key derived from `id`.
fn kem_prekey(identity: &IdentityKeyPair, id: u32) -> tacit::kem::SignedKemPreKey {
    let key = tacit::kem::KemKeyPair::from_seed(&[id as u8; 64])
        .public_key()
        .clone();
    tacit::kem::SignedKemPreKey {
        id,
        signature: identity.sign_kem_prekey(&key),
        key,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Frames of a real exchange with a relay, in both directions.
async fn from_relay(s: &mut Seeds) -> Result<(), Error> {
    let relay = FuzzRelay::start(Config::new("unused")).await?;
    let name = relay.server_name().to_owned();
    let mut recorded: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut server: BTreeSet<Vec<u8>> = BTreeSet::new();
    let alice_id = IdentityKeyPair::from_seed(&[1; 32]);
    let bob_id = IdentityKeyPair::from_seed(&[2; 32]);
    let alice = Address::new("alice", 1)?;
    let bob = Address::new("bob", 1)?;
    let mut request_id = 0;
    for (identity, address, register) in [
        (&alice_id, &alice, true),
        (&bob_id, &bob, true),
        (&alice_id, &alice, false),
    ] {
        let mut conn = relay.connect(([127, 0, 0, 1], 9000).into());
        let mut exchange = |request: Request, conn: &tacit_relay::fuzzing::FuzzConnection| {
            request_id += 1;
            let bytes = ClientFrame {
                request_id,
                request,
            }
            .encode();
            recorded.insert(bytes.clone());
            conn.send(bytes);
        };
        exchange(Request::GetChallenge, &conn);
        let challenge = loop {
            if let Event::Frame(ServerFrame::Response(r)) = conn.next().await.ok_or("closed")? {
                let Ok(Reply::Challenge(c)) = r.result else {
                    return Err("no challenge".into());
                };
                server.insert(
                    ServerFrame::Response(tacit_relay_proto::Response {
                        request_id: r.request_id,
                        result: Ok(Reply::Challenge(c.clone())),
                    })
                    .encode(),
                );
                break c.challenge;
            }
        };
        let request = if register {
            let user_key = UserKeyPair::from_seed(&[address.user_id().len() as u8 | 0x80; 32]);
            let list = DeviceList::sign(
                &user_key,
                address.user_id(),
                1,
                &[(address.device_id(), identity.public_key(), 0)],
            )
            .map_err(|e| e.to_string())?;
            Request::Register(Register::sign(
                identity,
                &name,
                &challenge,
                now_ms(),
                address.clone(),
                &list,
            ))
        } else {
            Request::Login(Login::sign(
                identity,
                &name,
                &challenge,
                now_ms(),
                address.clone(),
            ))
        };
        exchange(request, &conn);
        let spk = KeyPair::from_private_bytes([address.device_id() as u8 + 40; 32]).public_key();
        exchange(
            Request::UploadPreKeys(UploadPreKeys {
                signed_prekey: Some(SignedPreKey {
                    id: 1,
                    key: spk,
                    signature: identity.sign_prekey(&spk),
                }),
                fallback_prekey: Some(OneTimePreKey { id: 100, key: spk }),
                one_time_prekeys: (1..=3)
                    .map(|id| OneTimePreKey {
                        id,
                        key: KeyPair::from_private_bytes([id as u8; 32]).public_key(),
                    })
                    .collect(),
                kem_last_resort_prekey: Some(kem_prekey(identity, 1)),
                one_time_kem_prekeys: vec![kem_prekey(identity, 2)],
            }),
            &conn,
        );
        exchange(Request::FetchBundles(FetchBundles::user("bob")?), &conn);
        exchange(Request::FetchBundles(FetchBundles::device(&alice)), &conn);
        exchange(
            Request::Submit(Submit::new(bob.clone(), vec![0xe0; 64], None)?),
            &conn,
        );
        exchange(
            Request::Submit(Submit::new(alice.clone(), vec![0xa1; 40], None)?),
            &conn,
        );
        // Device lists: the user's list at version 2 with a second device
        // (stored the first time, then refused as stale), and fetches of a
        // listed user and of one without a list.
        let user_key = UserKeyPair::from_seed(&[address.user_id().len() as u8 | 0x80; 32]);
        let list = DeviceList::sign(
            &user_key,
            address.user_id(),
            2,
            &[
                (address.device_id(), identity.public_key(), 0),
                (2, IdentityKeyPair::from_seed(&[7; 32]).public_key(), 0),
            ],
        )
        .map_err(|e| e.to_string())?;
        exchange(
            Request::PublishDeviceList(PublishDeviceList {
                device_list: (&list).into(),
            }),
            &conn,
        );
        exchange(
            Request::FetchDeviceList(FetchDeviceList::new("bob")?),
            &conn,
        );
        exchange(
            Request::FetchDeviceList(FetchDeviceList::new("carol")?),
            &conn,
        );
        // Link slots: a real request blob put and taken, then an empty
        // slot taken.
        let secrets = LinkCode::parse(LINK_CODE)?.secrets();
        let blob = secrets.seal_request(
            &Address::new(address.user_id(), 2)?,
            &IdentityKeyPair::from_seed(&[7; 32]).public_key(),
            &mut ChaCha20Rng::seed_from_u64(5),
        )?;
        exchange(
            Request::LinkPut(LinkPut::new(secrets.request_slot(), blob)?),
            &conn,
        );
        exchange(
            Request::LinkTake(LinkTake {
                slot: secrets.request_slot(),
            }),
            &conn,
        );
        exchange(
            Request::LinkTake(LinkTake {
                slot: secrets.response_slot(),
            }),
            &conn,
        );
        exchange(
            Request::SetDeliveryToken(tacit_relay_proto::SetDeliveryToken {
                token: Some(tacit_relay_proto::DeliveryToken::new(&[9; 16])?),
            }),
            &conn,
        );
        // Read until quiet; acknowledge what was pushed.
        let mut pushed = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), conn.next()).await
        {
            if let Event::Frame(frame) = event {
                if let ServerFrame::Push(p) = &frame {
                    pushed.push(p.message_id);
                }
                server.insert(frame.encode());
            }
        }
        if !pushed.is_empty() {
            exchange(Request::Ack(Ack::new(pushed)?), &conn);
        }
        conn.close();
        while let Some(event) = conn.next().await {
            if let Event::Frame(frame) = event {
                server.insert(frame.encode());
            }
        }
    }
    relay.stop().await;
    for frame in &recorded {
        s.put("relay_frames", frame)?;
    }
    for frame in &server {
        s.put("relay_frames", frame)?;
    }
    // A group submission and a group push (hand-made: the traffic above
    // has neither).
    let shared = [
        &[0x08, 0x01, 0x12, 0x20][..],
        &[0x33; 32],
        &[0x1a, 0x10],
        &[0x44; 16],
    ]
    .concat();
    let shared = SharedPayloadBytes::new(shared)?;
    let group = ClientFrame {
        request_id: 1,
        request: Request::SubmitGroup(SubmitGroup::new(
            shared.clone(),
            vec![GroupRecipient {
                recipient: Address::new("alice", 1)?,
                wrapped_key: [0x55; 32],
                delivery_token: None,
            }],
        )?),
    };
    s.put("relay_frames", &group.encode())?;
    for extra in [
        ServerFrame::Push(Push {
            message_id: 1,
            server_time_ms: 2,
            envelope: shared.envelope_for(&[0x55; 32]),
            kind: EnvelopeKind::Group,
        }),
        ServerFrame::QueueEmpty,
        ServerFrame::PreKeysLow {
            remaining: 3,
            kem_remaining: 1,
        },
        ServerFrame::MessagesExpired { count: 2 },
    ] {
        s.put("relay_frames", &extra.encode())?;
    }
    Ok(())
}

/// Seeds for the targets whose input is a selector and a mutation, or a
/// structure read by `arbitrary`: a few short patterns to start from.
fn structured(s: &mut Seeds) -> Result<(), Error> {
    for target in ["ratchet_decrypt", "sealed_open", "group_envelope_open"] {
        for selector in 0..6u8 {
            s.put(target, &[selector])?;
            s.put(target, &[selector, 0, 0, 1])?;
        }
    }
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    for target in ["attachment_decrypt", "session_decrypt", "relay_handler"] {
        for len in [4usize, 16, 64, 256] {
            for _ in 0..4 {
                let mut bytes = vec![0u8; len];
                rand_core::RngCore::fill_bytes(&mut rng, &mut bytes);
                s.put(target, &bytes)?;
            }
        }
    }
    Ok(())
}

/// The code the `link_blob` target seals and opens its blobs under.
const LINK_CODE: &str = "FUZZ-LINK-CODE-2345";

/// `link_blob`: a code string (its length first), then blob bytes: real
/// request and answer blobs under the target's code, and bare payloads,
/// which the target seals itself.
fn link_blobs(s: &mut Seeds) -> Result<(), Error> {
    let code_input =
        |code: &str, bytes: &[u8]| [&[code.len() as u8][..], code.as_bytes(), bytes].concat();
    for code in [
        LINK_CODE,
        "fuzz link code 2345",
        "FUZZLINKCODE2345",
        "AAAA-AAAA-AAAA-AAAA",
        "7777-7777-7777-7777",
        "ABCD-EFGH-IJKL-MNO1",
        "ABCD-EFGH-IJKL-MNOPQ",
        "",
    ] {
        s.put("link_blob", &code_input(code, &[]))?;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let secrets = LinkCode::parse(LINK_CODE)?.secrets();
    let identity = IdentityKeyPair::from_seed(&[4; 32]).public_key();
    let address = Address::new("alice", 2)?;
    let request = secrets.seal_request(&address, &identity, &mut rng)?;
    let list = DeviceList::sign(
        &UserKeyPair::from_seed(&[0x85; 32]),
        "alice",
        2,
        &[
            (1, IdentityKeyPair::from_seed(&[1; 32]).public_key(), 0),
            (2, identity, 0),
        ],
    )?;
    let response = secrets.seal_response(&list, &mut rng)?;
    let payload = |user: &[u8], device: u32| {
        [
            &b"tacit/link/v1/request"[..],
            &[user.len() as u8],
            user,
            &device.to_be_bytes(),
            &identity.to_bytes(),
        ]
        .concat()
    };
    for bytes in [
        request.clone(),
        response,
        request[..request.len() - 1].to_vec(),
        list.to_wire(),
        payload(b"alice", 2),
        payload(&[b'u'; 64], u32::MAX),
        payload(b"", 2),
        payload(b"alice", 0),
        payload(b"al\nce", 2),
        payload(&[0xff, 0xfe], 2),
    ] {
        s.put("link_blob", &code_input(LINK_CODE, &bytes))?;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = fuzz.parent().ok_or("no parent")?;
    let root = fuzz.join("seeds");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    let mut s = Seeds { root, written: 0 };
    from_vectors(repo, &mut s)?;
    from_sessions(&mut s)?;
    structured(&mut s)?;
    link_blobs(&mut s)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(from_relay(&mut s))?;
    println!("wrote {} seeds under {}", s.written, s.root.display());
    Ok(())
}
