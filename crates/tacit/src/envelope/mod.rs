//! The envelope layer: what travels inside and around the ratchet.
//!
//! - [`content`]: [`Content`], the ratchet's plaintext (kind, body,
//!   timestamp, message id, attachment pointer), strictly encoded;
//! - [`padding`]: the length-hiding padding applied before encryption;
//! - [`attachment`]: streaming attachment encryption in constant memory;
//! - [`sealed`]: sealed sender, hiding the sender from the relay.
//!
//! A message's way out: `Content` -> [`Content::to_padded`] -> ratchet
//! encrypt -> [`crate::wire::SessionMessage`] -> [`sealed::seal_with_rng`]
//! -> bytes for the relay. And back in: [`sealed::open`] -> check the
//! sender -> ratchet decrypt -> [`Content::from_padded`]. The wire format of
//! every message here is in `docs/protocol/envelope.md`.

pub mod attachment;
pub mod content;
pub mod padding;
mod proto;
pub mod sealed;

pub use attachment::{
    AttachmentDecryptor, AttachmentEncryptor, EncryptedAttachment, MAX_ATTACHMENT_LEN,
};
pub use content::{AttachmentPointer, Content, ContentKind, MAX_BODY_LEN, MESSAGE_ID_LEN};
pub use sealed::{open, seal_with_rng, SealedEnvelope, Unsealed};

#[cfg(feature = "std")]
pub use sealed::seal;
