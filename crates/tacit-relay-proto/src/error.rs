//! Decoding errors and the relay's error codes.

use thiserror::Error;

/// Bytes that do not decode as the frame they should be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is longer than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a protobuf message of the frame's type.
    #[error("malformed frame")]
    Malformed,
    /// The frame decodes but is not in canonical form (unknown fields,
    /// fields out of order or repeated, default values written out,
    /// non-minimal varints, unpacked repeated numbers).
    #[error("frame is not canonically encoded")]
    NonCanonical,
    /// A client frame without a request id (ids start at 1).
    #[error("request id 0")]
    MissingRequestId,
    /// A well-formed client frame whose request kind this version does not
    /// know.
    #[error("unknown request kind in request {request_id}")]
    UnknownRequest {
        /// The request's id.
        request_id: u64,
    },
    /// A required field is absent.
    #[error("missing field {field}")]
    MissingField {
        /// The request's id (client frames only).
        request_id: Option<u64>,
        /// The field.
        field: &'static str,
    },
    /// A field holds a value outside its range: a wrong length, an invalid
    /// key or address, too many items, a duplicate id, an unknown code.
    #[error("invalid field {field}")]
    InvalidField {
        /// The request's id (client frames only).
        request_id: Option<u64>,
        /// The field.
        field: &'static str,
    },
}

impl FrameError {
    /// The id of the request the frame carried, when it could be read.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::UnknownRequest { request_id } => Some(*request_id),
            Self::MissingField { request_id, .. } | Self::InvalidField { request_id, .. } => {
                *request_id
            }
            _ => None,
        }
    }

    /// The error code a relay answers this decoding error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Oversize { .. } => ErrorCode::FrameTooLarge,
            Self::Malformed | Self::NonCanonical | Self::MissingRequestId => {
                ErrorCode::MalformedFrame
            }
            Self::UnknownRequest { .. } => ErrorCode::UnknownRequest,
            Self::MissingField { .. } | Self::InvalidField { .. } => ErrorCode::InvalidRequest,
        }
    }

    pub(crate) fn missing(request_id: Option<u64>, field: &'static str) -> Self {
        Self::MissingField { request_id, field }
    }

    pub(crate) fn invalid(request_id: Option<u64>, field: &'static str) -> Self {
        Self::InvalidField { request_id, field }
    }
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// Why the relay refused a request or a frame. The numbers are the
        /// wire values.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ErrorCode {
            /// Every code, in wire order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code of a wire value, if it is one.
            pub fn from_u32(value: u32) -> Option<Self> {
                match value {
                    $($value => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// The wire value.
            pub fn as_u32(self) -> u32 {
                self as u32
            }

            /// The variant name, used in logs and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                }
            }
        }
    };
}

error_codes! {
    /// The frame is not a well-formed, canonically encoded client frame
    /// (or not a binary WebSocket message).
    MalformedFrame = 1,
    /// The frame exceeds the relay's size limit; the relay closes the
    /// connection after this error.
    FrameTooLarge = 2,
    /// The request kind is unknown to this relay.
    UnknownRequest = 3,
    /// A field of the request is missing or out of range.
    InvalidRequest = 4,
    /// The request needs a logged-in connection.
    NotAuthenticated = 5,
    /// The connection is already logged in.
    AlreadyAuthenticated = 6,
    /// There is no live challenge on this connection: none was asked for,
    /// it was used by an earlier attempt (a replay), or it expired.
    NoChallenge = 7,
    /// The login timestamp is outside the accepted window.
    StaleTimestamp = 8,
    /// The login or registration signature does not verify.
    BadSignature = 9,
    /// No device is registered at that address.
    UnknownDevice = 10,
    /// The address is registered with another identity key.
    AddressTaken = 11,
    /// The user has the most devices allowed.
    TooManyDevices = 12,
    /// The device has not uploaded a signed prekey.
    NoPreKeys = 13,
    /// A prekey upload is refused: a bad signed-prekey signature, an empty
    /// upload, or a one-time prekey id already stored.
    InvalidPreKeys = 14,
    /// The upload would store more one-time prekeys than allowed.
    TooManyPreKeys = 15,
    /// The recipient requires a delivery token and none, or a wrong one,
    /// was presented.
    DeliveryTokenRefused = 16,
    /// The recipient's queue is full.
    QueueFull = 17,
    /// An acknowledged id is not a message in this device's mailbox;
    /// nothing was deleted.
    UnknownMessage = 18,
    /// Too many requests; retry later.
    RateLimited = 19,
    /// The relay is shutting down.
    ShuttingDown = 20,
    /// The relay failed internally; nothing was changed.
    Internal = 21,
    /// Another connection logged in as this device; this one is closed.
    Superseded = 22,
    /// Too many refused frames or logins on this connection; it is closed.
    TooManyErrors = 23,
    /// The relay's storage is full (its disk, or its configured size
    /// limit); nothing was changed. Stored messages are still delivered and
    /// can be acknowledged; retry later.
    StorageFull = 24,
    /// The device list does not decode or verify, names another user id,
    /// or has the stored version with other bytes.
    InvalidDeviceList = 25,
    /// The device list's version is not higher than the stored one where a
    /// higher one is required (a publication), or is lower (a
    /// registration).
    StaleDeviceList = 26,
    /// The device list is signed by another user key than the one the
    /// user id is bound to.
    UserKeyMismatch = 27,
    /// The registering device, with its identity key, is not on the device
    /// list it presented.
    NotOnDeviceList = 28,
    /// A link slot is occupied (for a put), or empty or expired (for a
    /// take).
    LinkSlotUnavailable = 29,
    /// The device was removed from its user's device list; its connection
    /// is closed after this error and it can no longer log in.
    DeviceRemoved = 30,
    /// No user with that id is known to the relay.
    UnknownUser = 31,
    /// An attachment is larger than the relay accepts.
    AttachmentTooLarge = 32,
    /// The account's stored attachments would exceed its quota; retry
    /// after some expire.
    AttachmentQuotaExceeded = 33,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
