//! The envelope layer: what travels inside and around the ratchet.
//!
//! - [`content`]: [`Content`], the ratchet's plaintext (kind, body,
//!   timestamp, message id, attachment pointer), strictly encoded;
//! - [`padding`]: the length-hiding padding applied before encryption;
//! - [`attachment`]: streaming attachment encryption in constant memory;
//! - [`sealed`]: sealed sender, hiding the sender from the relay.
//!
//! A message's way out: `Content` -> [`Content::to_padded`] -> ratchet
//! encrypt -> [`crate::wire::SessionMessage`] -> [`sealed::seal`]
//! -> bytes for the relay. And back in: [`sealed::open`] -> check the
//! sender -> ratchet decrypt -> [`Content::from_padded`]. The wire format of
//! every message here is in `docs/PROTOCOL.md` (section 10).
//!
//! ```
//! use tacit::envelope::{sealed, Content, ContentKind};
//! use tacit::identity::{DeviceCertificate, UserKeyPair};
//! use tacit::keys::{IdentityKeyPair, KeyPair};
//! use tacit::ratchet::{Ratchet, RatchetConfig, SessionKeys};
//! use tacit::wire::SessionMessage;
//! use tacit::Address;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_core::OsRng;
//! let (alice, bob) = (IdentityKeyPair::generate(&mut rng), IdentityKeyPair::generate(&mut rng));
//! let (alice_address, bob_address) = (Address::new("alice", 1)?, Address::new("bob", 1)?);
//! // Alice's user key certifies her device (docs/PROTOCOL.md section 14).
//! let alice_user = UserKeyPair::generate(&mut rng);
//! let alice_cert = DeviceCertificate::issue(&alice_user, &alice_address, &alice.public_key());
//! // A session agreed by some handshake (see the crate's quick start for X3DH).
//! let keys = || SessionKeys::new([1; 32], [2; 32], [3; 32], b"alice||bob");
//! let bob_ratchet_key = KeyPair::generate(&mut rng);
//! let mut alice_session =
//!     Ratchet::new_initiator(keys()?, &bob_ratchet_key.public_key(), RatchetConfig::default(), &mut rng)?;
//! let mut bob_session = Ratchet::new_responder(keys()?, bob_ratchet_key, RatchetConfig::default());
//!
//! // Alice: content, padded, encrypted, sealed.
//! let content = Content::new(ContentKind::Text, b"hello Bob".to_vec(), 1_767_225_600_000, &mut rng)?;
//! let encrypted = alice_session.encrypt(&content.to_padded()?, &mut rng)?;
//! let sender = sealed::Sender {
//!     identity: &alice,
//!     address: &alice_address,
//!     user_key: &alice_user.public_key(),
//!     certificate: &alice_cert,
//! };
//! let envelope = sealed::seal(
//!     &sender,
//!     &bob.public_key(),
//!     &bob_address,
//!     &SessionMessage::Ratchet(encrypted),
//!     &mut rng,
//! )?;
//!
//! // Bob: opened, sender checked against his session's identity, decrypted.
//! let opened = sealed::open(&bob, &bob_address, &envelope)?;
//! opened.check_sender_identity(&alice.public_key())?;
//! assert_eq!(opened.sender_user_key, alice_user.public_key());
//! let SessionMessage::Ratchet(message) = opened.message else { unreachable!() };
//! let received = Content::from_padded(&bob_session.decrypt(&message, &mut rng)?)?;
//! assert_eq!(received.body(), b"hello Bob");
//! assert_eq!(received.message_id(), content.message_id());
//! # Ok(()) }
//! ```

pub mod attachment;
pub mod content;
pub mod padding;
mod proto;
pub mod sealed;
pub mod unknown_fields;

pub use attachment::{
    AttachmentDecryptor, AttachmentEncryptor, EncryptedAttachment, MAX_ATTACHMENT_LEN,
};
pub use content::{AttachmentPointer, Content, ContentKind, MAX_BODY_LEN, MESSAGE_ID_LEN};
pub use sealed::{open, seal, SealedEnvelope, Sender, Unsealed};
