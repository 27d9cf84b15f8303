//! Tacit: an end-to-end encrypted messaging core.
//!
//! This crate implements profile `tacit-v1` (see `docs/PROTOCOL.md`): the
//! X3DH key agreement and the Double Ratchet with header encryption, byte
//! for byte, so that any implementation of the same profile interoperates.
//! It does no I/O and holds no global state: bytes in, bytes out.
//!
//! The layers stand alone and depend one way:
//!
//! - [`keys`]: identity keys (Ed25519 with their X25519 view), X25519 key
//!   pairs, strict prekey signatures, Diffie-Hellman with the all-zero check.
//! - [`bundle`]: the prekey bundle both handshakes take, with an optional
//!   KEM prekey that selects the profile.
//! - [`x3dh`]: the handshake of profile `tacit-v1`, producing
//!   [`ratchet::SessionKeys`].
//! - [`kem`] and [`pqxdh`]: ML-KEM-1024 and the post-quantum handshake of
//!   profile `tacit-v2` (PQXDH), producing the same [`ratchet::SessionKeys`].
//! - [`ratchet`]: the Double Ratchet with header encryption, started from
//!   X3DH's output or from key material agreed by any other handshake.
//! - [`wire`]: the strict protobuf encoding of bundles and session messages.
//! - [`envelope`]: the ratchet's plaintext ([`envelope::Content`], padded to
//!   hide its length), attachment encryption, and sealed sender.
//! - [`group`]: groups: signed group state (membership, roles, title), the
//!   group control messages carried over pairwise sessions, and sender
//!   chains with group messages signed by their chain.
//! - [`session`]: accounts and prekeys, per-device sessions with an archive,
//!   simultaneous initiation, identity trust and safety numbers, over the
//!   storage traits of [`store`].
//!
//! # Randomness
//!
//! The crate never draws randomness by itself. Every public operation that
//! needs it takes the caller's generator as a parameter, always named
//! `rng` and always typed `rng: &mut impl CryptoRngCore`: that is
//! [`rand_core::CryptoRngCore`], implemented for every
//! `CryptoRng + RngCore`, of `rand_core` 0.6, re-exported as
//! [`tacit::rand_core`](crate::rand_core) so that callers name the same
//! version. The same holds at every layer, from [`keys`] to [`session`]:
//! [`Ratchet::encrypt`] takes `rng` as [`SessionManager::encrypt`] does, and
//! there is no second variant drawing from the operating system. A caller
//! that wants the operating system's generator passes
//! `&mut tacit::rand_core::OsRng` (with the default `std` feature, or on
//! `wasm32` with the `js` backend); a test passes a seeded generator and
//! gets the same bytes every run. The generator is always the last
//! parameter. Each function's documentation says how many bytes it draws,
//! in how many calls, and that a refusal draws nothing where the protocol
//! says so.
//!
//! # Quick start
//!
//! ```
//! use tacit::keys::{IdentityKeyPair, KeyPair};
//! use tacit::ratchet::{Ratchet, RatchetConfig};
//! use tacit::x3dh;
//! use tacit::PreKeyBundle;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = tacit::rand_core::OsRng;
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let bob_signed_prekey = KeyPair::generate(&mut rng);
//!
//! // Bob publishes a bundle; Alice fetches it and starts a session.
//! let bundle = PreKeyBundle {
//!     identity_key: bob.public_key(),
//!     signed_prekey: bob_signed_prekey.public_key(),
//!     signed_prekey_signature: bob.sign_prekey(&bob_signed_prekey.public_key()),
//!     one_time_prekey: None,
//!     kem_prekey: None,
//! };
//! let init = x3dh::initiate(&alice, &bundle, &mut rng)?;
//! let mut alice_session = Ratchet::new_initiator(
//!     init.agreement.session_keys(),
//!     &bundle.signed_prekey,
//!     RatchetConfig::default(),
//!     &mut rng,
//! )?;
//! let first = alice_session.encrypt(b"hello Bob", &mut rng)?;
//!
//! // Bob receives Alice's identity key, ephemeral key and first message.
//! let agreement = x3dh::respond(&bob, &bob_signed_prekey, None, &alice.public_key(), &init.ephemeral_key)?;
//! let mut bob_session =
//!     Ratchet::new_responder(agreement.session_keys(), bob_signed_prekey, RatchetConfig::default());
//! assert_eq!(bob_session.decrypt(&first, &mut rng)?, b"hello Bob");
//!
//! let reply = bob_session.encrypt(b"hello Alice", &mut rng)?;
//! assert_eq!(alice_session.decrypt(&reply, &mut rng)?, b"hello Alice");
//! # Ok(()) }
//! ```

#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;

pub mod address;
mod aead;
pub mod bundle;
mod codec;
mod crypto;
pub mod envelope;
pub mod error;
pub mod group;
#[cfg(feature = "hazmat")]
#[doc(hidden)]
pub mod hazmat;
pub mod identity;
pub mod kem;
pub mod keys;
pub mod pqxdh;
pub mod ratchet;
pub mod session;
pub mod store;
mod versioned;
pub mod wire;
pub mod x3dh;

/// The `rand_core` version whose traits this crate's API takes
/// ([`rand_core::CryptoRngCore`]; see [Randomness](crate#randomness)):
/// re-exported so that callers name the same version, and its `OsRng`.
pub use rand_core;

pub use address::{Address, DeviceId};
pub use bundle::{BundleKemPreKey, PreKeyBundle};
pub use error::GroupStateError;
pub use error::{
    AccountError, AddressError, AttachmentError, ConfigError, ContentError, DecryptError,
    EncryptError, EnvelopeError, GroupDecryptError, GroupEncryptError, IdentityConflict, InitError,
    KemError, KeyError, PaddingError, PqxdhError, SessionError, StateError, StoreError, WireError,
    X3dhError,
};
pub use keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey, SecretKey32, Signature};
pub use ratchet::{EncryptedMessage, Ratchet, RatchetConfig, SessionKeys};
pub use session::{Account, Decrypted, SafetyNumber, SessionManager};
pub use store::{InMemoryStore, Store};

/// The classical profile (X3DH), kept for existing sessions and vectors.
pub const PROFILE: &str = "tacit-v1";
/// The post-quantum profile (PQXDH over X25519 and ML-KEM-1024) that new
/// sessions use when the peer publishes KEM prekeys.
pub const PROFILE_V2: &str = "tacit-v2";
