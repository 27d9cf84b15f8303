//! Delivery token records: this device's own token (a secret, sealed in
//! the store like every record) and the token each correspondent device
//! sent in its contents (`docs/PROTOCOL.md` section 10, "Extension field
//! 16").

use tacit::error::StoreError;
use tacit::Address;
use tacit_relay_proto::DeliveryToken;
use tacit_sqlite::AppWrite;

use super::{corrupt, ClientStore, Writes};

/// This device's token (key: empty).
const OWN_TOKEN: &str = "client/delivery-token";
/// A correspondent device's token, by its address.
const PEER_TOKEN: &str = "client/peer-token";

/// The record key of a device's address: its user id, 0, its device id.
fn address_key(address: &Address) -> Vec<u8> {
    let mut key = address.user_id().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&address.device_id().to_be_bytes());
    key
}

fn token(bytes: &[u8]) -> Result<DeliveryToken, StoreError> {
    DeliveryToken::new(bytes).map_err(|_| corrupt())
}

impl Writes {
    /// Records `token` as the one `address` asks its correspondents for.
    pub(crate) fn peer_token(&mut self, address: &Address, token: &DeliveryToken) {
        self.0.push(AppWrite::put(
            PEER_TOKEN,
            &address_key(address),
            token.as_bytes().to_vec(),
        ));
    }

    /// Sets this device's own token.
    pub(crate) fn own_token(&mut self, token: &DeliveryToken) {
        self.0
            .push(AppWrite::put(OWN_TOKEN, b"", token.as_bytes().to_vec()));
    }
}

impl ClientStore {
    /// This device's token, if it has one.
    pub(crate) fn own_token(&self) -> Result<Option<DeliveryToken>, StoreError> {
        self.inner()?
            .app_record(OWN_TOKEN, b"")?
            .map(|bytes| token(&bytes))
            .transpose()
    }

    /// The token `address` last sent, if any.
    pub(crate) fn peer_token(
        &self,
        address: &Address,
    ) -> Result<Option<DeliveryToken>, StoreError> {
        self.inner()?
            .app_record(PEER_TOKEN, &address_key(address))?
            .map(|bytes| token(&bytes))
            .transpose()
    }
}
