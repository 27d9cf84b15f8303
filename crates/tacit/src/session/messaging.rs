//! A message's whole way through the core: [`Content`] padded, encrypted on
//! the session with each device, sealed to that device's identity; and back:
//! opened, the sender's sealed identity checked against the session's,
//! decrypted, unpadded and decoded.
//!
//! ```
//! use tacit::envelope::{Content, ContentKind};
//! use tacit::identity::{DeviceList, UserKeyPair};
//! use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
//! use tacit::store::InMemoryStore;
//! use tacit::Address;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_core::OsRng;
//! let mut alice = SessionManager::create(
//!     InMemoryStore::new(), Address::new("alice", 1)?, Account::generate(0, &mut rng), SessionConfig::default())?;
//! let bob_address = Address::new("bob", 1)?;
//! let mut bob = SessionManager::create(
//!     InMemoryStore::new(), bob_address.clone(), Account::generate(0, &mut rng), SessionConfig::default())?;
//! bob.generate_one_time_prekeys(5, &mut rng)?;
//! let identities = [("alice", alice.account().identity().public_key()),
//!                   ("bob", bob.account().identity().public_key())];
//! for (user, identity) in identities {
//!     let list = DeviceList::sign(&UserKeyPair::generate(&mut rng), user, 1, &[(1, identity, 0)])?;
//!     alice.update_device_list(&list)?;
//!     bob.update_device_list(&list)?;
//! }
//! alice.process_bundle(&bob_address, &bob.account().bundle(BundlePreKey::Auto)?, &mut rng)?;
//!
//! let content = Content::new(ContentKind::Text, b"hello".to_vec(), 1_700_000_000_000, &mut rng)?;
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
use crate::identity::{DeviceCertificate, UserKey};
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
    /// The sender's user key: the trusted one for its user id, which lists
    /// the sending device.
    pub sender_user_key: UserKey,
    /// The decoded content.
    pub content: Content,
    /// Set when the sender's identity changed and the trust mode accepted it.
    pub identity_change: Option<IdentityChange>,
    /// Whether this was the first message from this device.
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
        let credentials = self.own_credentials()?;
        let devices = self.fan_out(user_id)?;
        let identities = devices
            .iter()
            .map(|address| self.recipient_identity(address))
            .collect::<Result<Vec<_>, SessionError>>()?;
        let messages = self.encrypt_for_devices(&devices, &padded, rng)?;
        let mut out = Vec::with_capacity(devices.len());
        for ((address, identity), message) in devices.iter().zip(&identities).zip(&messages) {
            out.push(self.seal(&credentials, address, identity, message, rng)?);
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
        let credentials = self.own_credentials()?;
        let identity = self.recipient_identity(recipient)?;
        let message = self.encrypt(recipient, &padded, rng)?;
        self.seal(&credentials, recipient, &identity, &message, rng)
    }

    /// Opens a sealed envelope addressed to this device, checks the sender
    /// against its user (`docs/PROTOCOL.md` 14.5, rule 4), decrypts and
    /// decodes the content.
    ///
    /// The sender certificate must verify (the envelope layer checks it),
    /// its user key must be the one trusted for the sender's user id
    /// ([`SessionError::UnknownUser`] when no list is stored: fetch it and
    /// open again; [`SessionError::UserKeyChanged`] for another key: an
    /// impersonation, or a change to accept explicitly), and the device must
    /// be on that user's list ([`SessionError::DeviceNotListed`]).
    ///
    /// An envelope that does not open, a sender refused by these checks, or
    /// a message that does not decrypt changes nothing and creates no
    /// session. A content of a kind this build does not know, or with
    /// fields it does not know, is delivered
    /// ([`ContentKind::Unknown`](crate::envelope::ContentKind::Unknown),
    /// [`Content::unknown_fields`]). A message that decrypts but whose
    /// content does not decode (only its authenticated sender can produce
    /// one) is refused after the session has advanced past it.
    pub fn open_envelope(
        &mut self,
        envelope: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Received, SessionError> {
        let unsealed = sealed::open(self.account().identity(), self.local_address(), envelope)?;
        self.check_listed(
            &unsealed.sender_address,
            &unsealed.sender_identity,
            Some(&unsealed.sender_user_key),
        )?;
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
            sender_user_key: unsealed.sender_user_key,
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
        (user_key, certificate): &(UserKey, DeviceCertificate),
        recipient: &Address,
        identity: &IdentityKey,
        message: &SessionMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<OutgoingEnvelope, SessionError> {
        let sender = sealed::Sender {
            identity: self.account().identity(),
            address: self.local_address(),
            user_key,
            certificate,
        };
        let envelope = sealed::seal(&sender, identity, recipient, message, rng)?;
        Ok(OutgoingEnvelope {
            recipient: recipient.clone(),
            envelope,
        })
    }
}
