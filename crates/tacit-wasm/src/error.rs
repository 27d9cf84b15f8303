//! Typed errors for JavaScript: every error the API throws is an `Error`
//! named `TacitError` whose `code` is one of [`CODES`], stable across
//! releases (the TypeScript type `TacitErrorCode` lists them).

use tacit::error::{SessionError, StoreError};

/// Every code an error can carry.
pub const CODES: &[&str] = &[
    "invalid-argument",
    "storage-failed",
    "wrong-key",
    "tampered",
    "corrupt",
    "storage",
    "no-account",
    "account-exists",
    "account",
    "no-session",
    "unknown-identity",
    "own-address",
    "untrusted-identity",
    "identity-mismatch",
    "unknown-prekey",
    "classical-prekey-refused",
    "handshake",
    "decrypt",
    "encrypt",
    "envelope",
    "content",
    "unknown-user",
    "user-key-changed",
    "stale-device-list",
    "conflicting-device-list",
    "device-not-listed",
    "not-on-own-list",
    "identity",
    "session",
    "frame",
    "unknown-group",
    "not-group-member",
    "group-state",
    "group-not-from-signer",
    "group-user-key",
    "group-chain-refused",
    "group-chain-missing",
    "group-envelope",
    "group-decrypt",
    "group-no-recipients",
];

/// An error with its stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// One of [`CODES`].
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// The user the error is about, when it names one (`unknown-user`,
    /// `device-not-listed`, `user-key-changed`, `no-session` and the group
    /// refusals that name a sender): the property `userId`.
    pub user_id: Option<String>,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            user_id: None,
        }
    }

    /// A bad argument from the caller.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid-argument", message)
    }
}

/// The code of a store error.
pub fn store_code(e: &StoreError) -> &'static str {
    match e {
        StoreError::WrongKey => "wrong-key",
        StoreError::Tampered { .. } => "tampered",
        StoreError::Corrupt { .. } => "corrupt",
        _ => "storage",
    }
}

/// The code of a session error.
pub fn session_code(e: &SessionError) -> &'static str {
    match e {
        SessionError::Store(e) => store_code(e),
        SessionError::NoAccount => "no-account",
        SessionError::AccountExists => "account-exists",
        SessionError::Account(_) => "account",
        SessionError::NoSession(_) => "no-session",
        SessionError::UnknownIdentity(_) => "unknown-identity",
        SessionError::OwnAddress(_) => "own-address",
        SessionError::UntrustedIdentity(_) => "untrusted-identity",
        SessionError::IdentityMismatch => "identity-mismatch",
        SessionError::UnknownSignedPreKey(_)
        | SessionError::UnknownOneTimePreKey(_)
        | SessionError::UnknownKemPreKey(_) => "unknown-prekey",
        SessionError::ClassicalPreKeyRefused => "classical-prekey-refused",
        SessionError::X3dh(_) | SessionError::Pqxdh(_) | SessionError::Init(_) => "handshake",
        SessionError::Decrypt(_) => "decrypt",
        SessionError::Encrypt(_) => "encrypt",
        SessionError::Envelope(_) => "envelope",
        SessionError::Content(_) => "content",
        SessionError::UnknownUser(_) => "unknown-user",
        SessionError::UserKeyChanged(_) => "user-key-changed",
        SessionError::StaleDeviceList { .. } => "stale-device-list",
        SessionError::ConflictingDeviceList(_) => "conflicting-device-list",
        SessionError::DeviceNotListed(_) => "device-not-listed",
        SessionError::NotOnOwnList => "not-on-own-list",
        SessionError::Identity(_) => "identity",
        _ => "session",
    }
}

impl From<SessionError> for Error {
    fn from(e: SessionError) -> Self {
        let user_id = match &e {
            SessionError::UnknownUser(u) => Some(u.user_id.clone()),
            SessionError::DeviceNotListed(a) => Some(a.user_id().into()),
            SessionError::UserKeyChanged(c) => Some(c.user_id.clone()),
            _ => None,
        };
        Self {
            user_id,
            ..Self::new(session_code(&e), e.to_string())
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::new(store_code(&e), e.to_string())
    }
}

impl From<Error> for wasm_bindgen::JsValue {
    fn from(e: Error) -> Self {
        let error = js_sys::Error::new(&e.message);
        error.set_name("TacitError");
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&error, &"code".into(), &e.code.into());
        if let Some(user_id) = &e.user_id {
            let _ = js_sys::Reflect::set(&error, &"userId".into(), &user_id.into());
        }
        error.into()
    }
}
