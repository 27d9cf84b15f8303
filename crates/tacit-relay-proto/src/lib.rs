//! Frames between tacit clients and the relay.
//!
//! A client talks to the relay over one WebSocket connection carrying
//! binary messages; each WebSocket message is one frame. The client sends
//! [`ClientFrame`]s: a request with a request id. The relay sends
//! [`ServerFrame`]s: a [`Response`] matched to a request by its id, or a
//! push (a mailbox message, the end of the stored backlog, a low prekey
//! supply, a count of messages that expired undelivered).
//!
//! Every frame type has a trusted Rust form (the public types here) and a
//! private protobuf form (prost, derived on hand-written structs, so no
//! `protoc` is needed). Decoding is strict, as in `tacit::wire`: input over
//! the size limit, bytes that are not the frame, a frame that is not in
//! canonical encoding (it must re-encode to the same bytes), a missing or
//! out-of-range field, or a key that is not usable are refused with a
//! [`FrameError`]; a value of a public type here is always well formed.
//!
//! ```
//! use tacit_relay_proto::{ClientFrame, Request, Ack};
//!
//! let frame = ClientFrame {
//!     request_id: 7,
//!     request: Request::Ack(Ack::new(vec![1, 2, 3])?),
//! };
//! let bytes = frame.encode();
//! assert_eq!(ClientFrame::decode(&bytes)?, frame);
//! # Ok::<(), tacit_relay_proto::FrameError>(())
//! ```
//!
//! Login signs a transcript built by [`login_transcript`] (or
//! [`register_transcript`] to register); [`Login::sign`] and
//! [`Register::sign`] build the requests. `docs/relay.md` describes the
//! protocol in full.

mod client;
mod error;
mod group;
mod proto;
mod server;

pub use client::{
    Ack, AllocateAttachment, ClientFrame, DeliveryToken, DeviceListBytes, FetchBundles,
    FetchDeviceList, LinkPut, LinkTake, Login, OneTimePreKey, PublishDeviceList, Register, Request,
    SetDeliveryToken, SetPushEndpoint, SignedPreKey, Submit, UploadPreKeys,
};
pub use error::{ErrorCode, FrameError};
pub use group::{
    EnvelopeKind, GroupRecipient, SharedPayloadBytes, SubmitGroup, MAX_GROUP_FANOUT_LEN,
    MAX_GROUP_RECIPIENTS, MAX_GROUP_RECIPIENT_FRAME_LEN, MAX_SHARED_PAYLOAD_LEN, WRAPPED_KEY_LEN,
};
pub use server::{
    Bundles, Challenge, DeviceBundle, ErrorReply, LoggedIn, Push, Reply, Response, ServerFrame,
};

pub use tacit::identity::{DeviceList, MAX_DEVICE_LIST_LEN};
pub use tacit::kem::{KemPublicKey, SignedKemPreKey};
pub use tacit::wire::PreKeyBundleMessage;
pub use tacit::{Address, DeviceId, IdentityKey, IdentityKeyPair, PublicKey, Signature};

/// The version of this protocol; the WebSocket path is `/v1`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The WebSocket path of this protocol version.
pub const WEBSOCKET_PATH: &str = "/v1";
/// The HTTP path under which attachment blobs are uploaded (`PUT`) and
/// downloaded (`GET`): `/v1/attachments/{id in lowercase hex}`.
pub const ATTACHMENTS_PATH: &str = "/v1/attachments";
/// The HTTP header that carries an attachment's upload token, in hex.
pub const ATTACHMENT_TOKEN_HEADER: &str = "x-tacit-upload-token";
/// The length of an attachment id: 128 random bits.
pub const ATTACHMENT_ID_LEN: usize = 16;
/// The length of an attachment upload token.
pub const ATTACHMENT_TOKEN_LEN: usize = 32;
/// The largest attachment blob this protocol allows (the core's largest
/// encrypted attachment is far larger; a relay caps it lower).
pub const MAX_ATTACHMENT_BLOB_LEN: u64 = 1 << 40;
/// The largest sealed envelope a client may submit, in bytes.
pub const MAX_ENVELOPE_LEN: usize = 260 * 1024;
/// The largest client frame this protocol allows (a `SubmitGroup` of the
/// largest shared payload to [`MAX_GROUP_RECIPIENTS`] recipients); a relay
/// may set a lower limit.
pub const MAX_CLIENT_FRAME_LEN: usize =
    MAX_ENVELOPE_LEN + 1024 + MAX_GROUP_RECIPIENTS * MAX_GROUP_RECIPIENT_FRAME_LEN;
/// The largest server frame a client accepts.
pub const MAX_SERVER_FRAME_LEN: usize = MAX_ENVELOPE_LEN + 64 * 1024;
/// The length of a login challenge.
pub const CHALLENGE_LEN: usize = 32;
/// The shortest delivery token.
pub const MIN_DELIVERY_TOKEN_LEN: usize = 16;
/// The longest delivery token.
pub const MAX_DELIVERY_TOKEN_LEN: usize = 64;
/// The longest push endpoint URL, in bytes.
pub const MAX_PUSH_ENDPOINT_LEN: usize = 512;
/// The most one-time prekeys in one upload.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 200;
/// The most one-time KEM prekeys in one upload. Each takes about 1,650
/// bytes in the frame (1,569 for the key, 64 for its signature), so 100
/// take about 165 KB, well within [`MAX_CLIENT_FRAME_LEN`] with a full
/// batch of one-time prekeys beside them; a client uploads more in several
/// frames.
pub const MAX_KEM_PREKEYS_PER_UPLOAD: usize = 100;
/// The most message ids in one acknowledgement.
pub const MAX_ACK_IDS: usize = 1024;
/// The most devices of one user (and so bundles in one answer).
pub const MAX_DEVICES_PER_USER: usize = 16;
/// The length of a link slot id.
pub const LINK_SLOT_LEN: usize = 32;
/// The largest blob a link slot holds.
pub const MAX_LINK_BLOB_LEN: usize = 8192;
/// The longest relay name.
pub const MAX_SERVER_NAME_LEN: usize = 255;
/// The longest error message.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// The domain separator of the login transcript.
pub const LOGIN_CONTEXT: &[u8] = b"tacit-relay-login-v1";
/// The domain separator of the registration transcript.
pub const REGISTER_CONTEXT: &[u8] = b"tacit-relay-register-v1";

/// The bytes a device signs to log in:
///
/// `"tacit-relay-login-v1" || len(server_name) as u8 || server_name ||
/// challenge (32) || timestamp_ms as u64 big-endian || len(user_id) as u8
/// || user_id || device_id as u32 big-endian`.
///
/// The length prefixes make the encoding unambiguous; server names are at
/// most [`MAX_SERVER_NAME_LEN`] and user ids at most 64 bytes.
pub fn login_transcript(
    server_name: &str,
    challenge: &[u8; CHALLENGE_LEN],
    timestamp_ms: u64,
    address: &Address,
) -> Vec<u8> {
    transcript(LOGIN_CONTEXT, server_name, challenge, timestamp_ms, address)
}

/// The bytes a device signs to register: the login transcript with the
/// [`REGISTER_CONTEXT`] separator, followed by the 32-byte identity key.
pub fn register_transcript(
    server_name: &str,
    challenge: &[u8; CHALLENGE_LEN],
    timestamp_ms: u64,
    address: &Address,
    identity_key: &IdentityKey,
) -> Vec<u8> {
    let mut out = transcript(
        REGISTER_CONTEXT,
        server_name,
        challenge,
        timestamp_ms,
        address,
    );
    out.extend_from_slice(&identity_key.to_bytes());
    out
}

fn transcript(
    context: &[u8],
    server_name: &str,
    challenge: &[u8; CHALLENGE_LEN],
    timestamp_ms: u64,
    address: &Address,
) -> Vec<u8> {
    let name = &server_name.as_bytes()[..server_name.len().min(MAX_SERVER_NAME_LEN)];
    let user = address.user_id().as_bytes();
    let mut out = Vec::with_capacity(context.len() + name.len() + user.len() + 50);
    out.extend_from_slice(context);
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name);
    out.extend_from_slice(challenge);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.push(u8::try_from(user.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(user);
    out.extend_from_slice(&address.device_id().to_be_bytes());
    out
}

/// Decodes a protobuf message, refusing oversize input and non-canonical
/// encodings.
fn decode_canonical<M: prost::Message + Default>(
    bytes: &[u8],
    max: usize,
) -> Result<M, FrameError> {
    if bytes.len() > max {
        return Err(FrameError::Oversize {
            len: bytes.len(),
            max,
        });
    }
    let message = M::decode(bytes).map_err(|_| FrameError::Malformed)?;
    if message.encoded_len() != bytes.len() || message.encode_to_vec() != bytes {
        return Err(FrameError::NonCanonical);
    }
    Ok(message)
}

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
