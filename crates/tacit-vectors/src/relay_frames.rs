//! `relay-frames.json`: golden relay frames (`docs/relay.md`), one or more
//! of every request, reply and push, each with its fields and its exact
//! encoded bytes, so that a client in another language can be checked byte
//! for byte.
//!
//! The fields are written from the schema in `proto/relay.proto`
//! (compiled here with protox): an object per message, keyed by the
//! `.proto` field names, with the fields present in the encoding only
//! (proto3: an absent field has its default). Bytes are hex, integers and
//! booleans are JSON numbers and booleans, repeated fields are arrays.
//!
//! Verifying a case checks three things: the fields, encoded from the
//! schema, give the bytes; the relay's own decoder (strict: canonical
//! encoding, every field checked) accepts the bytes and re-encodes them to
//! the same bytes; and the bytes decoded from the schema give the fields.

use std::path::Path;

use protox::prost::Message as _;
use protox::prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::kem::KemKeyPair;
use tacit::KeyPair;
use tacit_relay_proto::{
    Ack, Address, AllocateAttachment, Bundles, Challenge, ClientFrame, DeliveryToken, DeviceBundle,
    DeviceListBytes, EnvelopeKind, ErrorCode, ErrorReply, FetchBundles, FetchDeviceList,
    GroupRecipient, IdentityKeyPair, LinkPut, LinkTake, LoggedIn, Login, OneTimePreKey,
    PreKeyBundleMessage, PublishDeviceList, Push, Register, Reply, Request, Response, ServerFrame,
    SetDeliveryToken, SetPushEndpoint, SharedPayloadBytes, SignedKemPreKey, SignedPreKey, Submit,
    SubmitGroup, UploadPreKeys,
};

use crate::verify::CaseResult;

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

/// The key that marks a `relay-frames.json` file.
pub const RELAY_FRAMES_MARK: &str = "client_frames";

/// The file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelayFramesFile {
    /// What the file is.
    pub description: String,
    /// The schema the fields follow, relative to the repository.
    pub schema: String,
    /// Frames a client sends (`ClientFrame`).
    pub client_frames: Vec<FrameCase>,
    /// Frames the relay sends (`ServerFrame`).
    pub server_frames: Vec<FrameCase>,
}

/// One frame.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrameCase {
    /// The case's name.
    pub name: String,
    /// The frame's fields, as the module documentation says.
    pub fields: Json,
    /// The frame's encoding, hex.
    pub encoded: String,
}

/// The relay schema, compiled from `proto/relay.proto`.
pub fn relay_schema() -> Result<DescriptorPool, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut compiler = protox::Compiler::new([dir]).map_err(|e| e.to_string())?;
    compiler
        .open_file("relay.proto")
        .map_err(|e| e.to_string())?;
    Ok(compiler.descriptor_pool())
}

fn message(pool: &DescriptorPool, name: &str) -> Result<MessageDescriptor, String> {
    pool.get_message_by_name(&format!("tacit.relay.v1.{name}"))
        .ok_or_else(|| format!("no message {name} in relay.proto"))
}

// ------------------------------------------------------------ fields <-> bytes

/// The fields of `bytes`, decoded as `descriptor` from the schema.
pub fn fields_of(descriptor: &MessageDescriptor, bytes: &[u8]) -> Result<Json, String> {
    let m = DynamicMessage::decode(descriptor.clone(), bytes).map_err(|e| e.to_string())?;
    Ok(message_json(&m))
}

fn message_json(m: &DynamicMessage) -> Json {
    let mut out = Map::new();
    for (field, value) in m.fields() {
        out.insert(field.name().to_owned(), value_json(value));
    }
    Json::Object(out)
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(hex::encode(b)),
        Value::Message(m) => message_json(m),
        Value::List(items) => Json::Array(items.iter().map(value_json).collect()),
        Value::EnumNumber(n) => Json::from(*n),
        Value::F32(_) | Value::F64(_) | Value::Map(_) => Json::Null,
    }
}

/// Encodes `fields` as `descriptor` from the schema.
pub fn encode_fields(descriptor: &MessageDescriptor, fields: &Json) -> Result<Vec<u8>, String> {
    Ok(dynamic(descriptor, fields)?.encode_to_vec())
}

fn dynamic(descriptor: &MessageDescriptor, fields: &Json) -> Result<DynamicMessage, String> {
    let object = fields
        .as_object()
        .ok_or_else(|| format!("{}: fields are not an object", descriptor.name()))?;
    let mut m = DynamicMessage::new(descriptor.clone());
    for (name, json) in object {
        let field = descriptor
            .get_field_by_name(name)
            .ok_or_else(|| format!("{}: no field {name}", descriptor.name()))?;
        let value = if field.is_list() {
            let items = json
                .as_array()
                .ok_or_else(|| format!("{name}: not an array"))?;
            Value::List(
                items
                    .iter()
                    .map(|j| scalar_value(&field, j))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            scalar_value(&field, json)?
        };
        m.try_set_field(&field, value)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(m)
}

fn scalar_value(field: &FieldDescriptor, json: &Json) -> Result<Value, String> {
    let name = field.name();
    let bad = || format!("{name}: {json} is not a {:?}", field.kind());
    let uint = || json.as_u64().ok_or_else(bad);
    Ok(match field.kind() {
        Kind::Bool => Value::Bool(json.as_bool().ok_or_else(bad)?),
        Kind::Uint32 => Value::U32(u32::try_from(uint()?).map_err(|_| bad())?),
        Kind::Uint64 => Value::U64(uint()?),
        Kind::String => Value::String(json.as_str().ok_or_else(bad)?.to_owned()),
        Kind::Bytes => Value::Bytes(
            hex::decode(json.as_str().ok_or_else(bad)?)
                .map_err(|_| bad())?
                .into(),
        ),
        Kind::Message(m) => Value::Message(dynamic(&m, json)?),
        _ => return Err(format!("{name}: a kind the relay frames do not use")),
    })
}

// --------------------------------------------------------------- the frames

fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

fn addr(user: &str, device: u32) -> Result<Address, String> {
    Address::new(user, device).map_err(|e| e.to_string())
}

fn list(user: &str, device: u32, identity: &IdentityKeyPair) -> Result<DeviceList, String> {
    let user_key = UserKeyPair::from_seed(&[0x42; 32]);
    DeviceList::sign(&user_key, user, 1, &[(device, identity.public_key(), 7)])
        .map_err(|e| e.to_string())
}

fn kem_prekey(identity: &IdentityKeyPair, id: u32, seed: u8) -> SignedKemPreKey {
    let key = KemKeyPair::from_seed(&[seed; 64]).public_key().clone();
    SignedKemPreKey {
        id,
        signature: identity.sign_kem_prekey(&key),
        key,
    }
}

fn token(byte: u8, len: usize) -> Result<DeliveryToken, String> {
    DeliveryToken::new(&vec![byte; len]).map_err(|e| e.to_string())
}

/// A `SharedPayload` (PROTOCOL.md 16.7) of `len` payload bytes.
fn shared_payload(len: u8) -> Result<SharedPayloadBytes, String> {
    let mut bytes = vec![0x08, 0x01, 0x12, 0x20];
    bytes.extend_from_slice(&[3; 32]);
    bytes.extend_from_slice(&[0x1a, len]);
    bytes.resize(bytes.len() + usize::from(len), 0xcc);
    SharedPayloadBytes::new(bytes).map_err(|e| e.to_string())
}

/// The client frames, named.
pub fn client_frames() -> Result<Vec<(&'static str, ClientFrame)>, String> {
    let e = |e: tacit_relay_proto::FrameError| e.to_string();
    let id = identity(1);
    let spk = KeyPair::from_private_bytes([2; 32]).public_key();
    let requests = vec![
        ("get_challenge", Request::GetChallenge),
        (
            "register",
            Request::Register(Register::sign(
                &id,
                "relay.example",
                &[3; 32],
                1_700_000_000_000,
                addr("alice", 1)?,
                &list("alice", 1, &id)?,
            )),
        ),
        (
            "login",
            Request::Login(Login::sign(
                &id,
                "relay.example",
                &[3; 32],
                1_700_000_000_000,
                addr("alice", 1)?,
            )),
        ),
        (
            "upload_prekeys",
            Request::UploadPreKeys(UploadPreKeys {
                signed_prekey: Some(SignedPreKey {
                    id: 1,
                    key: spk,
                    signature: id.sign_prekey(&spk),
                }),
                fallback_prekey: Some(OneTimePreKey { id: 9, key: spk }),
                one_time_prekeys: vec![
                    OneTimePreKey { id: 10, key: spk },
                    OneTimePreKey { id: 11, key: spk },
                ],
                ..UploadPreKeys::default()
            }),
        ),
        (
            "upload_prekeys_kem",
            Request::UploadPreKeys(UploadPreKeys {
                kem_last_resort_prekey: Some(kem_prekey(&id, 1, 1)),
                one_time_kem_prekeys: vec![kem_prekey(&id, 2, 2)],
                ..UploadPreKeys::default()
            }),
        ),
        (
            "fetch_bundles_user",
            Request::FetchBundles(FetchBundles::user("bob").map_err(e)?),
        ),
        (
            "fetch_bundles_device",
            Request::FetchBundles(FetchBundles::device(&addr("bob", 3)?)),
        ),
        (
            "submit",
            Request::Submit(Submit::new(addr("bob", 1)?, vec![7; 40], None).map_err(e)?),
        ),
        (
            "submit_with_token",
            Request::Submit(
                Submit::new(addr("bob", 1)?, vec![7; 40], Some(token(5, 16)?)).map_err(e)?,
            ),
        ),
        (
            "ack",
            Request::Ack(Ack::new(vec![1, 300, 70_000]).map_err(e)?),
        ),
        (
            "set_delivery_token",
            Request::SetDeliveryToken(SetDeliveryToken {
                token: Some(token(6, 32)?),
            }),
        ),
        (
            "clear_delivery_token",
            Request::SetDeliveryToken(SetDeliveryToken { token: None }),
        ),
        (
            "set_push_endpoint",
            Request::SetPushEndpoint(SetPushEndpoint {
                url: Some("https://push.example/up/7f3a".into()),
            }),
        ),
        (
            "clear_push_endpoint",
            Request::SetPushEndpoint(SetPushEndpoint { url: None }),
        ),
        (
            "publish_device_list",
            Request::PublishDeviceList(PublishDeviceList {
                device_list: (&list("alice", 1, &id)?).into(),
            }),
        ),
        (
            "fetch_device_list",
            Request::FetchDeviceList(FetchDeviceList::new("bob").map_err(e)?),
        ),
        (
            "link_put",
            Request::LinkPut(LinkPut::new([9; 32], vec![1; 24]).map_err(e)?),
        ),
        ("link_take", Request::LinkTake(LinkTake { slot: [9; 32] })),
        (
            "allocate_attachment",
            Request::AllocateAttachment(AllocateAttachment { size: 5_242_880 }),
        ),
        (
            "submit_group",
            Request::SubmitGroup(
                SubmitGroup::new(
                    shared_payload(20)?,
                    vec![
                        GroupRecipient {
                            recipient: addr("bob", 1)?,
                            wrapped_key: [4; 32],
                            delivery_token: None,
                        },
                        GroupRecipient {
                            recipient: addr("carol", 2)?,
                            wrapped_key: [5; 32],
                            delivery_token: Some(token(8, 16)?),
                        },
                    ],
                )
                .map_err(e)?,
            ),
        ),
    ];
    Ok(requests
        .into_iter()
        .enumerate()
        .map(|(i, (name, request))| {
            let request_id = u64::try_from(i).unwrap_or(u64::MAX) + 1;
            (
                name,
                ClientFrame {
                    request_id,
                    request,
                },
            )
        })
        .collect())
}

fn bundle(kem: bool) -> PreKeyBundleMessage {
    let id = identity(4);
    let spk = KeyPair::from_private_bytes([5; 32]).public_key();
    PreKeyBundleMessage {
        identity_key: id.public_key(),
        signed_prekey_id: 3,
        signed_prekey: spk,
        signed_prekey_signature: id.sign_prekey(&spk),
        one_time_prekey: Some((8, KeyPair::from_private_bytes([6; 32]).public_key())),
        kem_prekey: kem.then(|| kem_prekey(&id, 12, 9)),
    }
}

/// The server frames, named.
pub fn server_frames() -> Result<Vec<(&'static str, ServerFrame)>, String> {
    let ok = |request_id, reply| {
        ServerFrame::Response(Response {
            request_id,
            result: Ok(reply),
        })
    };
    let bob = identity(4);
    Ok(vec![
        (
            "challenge",
            ok(
                1,
                Reply::Challenge(Challenge {
                    challenge: [1; 32],
                    server_name: "relay.example".into(),
                    server_time_ms: 1_700_000_000_000,
                }),
            ),
        ),
        (
            "logged_in",
            ok(
                2,
                Reply::LoggedIn(LoggedIn {
                    registered: true,
                    one_time_prekeys: 4,
                    has_signed_prekey: true,
                    one_time_kem_prekeys: 0,
                    has_kem_prekey: false,
                }),
            ),
        ),
        (
            "prekeys_stored",
            ok(
                3,
                Reply::PreKeysStored {
                    one_time_prekeys: 3,
                    one_time_kem_prekeys: 200,
                },
            ),
        ),
        (
            "bundles",
            ok(
                4,
                Reply::Bundles(Bundles {
                    device_list: (&list("bob", 1, &bob)?).into(),
                    bundles: vec![
                        DeviceBundle {
                            device_id: 1,
                            bundle: bundle(false),
                        },
                        DeviceBundle {
                            device_id: 4,
                            bundle: bundle(true),
                        },
                    ],
                }),
            ),
        ),
        ("submitted", ok(5, Reply::Submitted { message_id: 77 })),
        ("acked", ok(6, Reply::Acked { removed: 2 })),
        ("delivery_token_set", ok(7, Reply::DeliveryTokenSet)),
        ("push_endpoint_set", ok(7, Reply::PushEndpointSet)),
        (
            "device_list_stored",
            ok(8, Reply::DeviceListStored { version: 3 }),
        ),
        (
            "device_list",
            ok(
                9,
                Reply::DeviceList(DeviceListBytes::from(&list("bob", 1, &bob)?)),
            ),
        ),
        ("link_stored", ok(10, Reply::LinkStored)),
        ("link_blob", ok(11, Reply::LinkBlob(vec![5; 10]))),
        (
            "attachment_allocated",
            ok(
                15,
                Reply::AttachmentAllocated {
                    id: [6; 16],
                    upload_token: [7; 32],
                    expires_ms: 1_700_000_000_000,
                },
            ),
        ),
        (
            "submitted_group",
            ok(12, Reply::SubmittedGroup { queued: 2 }),
        ),
        (
            "error",
            ServerFrame::Response(Response {
                request_id: 13,
                result: Err(ErrorReply::new(ErrorCode::UnknownDevice, "no such device")),
            }),
        ),
        (
            "error_rate_limited",
            ServerFrame::Response(Response {
                request_id: 14,
                result: Err(ErrorReply {
                    code: ErrorCode::RateLimited,
                    message: "too many requests".into(),
                    retry_after_ms: Some(250),
                }),
            }),
        ),
        (
            "push",
            ServerFrame::Push(Push {
                message_id: 9,
                server_time_ms: 1_700_000_000_123,
                envelope: vec![1, 2, 3],
                kind: EnvelopeKind::Sealed,
            }),
        ),
        (
            "push_group",
            ServerFrame::Push(Push {
                message_id: 10,
                server_time_ms: 1_700_000_000_456,
                envelope: vec![4, 5, 6],
                kind: EnvelopeKind::Group,
            }),
        ),
        ("queue_empty", ServerFrame::QueueEmpty),
        (
            "prekeys_low",
            ServerFrame::PreKeysLow {
                remaining: 2,
                kem_remaining: 1,
            },
        ),
        (
            "messages_expired",
            ServerFrame::MessagesExpired { count: 3 },
        ),
    ])
}

/// Builds the file.
pub fn relay_frames_file() -> Result<RelayFramesFile, String> {
    let pool = relay_schema()?;
    let client = message(&pool, "ClientFrame")?;
    let server = message(&pool, "ServerFrame")?;
    let case = |descriptor: &MessageDescriptor, name: &str, bytes: Vec<u8>| {
        Ok::<_, String>(FrameCase {
            name: name.to_owned(),
            fields: fields_of(descriptor, &bytes)?,
            encoded: hex::encode(bytes),
        })
    };
    Ok(RelayFramesFile {
        description: "Relay frames (docs/relay.md): each frame's fields, as proto/relay.proto \
                      names them (bytes in hex, fields absent from the encoding omitted), and \
                      its exact canonical encoding."
            .into(),
        schema: "proto/relay.proto".into(),
        client_frames: client_frames()?
            .into_iter()
            .map(|(name, f)| case(&client, name, f.encode()))
            .collect::<Result<_, _>>()?,
        server_frames: server_frames()?
            .into_iter()
            .map(|(name, f)| case(&server, name, f.encode()))
            .collect::<Result<_, _>>()?,
    })
}

// ------------------------------------------------------------------- verify

/// Checks one case against the schema and against the relay's decoder.
fn verify_case(
    descriptor: &MessageDescriptor,
    case: &FrameCase,
    strict: impl Fn(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    let bytes = hex::decode(&case.encoded).map_err(|e| format!("encoded: {e}"))?;
    let from_fields = encode_fields(descriptor, &case.fields)?;
    check(
        from_fields == bytes,
        "the fields, encoded from the schema, give other bytes",
    )?;
    let reencoded = strict(&bytes)?;
    check(
        reencoded == bytes,
        "the relay's decoder re-encodes to other bytes",
    )?;
    check(
        fields_of(descriptor, &bytes)? == case.fields,
        "the bytes decode to other fields",
    )
}

/// Verifies every case of a `relay-frames.json` file.
pub fn verify_relay_frames(file: &RelayFramesFile) -> Vec<CaseResult> {
    let pool = match relay_schema() {
        Ok(pool) => pool,
        Err(e) => {
            return vec![CaseResult {
                name: "relay.proto".into(),
                outcome: Err(e),
            }]
        }
    };
    let mut out = Vec::new();
    for (kind, cases) in [
        ("ClientFrame", &file.client_frames),
        ("ServerFrame", &file.server_frames),
    ] {
        let descriptor = match message(&pool, kind) {
            Ok(d) => d,
            Err(e) => {
                out.push(CaseResult {
                    name: kind.into(),
                    outcome: Err(e),
                });
                continue;
            }
        };
        for case in cases {
            let outcome = verify_case(&descriptor, case, |bytes| {
                if kind == "ClientFrame" {
                    ClientFrame::decode(bytes).map(|f| f.encode())
                } else {
                    ServerFrame::decode(bytes).map(|f| f.encode())
                }
                .map_err(|e| format!("the relay's decoder refuses the frame: {e}"))
            });
            out.push(CaseResult {
                name: format!("{kind} {}", case.name),
                outcome,
            });
        }
    }
    out
}
