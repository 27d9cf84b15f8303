//! Client frames: requests.

use prost::Message as _;
use tacit::error::IdentityError;
use tacit::identity::{DeviceList, MAX_DEVICE_LIST_LEN};
use tacit::kem::{KemPublicKey, SignedKemPreKey};
use tacit::keys::{KEY_LEN, SIGNATURE_LEN};
use tacit::{Address, DeviceId, IdentityKey, IdentityKeyPair, PublicKey, Signature};

use crate::error::FrameError;
use crate::proto::{self, client_frame};
use crate::{
    login_transcript, register_transcript, CHALLENGE_LEN, LINK_SLOT_LEN, MAX_ACK_IDS,
    MAX_CLIENT_FRAME_LEN, MAX_DELIVERY_TOKEN_LEN, MAX_ENVELOPE_LEN, MAX_KEM_PREKEYS_PER_UPLOAD,
    MAX_LINK_BLOB_LEN, MAX_PREKEYS_PER_UPLOAD, MAX_PUSH_ENDPOINT_LEN, MIN_DELIVERY_TOKEN_LEN,
};

/// A request with its id. The relay answers each request with one
/// [`Response`](crate::Response) carrying the same id; ids start at 1 and
/// should not repeat on a connection (the relay does not check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// The request's id, 1 or more.
    pub request_id: u64,
    /// The request.
    pub request: Request,
}

/// What a client asks of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Ask for a fresh login challenge (any connection).
    GetChallenge,
    /// Register a device's identity key and log in (any connection).
    Register(Register),
    /// Log in as a registered device (any connection).
    Login(Login),
    /// Store prekeys of the logged-in device.
    UploadPreKeys(UploadPreKeys),
    /// Fetch prekey bundles of a user's devices (any connection).
    FetchBundles(FetchBundles),
    /// Submit a sealed envelope to a device's mailbox (any connection).
    Submit(Submit),
    /// Acknowledge, and so delete, messages of the logged-in device.
    Ack(Ack),
    /// Set or clear the logged-in device's delivery token.
    SetDeliveryToken(SetDeliveryToken),
    /// Publish a new signed device list of the logged-in device's user.
    PublishDeviceList(PublishDeviceList),
    /// Fetch a user's current signed device list (any connection).
    FetchDeviceList(FetchDeviceList),
    /// Put a blob in a link slot (any connection).
    LinkPut(LinkPut),
    /// Take, and so delete, the blob of a link slot (any connection).
    LinkTake(LinkTake),
    /// Submit one shared payload for many recipient devices (any
    /// connection).
    SubmitGroup(crate::SubmitGroup),
    /// Set or clear the logged-in device's push endpoint.
    SetPushEndpoint(SetPushEndpoint),
    /// Reserve an upload slot for an attachment of the logged-in device's
    /// account (logged in only).
    AllocateAttachment(AllocateAttachment),
}

impl Request {
    /// The request kind's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::GetChallenge => "get_challenge",
            Self::Register(_) => "register",
            Self::Login(_) => "login",
            Self::UploadPreKeys(_) => "upload_prekeys",
            Self::FetchBundles(_) => "fetch_bundles",
            Self::Submit(_) => "submit",
            Self::Ack(_) => "ack",
            Self::SetDeliveryToken(_) => "set_delivery_token",
            Self::PublishDeviceList(_) => "publish_device_list",
            Self::FetchDeviceList(_) => "fetch_device_list",
            Self::LinkPut(_) => "link_put",
            Self::LinkTake(_) => "link_take",
            Self::SubmitGroup(_) => "submit_group",
            Self::SetPushEndpoint(_) => "set_push_endpoint",
            Self::AllocateAttachment(_) => "allocate_attachment",
        }
    }
}

/// A signed device list as frames carry it: 1 to
/// [`MAX_DEVICE_LIST_LEN`] bytes, **not verified** by this crate. Decoding a
/// frame checks only the length; the relay (and a client receiving one)
/// decodes and verifies the bytes with [`DeviceList::from_wire`], see
/// [`DeviceListBytes::verify`]. Keeping the bytes lets the relay answer a
/// list that does not verify with its own error code
/// ([`ErrorCode::InvalidDeviceList`](crate::ErrorCode::InvalidDeviceList))
/// and store and serve the list exactly as its signer encoded it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceListBytes(Vec<u8>);

impl DeviceListBytes {
    /// Checks the length (1 to [`MAX_DEVICE_LIST_LEN`] bytes).
    pub fn new(bytes: Vec<u8>) -> Result<Self, FrameError> {
        Self::checked(None, "device_list", bytes)
    }

    pub(crate) fn checked(
        request_id: Option<u64>,
        field: &'static str,
        bytes: Vec<u8>,
    ) -> Result<Self, FrameError> {
        if bytes.is_empty() {
            Err(FrameError::missing(request_id, field))
        } else if bytes.len() > MAX_DEVICE_LIST_LEN {
            Err(FrameError::invalid(request_id, field))
        } else {
            Ok(Self(bytes))
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Decodes and verifies the list ([`DeviceList::from_wire`]).
    pub fn verify(&self) -> Result<DeviceList, IdentityError> {
        DeviceList::from_wire(&self.0)
    }
}

impl From<&DeviceList> for DeviceListBytes {
    fn from(list: &DeviceList) -> Self {
        Self(list.to_wire())
    }
}

impl std::fmt::Debug for DeviceListBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceListBytes({} bytes)", self.0.len())
    }
}

/// Registers `address` with `identity_key` and logs the connection in. The
/// signature covers [`register_transcript`] with the connection's current
/// challenge. Registering again with the same key is a login.
///
/// The device list must be signed by the user key the user id is bound to
/// (the first registration of a user id binds it) and list the device with
/// `identity_key`. The registration signature does not cover the list: the
/// list is signed by the user key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The device's address.
    pub address: Address,
    /// The device's identity key.
    pub identity_key: IdentityKey,
    /// The client's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The identity key's signature over the registration transcript.
    pub signature: Signature,
    /// The user's signed device list, with this device on it.
    pub device_list: DeviceListBytes,
}

impl Register {
    /// Signs a registration for `address` with `identity` over the
    /// challenge the relay `server_name` issued, presenting `device_list`.
    pub fn sign(
        identity: &IdentityKeyPair,
        server_name: &str,
        challenge: &[u8; CHALLENGE_LEN],
        timestamp_ms: u64,
        address: Address,
        device_list: &DeviceList,
    ) -> Self {
        let identity_key = identity.public_key();
        let transcript = register_transcript(
            server_name,
            challenge,
            timestamp_ms,
            &address,
            &identity_key,
        );
        Self {
            signature: identity.sign(&transcript),
            address,
            identity_key,
            timestamp_ms,
            device_list: device_list.into(),
        }
    }
}

/// Logs the connection in as `address`. The signature covers
/// [`login_transcript`] with the connection's current challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The device's address.
    pub address: Address,
    /// The client's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The identity key's signature over the login transcript.
    pub signature: Signature,
}

impl Login {
    /// Signs a login for `address` with `identity` over the challenge the
    /// relay `server_name` issued.
    pub fn sign(
        identity: &IdentityKeyPair,
        server_name: &str,
        challenge: &[u8; CHALLENGE_LEN],
        timestamp_ms: u64,
        address: Address,
    ) -> Self {
        let transcript = login_transcript(server_name, challenge, timestamp_ms, &address);
        Self {
            signature: identity.sign(&transcript),
            address,
            timestamp_ms,
        }
    }
}

/// A signed prekey: id, key and the identity's signature over the key's
/// encoding (`IdentityKeyPair::sign_prekey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPreKey {
    /// The id the device finds the private key by.
    pub id: u32,
    /// The public key.
    pub key: PublicKey,
    /// The identity's signature over `key`.
    pub signature: Signature,
}

/// A one-time prekey, or the fallback prekey: id and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePreKey {
    /// The id the device finds the private key by.
    pub id: u32,
    /// The public key.
    pub key: PublicKey,
}

/// Prekeys of the logged-in device. A signed, fallback or last-resort KEM
/// prekey replaces the stored one; one-time prekeys and one-time KEM
/// prekeys are added (their ids must be distinct here and from those
/// stored). At least one key must be present.
///
/// KEM prekeys (`tacit-v2`, `docs/PROTOCOL.md` 15.2) are decoded through
/// [`KemPublicKey::from_encoded`], so a value of this type only holds keys
/// that passed the FIPS 203 check; their signatures are checked by the
/// relay against the device's identity key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadPreKeys {
    /// A new signed prekey.
    pub signed_prekey: Option<SignedPreKey>,
    /// A new fallback prekey, handed out when no one-time prekey is left.
    pub fallback_prekey: Option<OneTimePreKey>,
    /// One-time prekeys to add, at most [`MAX_PREKEYS_PER_UPLOAD`].
    pub one_time_prekeys: Vec<OneTimePreKey>,
    /// A new last-resort KEM prekey, handed out when no one-time KEM
    /// prekey is left.
    pub kem_last_resort_prekey: Option<SignedKemPreKey>,
    /// One-time KEM prekeys to add, at most
    /// [`MAX_KEM_PREKEYS_PER_UPLOAD`].
    pub one_time_kem_prekeys: Vec<SignedKemPreKey>,
}

impl UploadPreKeys {
    /// Whether the upload holds no key at all (such an upload is refused).
    pub fn is_empty(&self) -> bool {
        self.signed_prekey.is_none()
            && self.fallback_prekey.is_none()
            && self.one_time_prekeys.is_empty()
            && self.kem_last_resort_prekey.is_none()
            && self.one_time_kem_prekeys.is_empty()
    }
}

/// Fetches the prekey bundles of `user_id`'s devices, or of one device.
/// Each bundle claims one of the device's one-time prekeys, or offers the
/// fallback prekey when none is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchBundles {
    /// The user; checked like an [`Address`]'s user id.
    user_id: String,
    /// One device, or all of the user's devices.
    device_id: Option<DeviceId>,
}

impl FetchBundles {
    /// The bundles of every device of `user_id`.
    pub fn user(user_id: &str) -> Result<Self, FrameError> {
        check_user_id(None, user_id)?;
        Ok(Self {
            user_id: user_id.into(),
            device_id: None,
        })
    }

    /// The bundle of one device.
    pub fn device(address: &Address) -> Self {
        Self {
            user_id: address.user_id().into(),
            device_id: Some(address.device_id()),
        }
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The device, if one was asked for.
    pub fn device_id(&self) -> Option<DeviceId> {
        self.device_id
    }
}

/// A device's delivery token: 16 to 64 bytes the device shares with its
/// correspondents inside encrypted conversations. Submissions from
/// connections that are not logged in must present it once the device has
/// set one. Zeroized when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct DeliveryToken(Vec<u8>);

impl DeliveryToken {
    /// Checks the length (16 to 64 bytes).
    pub fn new(bytes: &[u8]) -> Result<Self, FrameError> {
        Self::checked(None, "delivery_token", bytes)
    }

    pub(crate) fn checked(
        request_id: Option<u64>,
        field: &'static str,
        bytes: &[u8],
    ) -> Result<Self, FrameError> {
        if (MIN_DELIVERY_TOKEN_LEN..=MAX_DELIVERY_TOKEN_LEN).contains(&bytes.len()) {
            Ok(Self(bytes.to_vec()))
        } else {
            Err(FrameError::invalid(request_id, field))
        }
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The token `content` carries as its sender's
    /// ([`Content::delivery_token`](tacit::envelope::Content::delivery_token):
    /// exactly one record of field 16, of wire type 2 and 16 to 64 bytes);
    /// anything else is no token, the content staying valid.
    pub fn carried_by(content: &tacit::envelope::Content) -> Option<Self> {
        content
            .delivery_token()
            .and_then(|token| Self::new(token).ok())
    }
}

impl Drop for DeliveryToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for DeliveryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryToken(<redacted>)")
    }
}

/// A sealed envelope for `recipient`. The relay stores and forwards the
/// envelope without reading it and does not record who submitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The recipient device.
    pub recipient: Address,
    /// The sealed envelope, 1 to [`MAX_ENVELOPE_LEN`] bytes.
    envelope: Vec<u8>,
    /// The recipient's delivery token, if the submitter knows it.
    pub delivery_token: Option<DeliveryToken>,
}

impl Submit {
    /// Checks the envelope's length (1 to [`MAX_ENVELOPE_LEN`] bytes).
    pub fn new(
        recipient: Address,
        envelope: Vec<u8>,
        delivery_token: Option<DeliveryToken>,
    ) -> Result<Self, FrameError> {
        check_envelope(None, &envelope)?;
        Ok(Self {
            recipient,
            envelope,
            delivery_token,
        })
    }

    /// The sealed envelope.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The sealed envelope, by value.
    pub fn into_envelope(self) -> Vec<u8> {
        self.envelope
    }
}

/// Acknowledges messages of the logged-in device's mailbox, deleting them.
/// Either every id is in the mailbox and all are deleted, or the request is
/// refused and nothing is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    message_ids: Vec<u64>,
}

impl Ack {
    /// Checks the list: 1 to [`MAX_ACK_IDS`] ids, none zero, none repeated.
    pub fn new(message_ids: Vec<u64>) -> Result<Self, FrameError> {
        check_ack_ids(None, &message_ids)?;
        Ok(Self { message_ids })
    }

    /// The acknowledged ids.
    pub fn message_ids(&self) -> &[u64] {
        &self.message_ids
    }
}

/// Sets (or with `None` clears) the logged-in device's delivery token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDeliveryToken {
    /// The new token, or none to accept submissions without a token.
    pub token: Option<DeliveryToken>,
}

/// Sets (or with `None` clears) the logged-in device's push endpoint: the
/// URL, at most [`MAX_PUSH_ENDPOINT_LEN`] bytes, to which the relay posts a
/// content-free wake-up when mail lands in the device's mailbox while it is
/// offline. On the wire an empty `url` clears. The frame checks only the
/// length; the relay checks the URL itself (`docs/relay.md`, "Push
/// wake-ups").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPushEndpoint {
    /// The endpoint, or none to clear it.
    pub url: Option<String>,
}

/// Publishes a new signed device list of the logged-in device's user. Its
/// version must be higher than the stored one; registered devices of the
/// user that are not on it (or are on it with another identity key) are
/// removed from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishDeviceList {
    /// The new list.
    pub device_list: DeviceListBytes,
}

/// Fetches the current signed device list of `user_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchDeviceList {
    user_id: String,
}

impl FetchDeviceList {
    /// Checks the user id like an [`Address`]'s.
    pub fn new(user_id: &str) -> Result<Self, FrameError> {
        check_user_id(None, user_id)?;
        Ok(Self {
            user_id: user_id.into(),
        })
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

/// Puts an opaque blob in a link slot (`docs/PROTOCOL.md` 14.7). The slot
/// must be free; the blob lives until it is taken or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPut {
    /// The slot id.
    pub slot: [u8; LINK_SLOT_LEN],
    blob: Vec<u8>,
}

impl LinkPut {
    /// Checks the blob's length (1 to [`MAX_LINK_BLOB_LEN`] bytes).
    pub fn new(slot: [u8; LINK_SLOT_LEN], blob: Vec<u8>) -> Result<Self, FrameError> {
        check_blob(None, &blob)?;
        Ok(Self { slot, blob })
    }

    /// The blob.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The blob, by value.
    pub fn into_blob(self) -> Vec<u8> {
        self.blob
    }
}

/// Reserves an upload slot for an encrypted attachment blob of `size`
/// bytes (1 to [`MAX_ATTACHMENT_BLOB_LEN`](crate::MAX_ATTACHMENT_BLOB_LEN);
/// a relay may cap it lower). The relay answers
/// [`Reply::AttachmentAllocated`](crate::Reply::AttachmentAllocated); the
/// blob then goes over HTTP (`docs/relay.md`, "Attachments").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocateAttachment {
    /// The blob's exact length in bytes.
    pub size: u64,
}

/// Takes the blob of a link slot, deleting it from the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTake {
    /// The slot id.
    pub slot: [u8; LINK_SLOT_LEN],
}

/// The most bytes the per-thread buffer of [`reencodes_to`] keeps between
/// frames; a larger frame is re-encoded into a buffer of its own.
const KEPT_BUFFER: usize = 64 * 1024;

std::thread_local! {
    static REENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `m` encodes to exactly `bytes`. The encoding goes into a buffer
/// kept per thread (up to [`KEPT_BUFFER`] bytes), so checking a frame
/// does not allocate a second copy of it.
fn reencodes_to(m: &proto::ClientFrame, bytes: &[u8]) -> bool {
    REENCODED.with(|cell| {
        let Ok(mut buf) = cell.try_borrow_mut() else {
            return m.encode_to_vec() == bytes;
        };
        buf.clear();
        if buf.capacity() < bytes.len() && bytes.len() > KEPT_BUFFER {
            return m.encode_to_vec() == bytes;
        }
        // The length was checked against `encoded_len`: the buffer has
        // room, and encoding cannot fail.
        let equal = m.encode(&mut *buf).is_ok() && buf.as_slice() == bytes;
        buf.clear();
        equal
    })
}

impl ClientFrame {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Strict decoding, with the protocol's size limit
    /// [`MAX_CLIENT_FRAME_LEN`].
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        Self::decode_with_limit(bytes, MAX_CLIENT_FRAME_LEN)
    }

    /// Strict decoding with a size limit of `max_len` bytes.
    pub fn decode_with_limit(bytes: &[u8], max_len: usize) -> Result<Self, FrameError> {
        if bytes.len() > max_len {
            return Err(FrameError::Oversize {
                len: bytes.len(),
                max: max_len,
            });
        }
        let m = proto::ClientFrame::decode(bytes).map_err(|_| FrameError::Malformed)?;
        let canonical = m.encoded_len() == bytes.len() && reencodes_to(&m, bytes);
        if m.request_id == 0 {
            return Err(if canonical {
                FrameError::MissingRequestId
            } else {
                FrameError::NonCanonical
            });
        }
        let id = Some(m.request_id);
        let Some(request) = m.request else {
            // prost skips fields it does not know: a frame whose request is
            // of an unknown kind decodes with no request.
            return Err(if canonical {
                FrameError::missing(id, "request")
            } else {
                FrameError::UnknownRequest {
                    request_id: m.request_id,
                }
            });
        };
        if !canonical {
            return Err(FrameError::NonCanonical);
        }
        let request = match request {
            client_frame::Request::GetChallenge(_) => Request::GetChallenge,
            client_frame::Request::Register(r) => Request::Register(Register {
                address: address(id, &r.user_id, r.device_id)?,
                identity_key: identity_key(id, "identity_key", &r.identity_key)?,
                timestamp_ms: r.timestamp_ms,
                signature: signature(id, "signature", &r.signature)?,
                device_list: DeviceListBytes::checked(id, "device_list", r.device_list)?,
            }),
            client_frame::Request::Login(r) => Request::Login(Login {
                address: address(id, &r.user_id, r.device_id)?,
                timestamp_ms: r.timestamp_ms,
                signature: signature(id, "signature", &r.signature)?,
            }),
            client_frame::Request::UploadPreKeys(r) => {
                Request::UploadPreKeys(upload_from_proto(id, r)?)
            }
            client_frame::Request::FetchBundles(r) => {
                check_user_id(id, &r.user_id)?;
                if r.device_id == Some(0) {
                    return Err(FrameError::invalid(id, "device_id"));
                }
                Request::FetchBundles(FetchBundles {
                    user_id: r.user_id,
                    device_id: r.device_id,
                })
            }
            client_frame::Request::Submit(r) => {
                check_envelope(id, &r.envelope)?;
                Request::Submit(Submit {
                    recipient: address(id, &r.user_id, r.device_id)?,
                    delivery_token: r
                        .delivery_token
                        .map(|t| DeliveryToken::checked(id, "delivery_token", &t))
                        .transpose()?,
                    envelope: r.envelope,
                })
            }
            client_frame::Request::Ack(r) => {
                check_ack_ids(id, &r.message_ids)?;
                Request::Ack(Ack {
                    message_ids: r.message_ids,
                })
            }
            client_frame::Request::SetDeliveryToken(r) => {
                Request::SetDeliveryToken(SetDeliveryToken {
                    token: r
                        .token
                        .map(|t| DeliveryToken::checked(id, "token", &t))
                        .transpose()?,
                })
            }
            client_frame::Request::SetPushEndpoint(r) => {
                if r.url.len() > MAX_PUSH_ENDPOINT_LEN {
                    return Err(FrameError::invalid(id, "url"));
                }
                Request::SetPushEndpoint(SetPushEndpoint {
                    url: (!r.url.is_empty()).then_some(r.url),
                })
            }
            client_frame::Request::PublishDeviceList(r) => {
                Request::PublishDeviceList(PublishDeviceList {
                    device_list: DeviceListBytes::checked(id, "device_list", r.device_list)?,
                })
            }
            client_frame::Request::FetchDeviceList(r) => {
                check_user_id(id, &r.user_id)?;
                Request::FetchDeviceList(FetchDeviceList { user_id: r.user_id })
            }
            client_frame::Request::LinkPut(r) => {
                let slot = fixed::<LINK_SLOT_LEN>(id, "slot", &r.slot)?;
                check_blob(id, &r.blob)?;
                Request::LinkPut(LinkPut { slot, blob: r.blob })
            }
            client_frame::Request::LinkTake(r) => Request::LinkTake(LinkTake {
                slot: fixed::<LINK_SLOT_LEN>(id, "slot", &r.slot)?,
            }),
            client_frame::Request::SubmitGroup(r) => {
                Request::SubmitGroup(crate::SubmitGroup::from_proto(id, r)?)
            }
            client_frame::Request::AllocateAttachment(r) => {
                if r.size == 0 || r.size > crate::MAX_ATTACHMENT_BLOB_LEN {
                    return Err(FrameError::invalid(id, "size"));
                }
                Request::AllocateAttachment(AllocateAttachment { size: r.size })
            }
        };
        Ok(Self {
            request_id: m.request_id,
            request,
        })
    }

    fn to_proto(&self) -> proto::ClientFrame {
        let request = match &self.request {
            Request::GetChallenge => client_frame::Request::GetChallenge(proto::Empty {}),
            Request::Register(r) => client_frame::Request::Register(proto::Register {
                user_id: r.address.user_id().into(),
                device_id: r.address.device_id(),
                identity_key: r.identity_key.to_bytes().to_vec(),
                timestamp_ms: r.timestamp_ms,
                signature: r.signature.to_bytes().to_vec(),
                device_list: r.device_list.0.clone(),
            }),
            Request::Login(r) => client_frame::Request::Login(proto::Login {
                user_id: r.address.user_id().into(),
                device_id: r.address.device_id(),
                timestamp_ms: r.timestamp_ms,
                signature: r.signature.to_bytes().to_vec(),
            }),
            Request::UploadPreKeys(r) => {
                client_frame::Request::UploadPreKeys(proto::UploadPreKeys {
                    signed_prekey: r.signed_prekey.map(|k| proto::SignedPreKey {
                        id: k.id,
                        key: k.key.to_bytes().to_vec(),
                        signature: k.signature.to_bytes().to_vec(),
                    }),
                    fallback_prekey: r.fallback_prekey.map(prekey_to_proto),
                    one_time_prekeys: r
                        .one_time_prekeys
                        .iter()
                        .copied()
                        .map(prekey_to_proto)
                        .collect(),
                    kem_last_resort_prekey: r.kem_last_resort_prekey.as_ref().map(kem_to_proto),
                    one_time_kem_prekeys: r.one_time_kem_prekeys.iter().map(kem_to_proto).collect(),
                })
            }
            Request::FetchBundles(r) => client_frame::Request::FetchBundles(proto::FetchBundles {
                user_id: r.user_id.clone(),
                device_id: r.device_id,
            }),
            Request::Submit(r) => client_frame::Request::Submit(proto::Submit {
                user_id: r.recipient.user_id().into(),
                device_id: r.recipient.device_id(),
                envelope: r.envelope.clone(),
                delivery_token: r.delivery_token.as_ref().map(|t| t.0.clone()),
            }),
            Request::Ack(r) => client_frame::Request::Ack(proto::Ack {
                message_ids: r.message_ids.clone(),
            }),
            Request::SetDeliveryToken(r) => {
                client_frame::Request::SetDeliveryToken(proto::SetDeliveryToken {
                    token: r.token.as_ref().map(|t| t.0.clone()),
                })
            }
            Request::SetPushEndpoint(r) => {
                client_frame::Request::SetPushEndpoint(proto::SetPushEndpoint {
                    url: r.url.clone().unwrap_or_default(),
                })
            }
            Request::PublishDeviceList(r) => {
                client_frame::Request::PublishDeviceList(proto::PublishDeviceList {
                    device_list: r.device_list.0.clone(),
                })
            }
            Request::FetchDeviceList(r) => {
                client_frame::Request::FetchDeviceList(proto::FetchDeviceList {
                    user_id: r.user_id.clone(),
                })
            }
            Request::LinkPut(r) => client_frame::Request::LinkPut(proto::LinkPut {
                slot: r.slot.to_vec(),
                blob: r.blob.clone(),
            }),
            Request::LinkTake(r) => client_frame::Request::LinkTake(proto::LinkTake {
                slot: r.slot.to_vec(),
            }),
            Request::SubmitGroup(r) => client_frame::Request::SubmitGroup(r.to_proto()),
            Request::AllocateAttachment(r) => {
                client_frame::Request::AllocateAttachment(proto::AllocateAttachment {
                    size: r.size,
                })
            }
        };
        proto::ClientFrame {
            request_id: self.request_id,
            request: Some(request),
        }
    }
}

fn prekey_to_proto(k: OneTimePreKey) -> proto::PreKey {
    proto::PreKey {
        id: k.id,
        key: k.key.to_bytes().to_vec(),
    }
}

fn kem_to_proto(k: &SignedKemPreKey) -> proto::SignedPreKey {
    proto::SignedPreKey {
        id: k.id,
        key: k.key.to_encoded(),
        signature: k.signature.to_bytes().to_vec(),
    }
}

/// A KEM prekey: `EncodeKEM` bytes decoded and checked (length, type byte,
/// FIPS 203 encapsulation-key check), and a 64-byte signature.
fn kem_from_proto(
    id: Option<u64>,
    fields: [&'static str; 2],
    k: &proto::SignedPreKey,
) -> Result<SignedKemPreKey, FrameError> {
    if k.key.is_empty() {
        return Err(FrameError::missing(id, fields[0]));
    }
    Ok(SignedKemPreKey {
        id: k.id,
        key: KemPublicKey::from_encoded(&k.key).map_err(|_| FrameError::invalid(id, fields[0]))?,
        signature: signature(id, fields[1], &k.signature)?,
    })
}

fn upload_from_proto(
    id: Option<u64>,
    r: proto::UploadPreKeys,
) -> Result<UploadPreKeys, FrameError> {
    let signed_prekey = r
        .signed_prekey
        .map(|k| {
            Ok::<_, FrameError>(SignedPreKey {
                id: k.id,
                key: public_key(id, "signed_prekey.key", &k.key)?,
                signature: signature(id, "signed_prekey.signature", &k.signature)?,
            })
        })
        .transpose()?;
    let fallback_prekey = r
        .fallback_prekey
        .map(|k| {
            Ok::<_, FrameError>(OneTimePreKey {
                id: k.id,
                key: public_key(id, "fallback_prekey.key", &k.key)?,
            })
        })
        .transpose()?;
    if r.one_time_prekeys.len() > MAX_PREKEYS_PER_UPLOAD {
        return Err(FrameError::invalid(id, "one_time_prekeys"));
    }
    let mut one_time_prekeys = Vec::with_capacity(r.one_time_prekeys.len());
    let mut ids = std::collections::BTreeSet::new();
    for k in &r.one_time_prekeys {
        if !ids.insert(k.id) {
            return Err(FrameError::invalid(id, "one_time_prekeys.id"));
        }
        one_time_prekeys.push(OneTimePreKey {
            id: k.id,
            key: public_key(id, "one_time_prekeys.key", &k.key)?,
        });
    }
    let kem_last_resort_prekey = r
        .kem_last_resort_prekey
        .as_ref()
        .map(|k| {
            kem_from_proto(
                id,
                [
                    "kem_last_resort_prekey.key",
                    "kem_last_resort_prekey.signature",
                ],
                k,
            )
        })
        .transpose()?;
    if r.one_time_kem_prekeys.len() > MAX_KEM_PREKEYS_PER_UPLOAD {
        return Err(FrameError::invalid(id, "one_time_kem_prekeys"));
    }
    // KEM prekey ids are one space: the last-resort key's id is not one of
    // the one-time keys' either.
    let mut kem_ids: std::collections::BTreeSet<u32> =
        kem_last_resort_prekey.iter().map(|k| k.id).collect();
    let mut one_time_kem_prekeys = Vec::with_capacity(r.one_time_kem_prekeys.len());
    for k in &r.one_time_kem_prekeys {
        if !kem_ids.insert(k.id) {
            return Err(FrameError::invalid(id, "one_time_kem_prekeys.id"));
        }
        one_time_kem_prekeys.push(kem_from_proto(
            id,
            ["one_time_kem_prekeys.key", "one_time_kem_prekeys.signature"],
            k,
        )?);
    }
    let upload = UploadPreKeys {
        signed_prekey,
        fallback_prekey,
        one_time_prekeys,
        kem_last_resort_prekey,
        one_time_kem_prekeys,
    };
    if upload.is_empty() {
        return Err(FrameError::missing(id, "prekeys"));
    }
    Ok(upload)
}

fn check_user_id(id: Option<u64>, user_id: &str) -> Result<(), FrameError> {
    if user_id.is_empty() {
        return Err(FrameError::missing(id, "user_id"));
    }
    Address::new(user_id, 1)
        .map(|_| ())
        .map_err(|_| FrameError::invalid(id, "user_id"))
}

pub(crate) fn address(
    id: Option<u64>,
    user_id: &str,
    device_id: u32,
) -> Result<Address, FrameError> {
    check_user_id(id, user_id)?;
    Address::new(user_id, device_id).map_err(|_| FrameError::invalid(id, "device_id"))
}

fn check_envelope(id: Option<u64>, envelope: &[u8]) -> Result<(), FrameError> {
    if envelope.is_empty() {
        Err(FrameError::missing(id, "envelope"))
    } else if envelope.len() > MAX_ENVELOPE_LEN {
        Err(FrameError::invalid(id, "envelope"))
    } else {
        Ok(())
    }
}

pub(crate) fn check_blob(id: Option<u64>, blob: &[u8]) -> Result<(), FrameError> {
    if blob.is_empty() {
        Err(FrameError::missing(id, "blob"))
    } else if blob.len() > MAX_LINK_BLOB_LEN {
        Err(FrameError::invalid(id, "blob"))
    } else {
        Ok(())
    }
}

fn check_ack_ids(id: Option<u64>, ids: &[u64]) -> Result<(), FrameError> {
    if ids.is_empty() {
        return Err(FrameError::missing(id, "message_ids"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if ids.len() > MAX_ACK_IDS || ids.iter().any(|&m| m == 0 || !seen.insert(m)) {
        return Err(FrameError::invalid(id, "message_ids"));
    }
    Ok(())
}

fn fixed<const N: usize>(
    id: Option<u64>,
    field: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], FrameError> {
    if bytes.is_empty() {
        return Err(FrameError::missing(id, field));
    }
    bytes.try_into().map_err(|_| FrameError::invalid(id, field))
}

pub(crate) fn identity_key(
    id: Option<u64>,
    field: &'static str,
    bytes: &[u8],
) -> Result<IdentityKey, FrameError> {
    IdentityKey::from_bytes(&fixed::<KEY_LEN>(id, field, bytes)?)
        .map_err(|_| FrameError::invalid(id, field))
}

fn public_key(id: Option<u64>, field: &'static str, bytes: &[u8]) -> Result<PublicKey, FrameError> {
    fixed::<KEY_LEN>(id, field, bytes).map(PublicKey::from_bytes)
}

fn signature(id: Option<u64>, field: &'static str, bytes: &[u8]) -> Result<Signature, FrameError> {
    fixed::<SIGNATURE_LEN>(id, field, bytes).map(Signature::from_bytes)
}
