//! A message's whole way through the core: [`Content`] padded, encrypted on
//! the session with each device, sealed to that device's identity; and back:
//! opened, the sender's sealed identity checked against the session's,
//! decrypted, unpadded and decoded.
//!
//! ```
//! use tacit::envelope::{Content, ContentKind};
//! use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
//! use tacit::store::InMemoryStore;
//! use tacit::Address;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_core::OsRng;
//! let mut alice = SessionManager::create(
//!     InMemoryStore::new(), Address::new("alice", 1)?, Account::generate(&mut rng, 0), SessionConfig::default())?;
//! let bob_address = Address::new("bob", 1)?;
//! let mut bob = SessionManager::create(
//!     InMemoryStore::new(), bob_address.clone(), Account::generate(&mut rng, 0), SessionConfig::default())?;
//! bob.generate_one_time_prekeys(5, &mut rng)?;
//! alice.process_bundle(&bob_address, &bob.account().bundle(BundlePreKey::Auto)?, &mut rng)?;
//!
//! let content = Content::new(ContentKind::Text, b"hello".to_vec(), 1_700_000_000_000)?;
//! for outgoing in alice.seal_for_user("bob", &content, &mut rng)? {
//!     // `outgoing.envelope` goes to the relay, addressed to `outgoing.recipient`.
//!     let received = bob.open_envelope(&outgoing.envelope, &mut rng)?;
//!     assert_eq!(received.sender.user_id(), "alice");
//!     assert_eq!(received.content.body(), b"hello");
//! }
//! # Ok(()) }
//! ```

use alloc::vec::Vec;

use rand_core::CryptoRngCore;

use super::{IdentityChange, SessionManager};
use crate::address::Address;
use crate::envelope::{sealed, Content};
use crate::error::SessionError;
use crate::keys::IdentityKey;
use crate::store::Store;
use crate::wire::SessionMessage;

/// A sealed envelope for one device, ready for any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    /// The device it is for: the relay routes by this address, which is not
    /// inside the envelope.
    pub recipient: Address,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
}

/// A message received in a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The sending device, as the envelope authenticated it.
    pub sender: Address,
    /// The sending device's identity key.
    pub sender_identity: IdentityKey,
    /// The decoded content.
    pub content: Content,
    /// Set when the sender's identity changed and the trust mode accepted it.
    pub identity_change: Option<IdentityChange>,
    /// Whether this was the first message from this identity.
    pub first_contact: bool,
    /// Whether the message started a new session.
    pub new_session: bool,
}

impl<S: Store> SessionManager<S> {
    /// Encrypts `content` for every device a message to `user_id` fans out
    /// to (see [`fan_out`](Self::fan_out)) and seals each copy to its
    /// device. One store commit; on any error nothing is written.
    pub fn seal_for_user(
        &mut self,
        user_id: &str,
        content: &Content,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<OutgoingEnvelope>, SessionError> {
        let padded = content.to_padded()?;
        let devices = self.fan_out(user_id)?;
        let identities = devices
            .iter()
            .map(|address| self.recipient_identity(address))
            .collect::<Result<Vec<_>, SessionError>>()?;
        let messages = self.encrypt_for_devices(&devices, &padded, rng)?;
        let mut out = Vec::with_capacity(devices.len());
        for ((address, identity), message) in devices.iter().zip(&identities).zip(&messages) {
            out.push(self.seal(address, identity, message, rng)?);
        }
        Ok(out)
    }

    /// Encrypts `content` for one device and seals it.
    pub fn seal_for_device(
        &mut self,
        recipient: &Address,
        content: &Content,
        rng: &mut impl CryptoRngCore,
    ) -> Result<OutgoingEnvelope, SessionError> {
        let padded = content.to_padded()?;
        let identity = self.recipient_identity(recipient)?;
        let message = self.encrypt(recipient, &padded, rng)?;
        self.seal(recipient, &identity, &message, rng)
    }

    /// Opens a sealed envelope addressed to this device, checks the sealed
    /// sender identity against the session (or trusts it on first use),
    /// decrypts and decodes the content.
    ///
    /// An envelope that does not open, a sender whose identity does not
    /// match, or a message that does not decrypt changes nothing. A message
    /// that decrypts but whose content does not decode (only its
    /// authenticated sender can produce one) is refused after the session
    /// has advanced past it.
    pub fn open_envelope(
        &mut self,
        envelope: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Received, SessionError> {
        let unsealed = sealed::open(self.account().identity(), self.local_address(), envelope)?;
        let decrypted = self.decrypt(
            &unsealed.sender_address,
            &unsealed.sender_identity,
            &unsealed.message,
            rng,
        )?;
        let content = Content::from_padded(&decrypted.plaintext)?;
        Ok(Received {
            sender: unsealed.sender_address,
            sender_identity: unsealed.sender_identity,
            content,
            identity_change: decrypted.identity_change,
            first_contact: decrypted.first_contact,
            new_session: decrypted.new_session,
        })
    }

    /// The identity key a sealed envelope to `address` is sealed to: the
    /// trusted identity of that device.
    fn recipient_identity(&self, address: &Address) -> Result<IdentityKey, SessionError> {
        self.trusted_identity(address)?
            .ok_or_else(|| SessionError::NoSession(address.clone()))
    }

    fn seal(
        &self,
        recipient: &Address,
        identity: &IdentityKey,
        message: &SessionMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<OutgoingEnvelope, SessionError> {
        let envelope = sealed::seal_with_rng(
            self.account().identity(),
            self.local_address(),
            identity,
            recipient,
            message,
            rng,
        )?;
        Ok(OutgoingEnvelope {
            recipient: recipient.clone(),
            envelope,
        })
    }
}
