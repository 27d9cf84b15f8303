//! Error types, one enum per concern.
//!
//! Every fallible operation in this crate returns one of these. None of them
//! carries secret material, so they are safe to log.

use thiserror::Error;

/// A key received from outside could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An identity key that does not decode as an Edwards point.
    #[error("identity key is not a valid Edwards point")]
    InvalidIdentityKey,
    /// An identity key of small order (its order divides 8).
    #[error("identity key is of small order")]
    WeakIdentityKey,
    /// A signature that fails strict Ed25519 verification.
    #[error("signature verification failed")]
    InvalidSignature,
    /// A Diffie-Hellman output of all zeros: the peer's public key is of
    /// small order or otherwise invalid.
    #[error("Diffie-Hellman output is all zeros (small-order public key)")]
    SmallOrderPublicKey,
    /// A byte string of the wrong length for the key it should hold.
    #[error("expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// The length the key type requires.
        expected: usize,
        /// The length that was supplied.
        actual: usize,
    },
}

/// The X3DH handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum X3dhError {
    /// The signed prekey's signature failed strict verification.
    #[error("signed prekey signature is invalid")]
    InvalidSignature,
    /// One of the Diffie-Hellman outputs was all zeros.
    #[error("a Diffie-Hellman output is all zeros (small-order key)")]
    SmallOrderKey,
}

/// Session keys handed to the ratchet were unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InitError {
    /// The associated data is longer than [`crate::ratchet::MAX_ASSOCIATED_DATA_LEN`].
    #[error("associated data of {0} bytes is too long")]
    AssociatedDataTooLong(usize),
    /// The remote ratchet key gives an all-zero Diffie-Hellman output.
    #[error("remote ratchet key is of small order")]
    SmallOrderKey,
}

/// A message could not be encrypted. The session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// This party has no sending chain yet: the responder must receive the
    /// initiator's first message before it can send.
    #[error("no sending chain yet: a message from the peer must arrive first")]
    NoSendingChain,
    /// The sending chain has sent 2^32 - 1 messages; it cannot go on.
    #[error("sending chain exhausted")]
    ChainExhausted,
    /// The plaintext is longer than the AEAD accepts.
    #[error("plaintext too long")]
    PlaintextTooLong,
}

/// A message could not be decrypted. The session is byte-for-byte
/// unchanged, and no randomness was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The message is shorter than an encrypted header plus a tag.
    #[error("message too short")]
    MessageTooShort,
    /// The header opens under none of the session's header keys: a message
    /// of another session, of a chain long gone, or a tampered header.
    #[error("header does not decrypt under any known header key")]
    UnknownHeaderKey,
    /// The message would need more skipped message keys than `max_skip`.
    #[error("too many skipped messages")]
    TooManySkipped,
    /// The header opened but the message key is gone: the message was
    /// already decrypted (a replay) or its skipped key was evicted.
    #[error("message already decrypted, or its key was discarded")]
    DuplicateMessage,
    /// The ciphertext failed authentication.
    #[error("message authentication failed")]
    AuthenticationFailed,
    /// The peer's new ratchet key gives an all-zero Diffie-Hellman output.
    #[error("peer ratchet key is of small order")]
    SmallOrderKey,
}

/// A serialized session could not be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The record is empty.
    #[error("empty session record")]
    Empty,
    /// The record's format version is not one this build reads.
    #[error("unknown session record version {0}")]
    UnknownVersion(u8),
    /// The record does not decode, has trailing bytes, or violates an
    /// invariant of the session state.
    #[error("corrupt session record")]
    Corrupt,
}

/// A user id or device id that cannot form an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The user id is empty or longer than 64 bytes.
    #[error("user id of {0} bytes (must be 1 to 64)")]
    UserIdLength(usize),
    /// The user id contains control characters.
    #[error("user id contains control characters")]
    UserIdCharacters,
    /// Device ids start at 1.
    #[error("device id 0")]
    DeviceIdZero,
}

/// Bytes that do not decode as the wire message they should be. Nothing
/// was changed by the attempt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input is longer than the message type allows.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// The input's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a protobuf message of the expected type.
    #[error("malformed message")]
    Malformed,
    /// The message decodes but is not in canonical form (unknown fields,
    /// fields out of order or repeated, default values written out,
    /// non-minimal varints).
    #[error("message is not canonically encoded")]
    NonCanonical,
    /// The message's version is not one this build reads.
    #[error("unknown message version {0}")]
    UnknownVersion(u32),
    /// A required field is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field has the wrong length.
    #[error("field {field} has {actual} bytes, expected {expected}")]
    InvalidLength {
        /// The field.
        field: &'static str,
        /// The length the field requires.
        expected: usize,
        /// The length it has.
        actual: usize,
    },
    /// A field holds a value outside its range (an unknown enum value, an
    /// empty or oversized string, a zero device id).
    #[error("field {0} is out of range")]
    InvalidValue(&'static str),
    /// A key field does not hold a usable key.
    #[error("field {field}: {error}")]
    InvalidKey {
        /// The field.
        field: &'static str,
        /// Why the key is refused.
        error: KeyError,
    },
}
