//! Delivery tokens (`docs/client.md`, "Delivery tokens"; `docs/web.md`),
//! as `tacit-client` keeps them: this device's own token (32 random bytes,
//! drawn once, stored before the relay is asked to set it at each login),
//! carried in extension field 16 of every pairwise content the device
//! seals but delivery receipts (`docs/PROTOCOL.md` section 10, "Extension
//! field 16"); each correspondent device's token, recorded from its
//! accepted contents in the same commit as what they changed; and the
//! recorded token presented in every `Submit` and, per recipient, in every
//! `SubmitGroup`.
//!
//! Records (sealed as every record, [`crate::store`]): `"token"` (table
//! `delivery_token`, row `"token"`) holds the own token; `"peer-token/"`
//! hex (table `peer_tokens`, row user_tag || device id) holds address ||
//! token of a correspondent device.

use rand_core::{OsRng, RngCore};
use tacit::envelope::{Content, ContentKind};
use tacit::group::multi::MultiSealed;
use tacit::session::{OutgoingEnvelope, Received, SessionManager};
use tacit::Address;
use tacit_relay_proto::{DeliveryToken, FrameError, SetDeliveryToken, Submit, SubmitGroup};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::store::{encode_address, BrowserStore};

/// The length of the tokens this device draws.
pub const TOKEN_LEN: usize = 32;

type Manager = SessionManager<BrowserStore>;

impl BrowserStore {
    /// This device's delivery token, once drawn.
    pub fn own_token(&self) -> Option<DeliveryToken> {
        self.own_token.borrow().clone()
    }

    /// The token `address` last sent in an accepted content, if any.
    pub fn peer_token(&self, address: &Address) -> Option<DeliveryToken> {
        self.peer_tokens.borrow().get(address).cloned()
    }

    /// Stores `token` as this device's own and queues its sealed write.
    pub fn put_own_token(&self, token: &DeliveryToken) -> Result<(), tacit::error::StoreError> {
        let write = self.seal_write("delivery_token", b"token", token.as_bytes())?;
        *self.own_token.borrow_mut() = Some(token.clone());
        self.pending.borrow_mut().push(write);
        Ok(())
    }

    /// Stores `token` as the one `address` asks its correspondents for,
    /// replacing the previous one, and queues its sealed write.
    pub fn put_peer_token(
        &self,
        address: &Address,
        token: &DeliveryToken,
    ) -> Result<(), tacit::error::StoreError> {
        if self.peer_tokens.borrow().get(address) == Some(token) {
            return Ok(());
        }
        let row = self.address_row(address);
        let record = encode_address(address, token.as_bytes());
        let write = self.seal_write("peer_tokens", &row, &record)?;
        self.peer_tokens
            .borrow_mut()
            .insert(address.clone(), token.clone());
        self.pending.borrow_mut().push(write);
        Ok(())
    }
}

/// This device's token, drawn ([`TOKEN_LEN`] random bytes) and stored
/// first if it has none: the relay is only ever asked to set a token the
/// store holds. The draw's write is queued with the store's other writes.
pub fn ensure_own(store: &BrowserStore) -> Result<DeliveryToken, Error> {
    match store.own_token() {
        Some(token) => Ok(token),
        None => draw_own(store),
    }
}

/// A new token for this device ([`TOKEN_LEN`] random bytes), stored in
/// place of the one it had; the draw's write is queued with the store's
/// other writes.
fn draw_own(store: &BrowserStore) -> Result<DeliveryToken, Error> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_LEN]);
    OsRng.fill_bytes(bytes.as_mut());
    let token = DeliveryToken::new(bytes.as_ref()).map_err(|e| Error::invalid(e.to_string()))?;
    store.put_own_token(&token)?;
    Ok(token)
}

/// The relay's `SetDeliveryToken` request for this device's token (drawn
/// first if need be, [`ensure_own`]).
pub fn set_request(store: &BrowserStore) -> Result<SetDeliveryToken, Error> {
    Ok(SetDeliveryToken {
        token: Some(ensure_own(store)?),
    })
}

/// The relay's `SetDeliveryToken` request for a new token, drawn and
/// stored in place of this device's token, as `tacit-client`'s
/// `rotate_delivery_token` does: once the relay has set it, anonymous
/// submissions presenting the old one are refused. Correspondents learn
/// the new token from the next content this device seals (until then
/// their submissions go on their logged-in connection).
pub fn rotate_request(store: &BrowserStore) -> Result<SetDeliveryToken, Error> {
    Ok(SetDeliveryToken {
        token: Some(draw_own(store)?),
    })
}

/// `content` with this device's token in field 16, for every kind but
/// delivery receipts (those go out on their own to anyone who writes: a
/// stranger's first message must not earn it the token). Before the
/// first login (no token yet), the content as it is.
pub fn with_token(store: &BrowserStore, content: Content) -> Result<Content, Error> {
    if content.kind() == ContentKind::DeliveryReceipt {
        return Ok(content);
    }
    match store.own_token() {
        Some(token) => content
            .with_delivery_token(token.as_bytes())
            .map_err(|e| Error::new("content", e.to_string())),
        None => Ok(content),
    }
}

/// Seals `content`, with this device's token ([`with_token`]), for every
/// device of `user` (and this user's other devices).
pub fn seal_for_user(
    m: &mut Manager,
    user: &str,
    content: &Content,
) -> Result<Vec<OutgoingEnvelope>, Error> {
    let content = with_token(m.store(), content.clone())?;
    Ok(m.seal_for_user(user, &content, &mut OsRng)?)
}

/// Opens an envelope addressed to this device and records the token its
/// content carries for the sender's device, replacing the previous one,
/// with the writes of the opening (one commit for the page's storage). A
/// content without a valid field 16 records nothing.
pub fn open_envelope(m: &mut Manager, envelope: &[u8]) -> Result<Received, Error> {
    let received = m.open_envelope(envelope, &mut OsRng)?;
    if let Some(token) = DeliveryToken::carried_by(&received.content) {
        // Sealing the record fails only without randomness; the token is
        // then not recorded, as a malformed one, and nothing else changes.
        let _ = m.store().put_peer_token(&received.sender, &token);
    }
    Ok(received)
}

/// The submission of a sealed envelope to `recipient`, with its recorded
/// token.
pub fn submit(
    store: &BrowserStore,
    recipient: &Address,
    envelope: Vec<u8>,
) -> Result<Submit, FrameError> {
    Submit::new(recipient.clone(), envelope, store.peer_token(recipient))
}

/// The submission of a group envelope, each recipient with its recorded
/// token.
pub fn submit_group(store: &BrowserStore, sealed: &MultiSealed) -> Result<SubmitGroup, FrameError> {
    SubmitGroup::from_sealed(sealed, |address| store.peer_token(address))
}
