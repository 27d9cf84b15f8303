//! Server frames: responses and pushes.

use prost::Message as _;
use tacit::wire::{PreKeyBundleMessage, WireMessage as _};
use tacit::DeviceId;

use crate::client::{check_blob, DeviceListBytes};
use crate::error::{ErrorCode, FrameError};
use crate::group::{EnvelopeKind, MAX_GROUP_RECIPIENTS};
use crate::proto::{self, response, server_frame};
use crate::{
    decode_canonical, CHALLENGE_LEN, MAX_DEVICES_PER_USER, MAX_ENVELOPE_LEN, MAX_ERROR_MESSAGE_LEN,
    MAX_SERVER_FRAME_LEN, MAX_SERVER_NAME_LEN,
};

/// What the relay sends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerFrame {
    /// The answer to a request.
    Response(Response),
    /// A message from the logged-in device's mailbox. Acknowledge it with
    /// [`Ack`](crate::Ack) once it is safely processed; until then it is
    /// pushed again on every new login.
    Push(Push),
    /// Every message stored when the connection logged in has been pushed;
    /// later messages are pushed as they arrive.
    QueueEmpty,
    /// The device's stock of one-time prekeys, or of one-time KEM prekeys
    /// (for a device that published a last-resort KEM prekey), is low:
    /// upload more.
    PreKeysLow {
        /// One-time prekeys left.
        remaining: u32,
        /// One-time KEM prekeys left.
        kem_remaining: u32,
    },
    /// Messages for this device expired undelivered and were deleted since
    /// the last report.
    MessagesExpired {
        /// How many.
        count: u64,
    },
}

/// The answer to the request with id `request_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's id; 0 when the request's id could not be read.
    pub request_id: u64,
    /// The result.
    pub result: Result<Reply, ErrorReply>,
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Answers `GetChallenge`.
    Challenge(Challenge),
    /// Answers `Login` and `Register`.
    LoggedIn(LoggedIn),
    /// Answers `UploadPreKeys`.
    PreKeysStored {
        /// One-time prekeys now stored.
        one_time_prekeys: u32,
        /// One-time KEM prekeys now stored.
        one_time_kem_prekeys: u32,
    },
    /// Answers `FetchBundles`: the user's signed device list and one bundle
    /// per device, in device order.
    Bundles(Bundles),
    /// Answers `Submit`: the envelope is durably stored.
    Submitted {
        /// The message's id in the recipient's mailbox.
        message_id: u64,
    },
    /// Answers `SubmitGroup`: a group envelope is durably queued for every
    /// recipient.
    SubmittedGroup {
        /// How many were queued: the number of recipients.
        queued: u32,
    },
    /// Answers `Ack`: the messages are deleted.
    Acked {
        /// How many were deleted.
        removed: u32,
    },
    /// Answers `SetDeliveryToken`.
    DeliveryTokenSet,
    /// Answers `SetPushEndpoint`.
    PushEndpointSet,
    /// Answers `PublishDeviceList`: the list is stored.
    DeviceListStored {
        /// The stored list's version.
        version: u64,
    },
    /// Answers `FetchDeviceList`: the user's current signed list, not
    /// verified by this crate ([`DeviceListBytes::verify`]).
    DeviceList(DeviceListBytes),
    /// Answers `LinkPut`: the blob is in the slot.
    LinkStored,
    /// Answers `LinkTake`: the slot's blob, 1 to
    /// [`MAX_LINK_BLOB_LEN`](crate::MAX_LINK_BLOB_LEN) bytes, deleted from
    /// the relay.
    LinkBlob(Vec<u8>),
    /// Answers `AllocateAttachment`: the slot's id (the download
    /// capability), the secret upload token, and when the attachment
    /// expires (milliseconds since the Unix epoch).
    AttachmentAllocated {
        /// The attachment's id.
        id: [u8; crate::ATTACHMENT_ID_LEN],
        /// The token that authorizes the one upload.
        upload_token: [u8; crate::ATTACHMENT_TOKEN_LEN],
        /// When the relay deletes the attachment.
        expires_ms: u64,
    },
}

/// The answer to `FetchBundles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundles {
    /// The user's current signed device list, as the relay stores it (not
    /// verified by this crate: [`DeviceListBytes::verify`]). Every bundle
    /// is of a device on it.
    pub device_list: DeviceListBytes,
    /// One bundle per device with a signed prekey, in device order.
    pub bundles: Vec<DeviceBundle>,
}

/// A login challenge, good for one attempt on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// 32 random bytes.
    pub challenge: [u8; CHALLENGE_LEN],
    /// The relay's name, part of the signed transcript.
    pub server_name: String,
    /// The relay's clock, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
}

/// The connection is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedIn {
    /// The device was registered by this request.
    pub registered: bool,
    /// One-time prekeys stored for the device.
    pub one_time_prekeys: u32,
    /// The device has a signed prekey stored (and can be fetched).
    pub has_signed_prekey: bool,
    /// One-time KEM prekeys stored for the device.
    pub one_time_kem_prekeys: u32,
    /// The device has a last-resort KEM prekey stored (its bundles are
    /// version 2, for `tacit-v2` sessions).
    pub has_kem_prekey: bool,
}

/// One device's prekey bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBundle {
    /// The device.
    pub device_id: DeviceId,
    /// Its bundle; the one-time prekey in it was claimed for this answer
    /// alone.
    pub bundle: PreKeyBundleMessage,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// Why.
    pub code: ErrorCode,
    /// A human-readable explanation, at most [`MAX_ERROR_MESSAGE_LEN`]
    /// bytes.
    pub message: String,
    /// When rate limited: how long to wait before retrying.
    pub retry_after_ms: Option<u64>,
}

impl ErrorReply {
    /// An error with a message (cut to [`MAX_ERROR_MESSAGE_LEN`] bytes).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE_LEN {
            let mut end = MAX_ERROR_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self {
            code,
            message,
            retry_after_ms: None,
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorReply {}

/// A mailbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The message's id: unique on this relay, increasing in arrival
    /// order; a client drops a message whose id it has seen.
    pub message_id: u64,
    /// When the relay stored it, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
    /// The envelope: as submitted (a sealed envelope), or composed by the
    /// relay (a group envelope).
    pub envelope: Vec<u8>,
    /// Which kind of envelope [`envelope`](Self::envelope) is.
    pub kind: EnvelopeKind,
}

impl ServerFrame {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let kind = match self {
            Self::Response(r) => server_frame::Kind::Response(response_to_proto(r)),
            Self::Push(p) => server_frame::Kind::Push(proto::Push {
                message_id: p.message_id,
                server_time_ms: p.server_time_ms,
                envelope: p.envelope.clone(),
                envelope_kind: p.kind.as_u32(),
            }),
            Self::QueueEmpty => server_frame::Kind::QueueEmpty(proto::Empty {}),
            Self::PreKeysLow {
                remaining,
                kem_remaining,
            } => server_frame::Kind::PreKeysLow(proto::PreKeysLow {
                remaining: *remaining,
                kem_remaining: *kem_remaining,
            }),
            Self::MessagesExpired { count } => {
                server_frame::Kind::MessagesExpired(proto::MessagesExpired { count: *count })
            }
        };
        proto::ServerFrame { kind: Some(kind) }.encode_to_vec()
    }

    /// The canonical encoding, as [`ServerFrame::encode`], moving a push's
    /// envelope into the encoder instead of copying it first.
    pub fn into_encoded(self) -> Vec<u8> {
        match self {
            Self::Push(p) => proto::ServerFrame {
                kind: Some(server_frame::Kind::Push(proto::Push {
                    message_id: p.message_id,
                    server_time_ms: p.server_time_ms,
                    envelope: p.envelope,
                    envelope_kind: p.kind.as_u32(),
                })),
            }
            .encode_to_vec(),
            other => other.encode(),
        }
    }

    /// Strict decoding, with the limit [`MAX_SERVER_FRAME_LEN`].
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let m: proto::ServerFrame = decode_canonical(bytes, MAX_SERVER_FRAME_LEN)?;
        match m.kind.ok_or(FrameError::missing(None, "kind"))? {
            server_frame::Kind::Response(r) => response_from_proto(r).map(Self::Response),
            server_frame::Kind::Push(p) => {
                if p.message_id == 0 {
                    return Err(FrameError::invalid(None, "message_id"));
                }
                if p.envelope.is_empty() || p.envelope.len() > MAX_ENVELOPE_LEN {
                    return Err(FrameError::invalid(None, "envelope"));
                }
                let kind = EnvelopeKind::from_u32(p.envelope_kind)
                    .ok_or(FrameError::invalid(None, "envelope_kind"))?;
                Ok(Self::Push(Push {
                    message_id: p.message_id,
                    server_time_ms: p.server_time_ms,
                    envelope: p.envelope,
                    kind,
                }))
            }
            server_frame::Kind::QueueEmpty(_) => Ok(Self::QueueEmpty),
            server_frame::Kind::PreKeysLow(p) => Ok(Self::PreKeysLow {
                remaining: p.remaining,
                kem_remaining: p.kem_remaining,
            }),
            server_frame::Kind::MessagesExpired(p) => {
                if p.count == 0 {
                    return Err(FrameError::invalid(None, "count"));
                }
                Ok(Self::MessagesExpired { count: p.count })
            }
        }
    }
}

fn response_to_proto(r: &Response) -> proto::Response {
    let outcome = match &r.result {
        Err(e) => response::Outcome::Error(proto::Error {
            code: e.code.as_u32(),
            message: e.message.clone(),
            retry_after_ms: e.retry_after_ms,
        }),
        Ok(Reply::Challenge(c)) => response::Outcome::Challenge(proto::Challenge {
            challenge: c.challenge.to_vec(),
            server_name: c.server_name.clone(),
            server_time_ms: c.server_time_ms,
        }),
        Ok(Reply::LoggedIn(l)) => response::Outcome::LoggedIn(proto::LoggedIn {
            registered: l.registered,
            one_time_prekeys: l.one_time_prekeys,
            has_signed_prekey: l.has_signed_prekey,
            one_time_kem_prekeys: l.one_time_kem_prekeys,
            has_kem_prekey: l.has_kem_prekey,
        }),
        Ok(Reply::PreKeysStored {
            one_time_prekeys,
            one_time_kem_prekeys,
        }) => response::Outcome::PreKeysStored(proto::PreKeysStored {
            one_time_prekeys: *one_time_prekeys,
            one_time_kem_prekeys: *one_time_kem_prekeys,
        }),
        Ok(Reply::Bundles(b)) => response::Outcome::Bundles(proto::Bundles {
            device_list: b.device_list.as_bytes().to_vec(),
            bundles: b
                .bundles
                .iter()
                .map(|b| proto::DeviceBundle {
                    device_id: b.device_id,
                    bundle: b.bundle.to_wire(),
                })
                .collect(),
        }),
        Ok(Reply::Submitted { message_id }) => response::Outcome::Submitted(proto::Submitted {
            message_id: *message_id,
        }),
        Ok(Reply::SubmittedGroup { queued }) => {
            response::Outcome::SubmittedGroup(proto::SubmittedGroup { queued: *queued })
        }
        Ok(Reply::Acked { removed }) => {
            response::Outcome::Acked(proto::Acked { removed: *removed })
        }
        Ok(Reply::DeliveryTokenSet) => response::Outcome::DeliveryTokenSet(proto::Empty {}),
        Ok(Reply::PushEndpointSet) => response::Outcome::PushEndpointSet(proto::Empty {}),
        Ok(Reply::DeviceListStored { version }) => {
            response::Outcome::DeviceListStored(proto::DeviceListStored { version: *version })
        }
        Ok(Reply::DeviceList(list)) => response::Outcome::DeviceList(proto::DeviceList {
            device_list: list.as_bytes().to_vec(),
        }),
        Ok(Reply::LinkStored) => response::Outcome::LinkStored(proto::Empty {}),
        Ok(Reply::LinkBlob(blob)) => {
            response::Outcome::LinkBlob(proto::LinkBlob { blob: blob.clone() })
        }
        Ok(Reply::AttachmentAllocated {
            id,
            upload_token,
            expires_ms,
        }) => response::Outcome::AttachmentAllocated(proto::AttachmentAllocated {
            id: id.to_vec(),
            upload_token: upload_token.to_vec(),
            expires_ms: *expires_ms,
        }),
    };
    proto::Response {
        request_id: r.request_id,
        outcome: Some(outcome),
    }
}

fn response_from_proto(r: proto::Response) -> Result<Response, FrameError> {
    let result = match r.outcome.ok_or(FrameError::missing(None, "outcome"))? {
        response::Outcome::Error(e) => {
            let code =
                ErrorCode::from_u32(e.code).ok_or(FrameError::invalid(None, "error.code"))?;
            if e.message.len() > MAX_ERROR_MESSAGE_LEN {
                return Err(FrameError::invalid(None, "error.message"));
            }
            Err(ErrorReply {
                code,
                message: e.message,
                retry_after_ms: e.retry_after_ms,
            })
        }
        response::Outcome::Challenge(c) => {
            let challenge = c
                .challenge
                .as_slice()
                .try_into()
                .map_err(|_| FrameError::invalid(None, "challenge"))?;
            if c.server_name.is_empty() || c.server_name.len() > MAX_SERVER_NAME_LEN {
                return Err(FrameError::invalid(None, "server_name"));
            }
            Ok(Reply::Challenge(Challenge {
                challenge,
                server_name: c.server_name,
                server_time_ms: c.server_time_ms,
            }))
        }
        response::Outcome::LoggedIn(l) => Ok(Reply::LoggedIn(LoggedIn {
            registered: l.registered,
            one_time_prekeys: l.one_time_prekeys,
            has_signed_prekey: l.has_signed_prekey,
            one_time_kem_prekeys: l.one_time_kem_prekeys,
            has_kem_prekey: l.has_kem_prekey,
        })),
        response::Outcome::PreKeysStored(p) => Ok(Reply::PreKeysStored {
            one_time_prekeys: p.one_time_prekeys,
            one_time_kem_prekeys: p.one_time_kem_prekeys,
        }),
        response::Outcome::Bundles(b) => {
            if b.bundles.len() > MAX_DEVICES_PER_USER {
                return Err(FrameError::invalid(None, "bundles"));
            }
            let mut bundles = Vec::with_capacity(b.bundles.len());
            for d in b.bundles {
                let previous = bundles.last().map(|b: &DeviceBundle| b.device_id);
                if d.device_id == 0 || previous.is_some_and(|p| p >= d.device_id) {
                    return Err(FrameError::invalid(None, "bundles.device_id"));
                }
                bundles.push(DeviceBundle {
                    device_id: d.device_id,
                    bundle: PreKeyBundleMessage::from_wire(&d.bundle)
                        .map_err(|_| FrameError::invalid(None, "bundles.bundle"))?,
                });
            }
            Ok(Reply::Bundles(Bundles {
                device_list: DeviceListBytes::checked(None, "device_list", b.device_list)?,
                bundles,
            }))
        }
        response::Outcome::Submitted(s) => {
            if s.message_id == 0 {
                return Err(FrameError::invalid(None, "message_id"));
            }
            Ok(Reply::Submitted {
                message_id: s.message_id,
            })
        }
        response::Outcome::SubmittedGroup(s) => {
            if s.queued == 0 || usize::try_from(s.queued).map_or(true, |n| n > MAX_GROUP_RECIPIENTS)
            {
                return Err(FrameError::invalid(None, "queued"));
            }
            Ok(Reply::SubmittedGroup { queued: s.queued })
        }
        response::Outcome::Acked(a) => Ok(Reply::Acked { removed: a.removed }),
        response::Outcome::DeliveryTokenSet(_) => Ok(Reply::DeliveryTokenSet),
        response::Outcome::PushEndpointSet(_) => Ok(Reply::PushEndpointSet),
        response::Outcome::DeviceListStored(d) => {
            if d.version == 0 {
                return Err(FrameError::invalid(None, "version"));
            }
            Ok(Reply::DeviceListStored { version: d.version })
        }
        response::Outcome::DeviceList(d) => Ok(Reply::DeviceList(DeviceListBytes::checked(
            None,
            "device_list",
            d.device_list,
        )?)),
        response::Outcome::LinkStored(_) => Ok(Reply::LinkStored),
        response::Outcome::LinkBlob(b) => {
            check_blob(None, &b.blob)?;
            Ok(Reply::LinkBlob(b.blob))
        }
        response::Outcome::AttachmentAllocated(a) => Ok(Reply::AttachmentAllocated {
            id: a
                .id
                .as_slice()
                .try_into()
                .map_err(|_| FrameError::invalid(None, "id"))?,
            upload_token: a
                .upload_token
                .as_slice()
                .try_into()
                .map_err(|_| FrameError::invalid(None, "upload_token"))?,
            expires_ms: a.expires_ms,
        }),
    };
    Ok(Response {
        request_id: r.request_id,
        result,
    })
}
