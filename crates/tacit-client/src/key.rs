//! The 32-byte key the store is sealed under.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::ClientError;

/// The key every record of the store is sealed under (see `tacit-sqlite`).
///
/// Where it lives decides what it protects:
///
/// - [`load_or_create`](Self::load_or_create) keeps it in a file of its own
///   (hex, created with mode 0600 on Unix). That keeps the store file alone
///   (a copy, a backup or a sync that leaves the key file out) unreadable,
///   and keeps the key from other users of the machine. It does not protect
///   against anyone who can read both files, such as a thief of the whole
///   disk: put the key file elsewhere (another device, an encrypted
///   volume) or supply the key from a keystore with
///   [`from_hex`](Self::from_hex).
/// - [`from_hex`](Self::from_hex) and [`from_bytes`](Self::from_bytes) take
///   a key the application got from somewhere better: an OS keystore, a
///   hardware token, a secret manager.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

impl StoreKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        Self(key)
    }

    /// A key from 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, ClientError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut())
            .map_err(|_| ClientError::Invalid("a store key is 64 hexadecimal digits".into()))?;
        Ok(Self(key))
    }

    /// Reads the key file at `path`, or creates it with a fresh key (mode
    /// 0600 on Unix, never overwriting an existing file).
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::from_hex(&Zeroizing::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        let text = Zeroizing::new(hex::encode(key.0.as_ref()));
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        Ok(key)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}
