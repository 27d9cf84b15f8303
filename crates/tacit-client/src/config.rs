//! The client's settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::{endpoint, StoreKey};
#[cfg(doc)]
use crate::{ClientError, FileRefusal, GroupRefusal};

/// How the client reconnects: exponential backoff with jitter, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Consecutive failed attempts after which the client stops.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 250 ms, doubling up to 10 s, giving up after 30 failed attempts in a
    /// row (about four minutes).
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
            max_attempts: 30,
        }
    }
}

impl Backoff {
    /// A backoff with these bounds.
    pub fn new(initial: Duration, max: Duration, max_attempts: u32) -> Self {
        Self {
            initial,
            max,
            max_attempts,
        }
    }

    /// The delay before attempt `failures + 1`: `initial * 2^(failures-1)`
    /// capped at `max`, then scaled by `jitter` in `[0.5, 1]` (from a
    /// random `u32`), so that clients cut off together do not come back
    /// together.
    pub fn delay(&self, failures: u32, jitter: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        let base = self
            .initial
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max);
        let fraction = 0.5 + f64::from(jitter) / f64::from(u32::MAX) / 2.0;
        base.mul_f64(fraction)
    }
}

/// The default [`ClientConfig::max_attachment_len`]: 100 MiB, the
/// relay's default cap.
pub const DEFAULT_MAX_ATTACHMENT_LEN: u64 = 100 * 1024 * 1024;

/// The client's settings. [`ClientConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The store file (SQLite, every record sealed under `store_key`).
    pub store_path: PathBuf,
    /// The key the store is sealed under.
    pub store_key: StoreKey,
    /// The relay's WebSocket URL, `wss://HOST[:PORT]/v1`. Plain
    /// `ws://` is refused ([`ClientError::PlaintextRelay`]) unless the host
    /// is a loopback address: `localhost`, 127.0.0.0/8 or `::1`.
    pub relay_url: String,
    /// The relay's name, as its operator set it (`tacit-relay
    /// --server-name`). Every login is signed for this name, and a relay
    /// announcing another one is refused before anything is signed
    /// ([`ClientError::ServerNameMismatch`]), so that a relay cannot pass
    /// the client's login on to another relay. [`ClientConfig::new`] sets
    /// it to the host of `relay_url` in lowercase; set it again after
    /// changing `relay_url`.
    pub server_name: String,
    /// A PEM file of the certificates to trust for `wss://`, used instead
    /// of the platform's root certificates when set (a relay with a
    /// private CA or a self-signed certificate).
    pub ca_file: Option<PathBuf>,
    /// How many one-time prekeys the client keeps published.
    pub one_time_prekeys: u32,
    /// How many one-time KEM prekeys (`tacit-v2`, ML-KEM-1024, about 1.6 KB
    /// each on the wire) the client keeps published; the account holds at
    /// most `tacit::session::MAX_ONE_TIME_KEM_PREKEYS`, those handed out
    /// but never used included. Below `prekeys_low` it uploads more.
    pub one_time_kem_prekeys: u32,
    /// Below this many one-time prekeys at login, the client uploads more
    /// (the relay also sends `PreKeysLow` below its own threshold).
    pub prekeys_low: u32,
    /// Rotate the signed prekey at login when it is older than this.
    pub signed_prekey_max_age: Duration,
    /// Keep a replaced signed prekey this long, for prekey messages built
    /// from bundles fetched before the rotation.
    pub signed_prekey_grace: Duration,
    /// Reconnection.
    pub backoff: Backoff,
    /// How long to wait for the relay to answer a request or a connection.
    pub request_timeout: Duration,
    /// Send a delivery receipt for every text received.
    pub delivery_receipts: bool,
    /// Process the messages the relay pushes. With `false` they are left
    /// unacknowledged in the relay's queue for a later run (a client that
    /// only sends, such as a one-shot `send` command, so that it does not
    /// take messages away from the one that shows them).
    pub receive: bool,
    /// Acknowledge processed messages to the relay. Always `true` in use;
    /// `false` leaves every message in the relay's queue, which is what a
    /// client killed between processing and acknowledging leaves behind
    /// (for tests of redelivery).
    pub acknowledge: bool,
    /// How long a group message waits for its sender chain before it is
    /// dropped ([`GroupRefusal::ChainMissing`]); checked whenever the
    /// stored queue has drained.
    pub group_pending_ttl: Duration,
    /// Where received files are saved (`None`: not downloaded; the
    /// application may fetch one with `Client::download_file`). A file is
    /// written only once it verifies, under a safe name, never replacing
    /// a file.
    pub download_dir: Option<PathBuf>,
    /// The largest received file downloaded, in plaintext bytes; a pointer
    /// claiming more is refused without downloading
    /// ([`FileRefusal::TooLarge`]).
    pub max_attachment_len: u64,
    /// How many received files download at once; the others wait.
    pub concurrent_downloads: usize,
    /// Keep a delivery token (default `true`): set it at the relay at each
    /// login and send it to correspondents in this device's texts, read
    /// receipts and group controls, so that the relay refuses anonymous
    /// submissions from anyone who has not heard from this device
    /// (`docs/client.md`, "Delivery tokens"). With `false` the client
    /// clears the device's token at each login and sends none: anyone may
    /// submit to it anonymously.
    pub delivery_token: bool,
}

impl ClientConfig {
    /// The defaults for this store and relay: the relay's name is the
    /// URL's host, the platform's root certificates, 100 one-time prekeys
    /// and 50 one-time KEM prekeys (each replenished below 20), signed
    /// prekey rotated after 7 days with a
    /// 30-day grace, [`Backoff::default`], 10 s request timeout, delivery
    /// receipts on, a delivery token kept, no download directory, files up
    /// to 100 MiB, 4 downloads at once. The URL is checked when the client
    /// connects.
    pub fn new(
        store_path: impl Into<PathBuf>,
        store_key: StoreKey,
        relay_url: impl Into<String>,
    ) -> Self {
        let relay_url = relay_url.into();
        Self {
            store_path: store_path.into(),
            store_key,
            server_name: endpoint::default_server_name(&relay_url),
            relay_url,
            ca_file: None,
            one_time_prekeys: 100,
            one_time_kem_prekeys: 50,
            prekeys_low: 20,
            signed_prekey_max_age: Duration::from_secs(7 * 24 * 3600),
            signed_prekey_grace: Duration::from_secs(30 * 24 * 3600),
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(10),
            delivery_receipts: true,
            receive: true,
            acknowledge: true,
            group_pending_ttl: Duration::from_secs(24 * 3600),
            download_dir: None,
            max_attachment_len: DEFAULT_MAX_ATTACHMENT_LEN,
            concurrent_downloads: 4,
            delivery_token: true,
        }
    }
}
