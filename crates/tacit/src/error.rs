//! Error types, one enum per concern.
//!
//! Every fallible operation in this crate returns one of these. None of them
//! carries secret material, so they are safe to log.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

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
    /// The bundle offers a KEM prekey: it starts a `tacit-v2` session
    /// ([`crate::pqxdh::initiate`]), never a classical one.
    #[error("the bundle offers a KEM prekey: use PQXDH (tacit-v2)")]
    KemPreKeyOffered,
    /// One of the Diffie-Hellman outputs was all zeros.
    #[error("a Diffie-Hellman output is all zeros (small-order key)")]
    SmallOrderKey,
}

/// Session limits out of range (`docs/PROTOCOL.md` section 3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_skip` above [`crate::ratchet::MAX_SKIP_LIMIT`].
    #[error("max_skip {0} is above the limit")]
    MaxSkipTooLarge(u32),
    /// The cap on stored skipped keys above
    /// [`crate::ratchet::MAX_STORED_SKIPPED_KEYS_LIMIT`].
    #[error("stored skipped key cap {0} is above the limit")]
    StoredSkippedKeysTooLarge(u32),
}

/// An ML-KEM key or ciphertext received from outside could not be used
/// (`docs/PROTOCOL.md` 15.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KemError {
    /// A byte string of the wrong length for the key or ciphertext.
    #[error("expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// The length required.
        expected: usize,
        /// The length supplied.
        actual: usize,
    },
    /// An encoded KEM public key whose type byte is not ML-KEM-1024's.
    #[error("KEM public key has an unknown type byte")]
    InvalidEncoding,
    /// An encapsulation key that fails the FIPS 203 modulus check.
    #[error("KEM public key fails the encapsulation-key check")]
    InvalidPublicKey,
}

/// The PQXDH handshake (profile `tacit-v2`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PqxdhError {
    /// The bundle has no KEM prekey: it can only start a `tacit-v1`
    /// session ([`crate::x3dh::initiate`]).
    #[error("the bundle has no KEM prekey")]
    MissingKemPreKey,
    /// The signed prekey's signature failed strict verification.
    #[error("signed prekey signature is invalid")]
    InvalidSignature,
    /// The KEM prekey's signature failed strict verification.
    #[error("KEM prekey signature is invalid")]
    InvalidKemSignature,
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
    /// A KEM key field does not hold a usable ML-KEM-1024 key.
    #[error("field {field}: {error}")]
    InvalidKemKey {
        /// The field.
        field: &'static str,
        /// Why the key is refused.
        error: KemError,
    },
    /// The version does not match the fields present: version 1 with KEM
    /// fields, or version 2 without all of them.
    #[error("version does not match the fields present")]
    VersionMismatch,
}

/// Padding could not be added or removed (see [`crate::envelope::padding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PaddingError {
    /// The input is too long to pad: its padded length would pass the cap.
    #[error("{len} bytes cannot be padded (at most {max})")]
    TooLong {
        /// The unpadded length.
        len: usize,
        /// The longest input that can be padded.
        max: usize,
    },
    /// The padded input's length is not the bucket its content pads to
    /// (including an empty input or one over the cap).
    #[error("padded length {0} is not the bucket of its content")]
    WrongLength(usize),
    /// No `0x80` marker: the padding is all zeros.
    #[error("padding marker 0x80 missing")]
    MissingMarker,
    /// A byte after the content that is neither zero nor the marker.
    #[error("padding holds a byte that is not zero")]
    NonZeroPadding,
}

/// A [`crate::envelope::Content`] could not be built, encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The encoded content does not decode strictly.
    #[error("content: {0}")]
    Wire(WireError),
    /// The content has kind 0 (no kind), or a content was built with
    /// [`ContentKind::Unknown`](crate::envelope::ContentKind::Unknown) of a
    /// code below 7. A kind of 7 or above is not an error: it decodes as
    /// `ContentKind::Unknown`.
    #[error("invalid content kind {0}")]
    UnknownKind(u32),
    /// The body is longer than [`crate::envelope::MAX_BODY_LEN`].
    #[error("body of {0} bytes is too long")]
    BodyTooLong(usize),
    /// An attachment pointer is present without kind `AttachmentPointer`,
    /// or that kind comes without one.
    #[error("attachment pointer and content kind disagree")]
    AttachmentMismatch,
    /// An attachment pointer field is out of range.
    #[error("attachment pointer field {0} is out of range")]
    InvalidAttachmentPointer(&'static str),
    /// The padding around the encoded content is wrong.
    #[error("content padding: {0}")]
    Padding(PaddingError),
    /// A delivery token cannot be attached: the named part is wrong (see
    /// [`crate::envelope::Content::with_delivery_token`]).
    #[error("delivery token: {0}")]
    DeliveryToken(&'static str),
}

impl From<WireError> for ContentError {
    fn from(error: WireError) -> Self {
        Self::Wire(error)
    }
}

impl From<PaddingError> for ContentError {
    fn from(error: PaddingError) -> Self {
        Self::Padding(error)
    }
}

/// An attachment could not be encrypted or decrypted (see
/// [`crate::envelope::attachment`]). After an error the encryptor or
/// decryptor refuses further input, and any plaintext it released must be
/// discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The attachment is longer than [`crate::envelope::MAX_ATTACHMENT_LEN`]
    /// (the chunk counter would overflow).
    #[error("attachment too large")]
    TooLarge,
    /// A chunk failed authentication: tampered, reordered, taken from
    /// another attachment, or a final chunk where more data follows.
    #[error("chunk {0} failed authentication")]
    ChunkAuthentication(u64),
    /// The ciphertext ends early: it is shorter than a header and one chunk,
    /// or its last chunk authenticates only as a non-final chunk.
    #[error("attachment truncated")]
    Truncated,
    /// More ciphertext arrived than the pointer's size allows, or the
    /// plaintext's length differs from the pointer's size.
    #[error("attachment size differs from the pointer's")]
    SizeMismatch,
    /// The SHA-256 digest of the ciphertext differs from the pointer's.
    #[error("attachment digest mismatch")]
    DigestMismatch,
    /// An earlier call failed; this encryptor or decryptor is finished.
    #[error("an earlier error ended this stream")]
    Failed,
}

/// A sealed-sender envelope could not be sealed or opened (see
/// [`crate::envelope::sealed`]).
///
/// [`Malformed`](Self::Malformed) is what a relay can detect without keys
/// ([`EnvelopeError::is_relay_detectable`]); every other opening error is
/// found only by the recipient.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Sealing: the session message is too long to seal.
    #[error("session message of {len} bytes is too long to seal (at most {max})")]
    TooLarge {
        /// The encoded session message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Sealing: the recipient's identity key gives an all-zero
    /// Diffie-Hellman output.
    #[error("recipient identity key is unusable: {0}")]
    InvalidRecipientIdentity(KeyError),
    /// The bytes are not a well-formed sealed envelope (size, encoding,
    /// version, field lengths): a relay can check this.
    #[error("malformed sealed envelope: {0}")]
    Malformed(WireError),
    /// The envelope's ephemeral key gives an all-zero Diffie-Hellman output.
    #[error("ephemeral key is of small order")]
    InvalidEphemeralKey,
    /// The sender part does not authenticate: the envelope is for another
    /// identity key or address, or was altered.
    #[error("sealed sender does not open for this recipient")]
    SenderDoesNotOpen,
    /// The sealed sender identity key is not a valid identity key.
    #[error("sealed sender identity is invalid: {0}")]
    InvalidSenderIdentity(KeyError),
    /// The content part does not authenticate: it was altered, or was not
    /// sealed by the identity the sender part names.
    #[error("sealed content does not open")]
    ContentDoesNotOpen,
    /// The envelope opened but its inner content is not well formed (only
    /// the holder of the sender's identity key can cause this).
    #[error("sealed content is malformed: {0}")]
    InnerMalformed(WireError),
    /// The envelope opened but its inner padding is wrong.
    #[error("sealed content padding is wrong")]
    InnerPadding,
    /// The sealed sender identity differs from the identity the session
    /// message or the caller's session names.
    #[error("sealed sender identity does not match the session's")]
    SenderIdentityMismatch,
    /// The sender certificate does not verify: the user key the envelope
    /// names did not sign the sending device.
    #[error("the sender certificate does not verify")]
    InvalidSenderCertificate,
}

impl EnvelopeError {
    /// Whether a relay, holding no keys, can detect this error: the envelope
    /// is malformed. All other opening errors are recipient-side.
    pub fn is_relay_detectable(&self) -> bool {
        matches!(self, Self::Malformed(_))
    }
}

/// An account could not do what was asked. The account is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AccountError {
    /// No one-time prekey has this id: it was consumed, or never issued.
    #[error("no one-time prekey with id {0}")]
    UnknownOneTimePreKey(u32),
    /// Generating this many one-time prekeys would hold more than the cap.
    #[error("{requested} more one-time prekeys would exceed the cap of {max}")]
    TooManyOneTimePreKeys {
        /// How many were asked for.
        requested: usize,
        /// The most an account holds.
        max: usize,
    },
    /// The 32-bit id space of a kind of prekey is used up.
    #[error("prekey ids exhausted")]
    IdsExhausted,
    /// Generating this many one-time KEM prekeys would hold more than the cap.
    #[error("{requested} more one-time KEM prekeys would exceed the cap of {max}")]
    TooManyOneTimeKemPreKeys {
        /// How many were asked for.
        requested: usize,
        /// The most an account holds.
        max: usize,
    },
    /// No KEM prekey has this id: consumed, retired past its grace period,
    /// or never issued.
    #[error("no KEM prekey with id {0}")]
    UnknownKemPreKey(u32),
    /// The account has no KEM prekey (an account from before profile
    /// `tacit-v2`: see `Account::enable_post_quantum`).
    #[error("the account has no KEM prekey")]
    NoKemPreKey,
    /// The account already has KEM prekeys.
    #[error("the account already has KEM prekeys")]
    PostQuantumEnabled,
}

/// A storage backend failed. The manager treats every store error as "the
/// write did not happen": a store must commit a change set entirely or not
/// at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend reported an error (I/O, a constraint, a lock); the
    /// backend's own error, when it has one, is the
    /// [`source`](core::error::Error::source).
    #[error("storage backend: {0}")]
    Backend(#[source] BackendError),
    /// The key that seals records at rest is not the one the store was
    /// created with.
    #[error("wrong storage key")]
    WrongKey,
    /// A sealed record does not open under its row's key and associated
    /// data: it was tampered with or moved from another row.
    #[error("record {table}/{row} failed authentication")]
    Tampered {
        /// The table.
        table: &'static str,
        /// A printable form of the row key.
        row: String,
    },
    /// A record opened but does not decode.
    #[error("record {table} does not decode: {error}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// Why it does not decode.
        error: StateError,
    },
    /// The store was written by a newer schema than this build reads.
    #[error("unknown schema version {0}")]
    UnknownSchema(u32),
    /// A change was refused on purpose (for tests of transactionality).
    #[error("write refused: {0}")]
    Refused(&'static str),
    /// Another store holds the same file: two writers would each write
    /// the state they loaded, and one would lose the other's updates.
    #[error("the store is in use by another process or store")]
    InUse,
    /// The rows do not match the store's sealed digest of them: a row was
    /// put back to an older sealed value, deleted, or added.
    #[error("the store's rows do not match its digest (a row rolled back or deleted)")]
    Inconsistent,
    /// The store is older than its high-water mark: it was restored from a
    /// backup, or rolled back. Its sessions may reuse message keys; the
    /// application must drop them before the store is used again.
    #[error("the store was rolled back: generation {generation}, high-water mark {high_water}")]
    RolledBack {
        /// The generation of the store as found.
        generation: u64,
        /// The highest generation this store was known to reach.
        high_water: u64,
    },
    /// The store has been written to, but its high-water mark is missing
    /// (the file was restored or copied without it): a roll-back cannot be
    /// ruled out.
    #[error("the store's high-water mark is missing")]
    CounterMissing,
}

impl StoreError {
    /// A [`Backend`](Self::Backend) error saying what failed, with the
    /// backend's own error as its source.
    pub fn backend(
        context: impl Into<String>,
        source: impl core::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend(BackendError::with_source(context, source))
    }

    /// A [`Backend`](Self::Backend) error with a message and no source.
    pub fn backend_message(message: impl Into<String>) -> Self {
        Self::Backend(BackendError::new(message))
    }
}

/// What a storage backend reported: a message, and the backend's own error
/// (an SQLite error, an I/O error) when there is one, kept whole as the
/// [`source`](core::error::Error::source) so that a caller can inspect or
/// downcast it.
///
/// Two values are equal when their messages are equal and their sources
/// display the same: a source need not implement `PartialEq`.
#[derive(Clone)]
pub struct BackendError {
    message: String,
    source: Option<Arc<dyn core::error::Error + Send + Sync>>,
}

impl BackendError {
    /// An error with a message and no source.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error saying what failed (`context`), caused by `source`.
    pub fn with_source(
        context: impl Into<String>,
        source: impl core::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The message, without the source's.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl core::fmt::Debug for BackendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut out = f.debug_struct("BackendError");
        out.field("message", &self.message);
        if let Some(source) = &self.source {
            out.field("source", source);
        }
        out.finish()
    }
}

/// The message, then the source's own message: a caller that shows only
/// the top error (a log line, a status string) still sees what the backend
/// said.
impl core::fmt::Display for BackendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)?;
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

impl core::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn core::error::Error + 'static))
    }
}

impl PartialEq for BackendError {
    fn eq(&self, other: &Self) -> bool {
        use alloc::string::ToString;
        self.message == other.message
            && self.source.as_ref().map(ToString::to_string)
                == other.source.as_ref().map(ToString::to_string)
    }
}

impl Eq for BackendError {}

/// A user key, device certificate or device list was refused
/// (`docs/PROTOCOL.md` 14).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The encoding was refused, or a field broke a rule of the list.
    #[error("device list: {0}")]
    Wire(#[from] WireError),
    /// The certificate of this device does not verify under the user key.
    #[error("certificate of device {0} does not verify")]
    InvalidCertificate(u32),
    /// The list's signature does not verify under its user key.
    #[error("device list signature does not verify")]
    InvalidListSignature,
    /// The list is already listing this device.
    #[error("device {0} is already listed")]
    DeviceExists(u32),
    /// The list does not list this device.
    #[error("device {0} is not listed")]
    UnknownDevice(u32),
    /// The list's version cannot grow any more.
    #[error("device list version exhausted")]
    VersionExhausted,
    /// The key pair given is not the list's user key.
    #[error("not the list's user key")]
    WrongUserKey,
    /// A link code is not 16 base32 characters.
    #[error("a link code is 16 letters and digits (A to Z, 2 to 7)")]
    InvalidLinkCode,
    /// A link blob does not open under the code's key (another code, or
    /// altered).
    #[error("the link blob does not open under this code")]
    LinkBlobDoesNotOpen,
    /// A link request opened but is not well formed.
    #[error("malformed link request")]
    MalformedLinkRequest,
    /// A fingerprint's iteration count is outside 2..=1,000,000.
    #[error("invalid fingerprint iterations {0}")]
    InvalidIterations(u32),
}

/// A session operation failed. Every store is unchanged: nothing the
/// operation computed was written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A store failed; nothing was written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store holds no account: create one first.
    #[error("the store holds no account")]
    NoAccount,
    /// The store already holds an account.
    #[error("the store already holds an account")]
    AccountExists,
    /// The account refused the change.
    #[error("account: {0}")]
    Account(#[from] AccountError),
    /// There is no session with this device to send on or decrypt with.
    #[error("no session with {0}")]
    NoSession(crate::address::Address),
    /// No identity is known for this device.
    #[error("no identity known for {0}")]
    UnknownIdentity(crate::address::Address),
    /// The operation names the local device itself.
    #[error("{0} is this device")]
    OwnAddress(crate::address::Address),
    /// The peer's identity key is not the one trusted for its address (it
    /// changed). Accept the new one explicitly with
    /// [`SessionManager::accept_identity`](crate::session::SessionManager::accept_identity)
    /// after checking it.
    #[error("identity of {} changed", .0.address)]
    UntrustedIdentity(Box<IdentityConflict>),
    /// The identity key in a prekey message is not the sender identity the
    /// envelope authenticated.
    #[error("prekey message identity does not match the sender's identity")]
    IdentityMismatch,
    /// A prekey message names a signed prekey this account does not hold
    /// (never issued, or retired past its grace period).
    #[error("unknown signed prekey {0}")]
    UnknownSignedPreKey(u32),
    /// A prekey message names a one-time prekey this account does not hold:
    /// already consumed by an earlier prekey message (a replay), or never
    /// issued.
    #[error("unknown or consumed one-time prekey {0}")]
    UnknownOneTimePreKey(u32),
    /// A prekey message names a KEM prekey this account does not hold:
    /// a one-time KEM prekey already consumed (a replay, or a second session
    /// from the same bundle), a retired one past its grace period, or one
    /// never issued.
    #[error("unknown or consumed KEM prekey {0}")]
    UnknownKemPreKey(u32),
    /// A classical (`tacit-v1`) prekey message would start a session with
    /// an account that publishes KEM prekeys, and the downgrade policy
    /// refuses it (`SessionConfig::refuse_classical_prekey_messages`).
    #[error("classical prekey message refused: this device requires tacit-v2")]
    ClassicalPreKeyRefused,
    /// The handshake was refused.
    #[error("handshake: {0}")]
    X3dh(#[from] X3dhError),
    /// The post-quantum handshake was refused.
    #[error("handshake: {0}")]
    Pqxdh(#[from] PqxdhError),
    /// The session keys were refused by the ratchet.
    #[error("session start: {0}")]
    Init(#[from] InitError),
    /// The message did not decrypt with any session with this device.
    #[error("decrypt: {0}")]
    Decrypt(#[from] DecryptError),
    /// The message could not be encrypted.
    #[error("encrypt: {0}")]
    Encrypt(#[from] EncryptError),
    /// A sealed envelope could not be made or opened.
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A content could not be encoded, or a decrypted one did not decode.
    #[error("content: {0}")]
    Content(#[from] ContentError),
    /// No verified device list is stored for this user: fetch its list,
    /// check that its user key is `user_key` (when an envelope named one),
    /// and [update](crate::session::SessionManager::update_device_list).
    #[error("no device list known for {}", .0.user_id)]
    UnknownUser(Box<UnknownUser>),
    /// The user key is not the one trusted for the user id: an impersonation
    /// attempt, or a real change of user key. Nothing changed; accept the
    /// new key explicitly with
    /// [`accept_user_key`](crate::session::SessionManager::accept_user_key)
    /// after checking the safety number.
    #[error("user key of {} changed", .0.user_id)]
    UserKeyChanged(Box<UserKeyConflict>),
    /// A device list older than the one stored for its user.
    #[error("device list of {user_id} is version {received}, older than {stored}")]
    StaleDeviceList {
        /// The user.
        user_id: String,
        /// The stored version.
        stored: u64,
        /// The refused version.
        received: u64,
    },
    /// A device list with the stored version but other contents.
    #[error("device list of {0} conflicts with the stored one of the same version")]
    ConflictingDeviceList(String),
    /// The device is not on its user's verified device list, or is on it
    /// with another identity key.
    #[error("{0} is not on its user's device list")]
    DeviceNotListed(crate::address::Address),
    /// The local device is not on its own user's verified device list, so
    /// it has no certificate to send with.
    #[error("this device is not on its user's device list")]
    NotOnOwnList,
    /// A device list could not be used.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
}

/// A user id with no verified device list, and the user key an envelope
/// from it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownUser {
    /// The user.
    pub user_id: String,
    /// The user key the sender's certificate named, if the error comes from
    /// an envelope.
    pub user_key: Option<crate::identity::UserKey>,
}

/// A user presented another user key than the one trusted for its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKeyConflict {
    /// The user.
    pub user_id: String,
    /// The user key trusted for it.
    pub trusted: crate::identity::UserKey,
    /// The user key presented.
    pub received: crate::identity::UserKey,
}

/// A peer device presented another identity key than the one trusted for
/// its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConflict {
    /// The device.
    pub address: crate::address::Address,
    /// The identity trusted for it.
    pub trusted: crate::keys::IdentityKey,
    /// The identity it presented.
    pub received: crate::keys::IdentityKey,
}

/// A signed group state, a change or a group record was refused
/// (`docs/PROTOCOL.md` 16.2 to 16.4). Nothing changed: a
/// [`Group`](crate::group::Group) that refused a state is byte for byte as
/// before.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupStateError {
    /// The bytes do not decode strictly as the message they should be.
    #[error("group: {0}")]
    Wire(#[from] WireError),
    /// A state with no members.
    #[error("a group state has at least one member")]
    NoMembers,
    /// A state with more than [`MAX_GROUP_MEMBERS`](crate::group::MAX_GROUP_MEMBERS) members.
    #[error("{0} members is more than a group holds")]
    TooManyMembers(usize),
    /// A member's user id is not a valid user id (1 to 64 bytes, no
    /// control characters).
    #[error("a member's user id is not a valid user id")]
    InvalidUserId,
    /// The members are not in strictly ascending order of user id bytes.
    #[error("members are not in ascending order of user id")]
    MembersNotAscending,
    /// The same user id is listed twice.
    #[error("user {0} is listed twice")]
    DuplicateMember(String),
    /// A state without an admin.
    #[error("a group state has at least one admin")]
    NoAdmin,
    /// The title is longer than [`MAX_TITLE_LEN`](crate::group::MAX_TITLE_LEN) bytes.
    #[error("title of {0} bytes is too long")]
    TitleTooLong(usize),
    /// The title contains control characters.
    #[error("title contains control characters")]
    TitleCharacters,
    /// The encoded state is longer than
    /// [`MAX_GROUP_STATE_LEN`](crate::group::MAX_GROUP_STATE_LEN).
    #[error("encoded state of {len} bytes exceeds the limit of {max}")]
    StateTooLarge {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The state names another group.
    #[error("the state is of another group")]
    WrongGroup,
    /// The state's epoch is not its parent's plus one.
    #[error("epoch {actual}, expected {expected}")]
    WrongEpoch {
        /// The parent's epoch plus one.
        expected: u64,
        /// The state's epoch.
        actual: u64,
    },
    /// The state's parent hash is not the hash of the parent given.
    #[error("the state's parent is not the state given as its parent")]
    WrongParent,
    /// The state's parent is not among the states held, nor older than
    /// them: it may arrive later.
    #[error("parent of epoch {0} is not known")]
    UnknownParent(u64),
    /// The state's parent is older than the states held.
    #[error("state of epoch {epoch} is older than the oldest held ({oldest})")]
    Stale {
        /// The state's epoch.
        epoch: u64,
        /// The epoch of the oldest state held.
        oldest: u64,
    },
    /// The state is already held (a replay).
    #[error("state already applied")]
    AlreadyApplied,
    /// The epoch cannot grow any more.
    #[error("group epoch exhausted")]
    EpochExhausted,
    /// The signer's user is not a member of the authorising state.
    #[error("signer {0} is not a member")]
    SignerNotMember(String),
    /// The signer's device certificate does not verify under the user key
    /// the authorising state lists for it.
    #[error("the signer's device certificate does not verify")]
    InvalidCertificate,
    /// The signature does not verify under the signer's identity key.
    #[error("group state signature does not verify")]
    InvalidSignature,
    /// The signer may not make this change: a plain member may only leave,
    /// and a group is created by one of its admins.
    #[error("the signer may not make this change")]
    Unauthorised,
    /// The new state is its parent's (title and members unchanged).
    #[error("the change changes nothing")]
    NoChange,
    /// A change names a user who is not a member.
    #[error("{0} is not a member")]
    UnknownMember(String),
    /// A change adds a user who is already a member.
    #[error("{0} is already a member")]
    AlreadyMember(String),
    /// Joining: the local user is not in the new state with its user key.
    #[error("the local user is not a member of the new state")]
    NotInNewState,
    /// Joining: the local user is already in the parent state.
    #[error("the local user is already a member of the parent state")]
    AlreadyInParent,
    /// Joining: the states did not come from the device that signed them.
    #[error("the state was not sent by its signer")]
    NotFromSigner,
    /// A group control carries more states than it may, or a join has the
    /// wrong number of states.
    #[error("{0} states is not a valid group control")]
    StateCount(usize),
    /// A group record does not read back.
    #[error("group record: {0}")]
    Record(#[from] StateError),
}

/// A group message could not be encrypted (`docs/PROTOCOL.md` 16.6). The
/// sender chain is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupEncryptError {
    /// The chain has sent 2^32 - 1 messages; a new chain must be made.
    #[error("sender chain exhausted")]
    ChainExhausted,
    /// The content does not encode or pad.
    #[error("group content: {0}")]
    Content(ContentError),
    /// The padded content is longer than the AEAD accepts (never for a
    /// content that pads).
    #[error("plaintext too long")]
    PlaintextTooLong,
}

/// A group message could not be decrypted (`docs/PROTOCOL.md` 16.6). The
/// inbound chains are byte-for-byte unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupDecryptError {
    /// The bytes do not decode strictly as a group message.
    #[error("group message: {0}")]
    Wire(WireError),
    /// No inbound chain of this group and signing key is held: a
    /// non-member's message, or a chain dropped (of an older state).
    #[error("no inbound chain for this group and signing key")]
    UnknownChain,
    /// The chain is held but belongs to another group state.
    #[error("the chain belongs to another group state")]
    WrongState,
    /// The signature does not verify under the chain's signing key.
    #[error("group message signature is invalid")]
    InvalidSignature,
    /// The iteration is behind the chain and no key is stored for it: a
    /// replay, or a key evicted or never held.
    #[error("group message already decrypted, or its key was discarded")]
    DuplicateOrExpired,
    /// The iteration is more than `max_skip` ahead of the chain.
    #[error("too many skipped group messages")]
    TooManySkipped,
    /// The ciphertext failed authentication.
    #[error("group message authentication failed")]
    AuthenticationFailed,
    /// The decrypted content does not unpad or decode.
    #[error("group content: {0}")]
    Content(ContentError),
    /// A distribution's owner signature does not name the device it came
    /// from (or another group or state): a chain forwarded by another
    /// device, refused.
    #[error("the distribution's owner signature does not name its sender")]
    ChainOwnerMismatch,
}

impl From<WireError> for GroupDecryptError {
    fn from(error: WireError) -> Self {
        Self::Wire(error)
    }
}
