//! Delivery tokens (`docs/client.md`, "Delivery tokens"): this device's
//! own, set at the relay at every login and rotated on demand; and the
//! path of a submission the relay refused on the anonymous connection for
//! want of the recipient's token, sent again on the logged-in connection
//! within the account's tokenless quota.

use rand_core::{OsRng, RngCore};
use tacit::envelope::{Content, ContentKind};
use tacit::Address;
use tacit_relay_proto::{
    DeliveryToken, ErrorCode, ErrorReply, Reply, Request, SetDeliveryToken, Submit, SubmitGroup,
};
use zeroize::Zeroizing;

use crate::conn::Conn;
use crate::store::Writes;
use crate::ClientError;

use super::{unexpected, Engine};

/// The length of the tokens this client draws.
const TOKEN_LEN: usize = 32;

/// A new random token.
fn fresh() -> Result<DeliveryToken, ClientError> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_LEN]);
    OsRng.fill_bytes(bytes.as_mut());
    DeliveryToken::new(bytes.as_ref()).map_err(|e| ClientError::Invalid(e.to_string()))
}

/// Sets `token` as the device's token at the relay, or clears it.
async fn set(conn: &mut Conn, token: Option<DeliveryToken>) -> Result<(), ClientError> {
    let request = Request::SetDeliveryToken(SetDeliveryToken { token });
    match conn.request(request).await? {
        Ok(Reply::DeliveryTokenSet) => Ok(()),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}

impl Engine {
    /// At login: draws the device's token if it has none yet (stored
    /// first, so that the token the relay holds is always one the store
    /// knows) and sets it at the relay, which may have lost it (a device
    /// registered again starts without one).
    /// Without [`ClientConfig::delivery_token`], clears it at the relay.
    pub(super) async fn ensure_token(&mut self, conn: &mut Conn) -> Result<(), ClientError> {
        if !self.config.delivery_token {
            return set(conn, None).await;
        }
        let token = match self.manager.store().own_token()? {
            Some(token) => token,
            None => {
                let token = fresh()?;
                let mut writes = Writes::default();
                writes.own_token(&token);
                self.manager.store().commit_with(None, writes)?;
                token
            }
        };
        set(conn, Some(token)).await
    }

    /// Draws a new token, stores it and sets it at the relay. Peers learn
    /// it from this device's next content to them; until then their
    /// submissions take the logged-in path, within their quota.
    pub(super) async fn rotate_token(&mut self, conn: &mut Conn) -> Result<(), ClientError> {
        if !self.config.delivery_token {
            return Err(ClientError::Invalid(
                "this client keeps no delivery token (ClientConfig::delivery_token)".into(),
            ));
        }
        let token = fresh()?;
        let mut writes = Writes::default();
        writes.own_token(&token);
        self.manager.store().commit_with(None, writes)?;
        set(conn, Some(token)).await
    }

    /// `content` with this device's token in it (extension field 16), for
    /// every kind but delivery receipts: those go out on their own to
    /// anyone who writes, and a stranger's first message must not earn it
    /// the token. Without a token (before the first login), the content
    /// as it is.
    pub(super) fn with_token(&self, content: Content) -> Result<Content, ClientError> {
        if content.kind() == ContentKind::DeliveryReceipt || !self.config.delivery_token {
            return Ok(content);
        }
        match self.manager.store().own_token()? {
            Some(token) => content
                .with_delivery_token(token.as_bytes())
                .map_err(|e| ClientError::Invalid(e.to_string())),
            None => Ok(content),
        }
    }

    /// The token `address` asks for, as it last sent it.
    pub(super) fn peer_token(&self, address: &Address) -> Option<DeliveryToken> {
        match self.manager.store().peer_token(address) {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(%address, error = %e, "delivery token not read");
                None
            }
        }
    }

    /// Submits `request` anonymously; if the relay refuses it for want of
    /// a delivery token (none known, or a stale one), sends it again on
    /// the logged-in connection, where the relay takes it within the
    /// account's tokenless quota. `Ok(Err(_))` is the relay's last
    /// refusal. Without a logged-in connection at hand, the anonymous
    /// refusal is the answer.
    pub(super) async fn submit_with_fallback(
        &mut self,
        request: Request,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        let answer = match &request {
            Request::Submit(s) => self.courier.submit(s.clone()).await?,
            Request::SubmitGroup(s) => self.courier.submit_group(s.clone()).await?,
            other => {
                return Err(ClientError::Invalid(format!(
                    "{} is not a submission",
                    other.name()
                )))
            }
        };
        match answer {
            Err(e) if e.code == ErrorCode::DeliveryTokenRefused => match self.account.as_mut() {
                Some(conn) => {
                    tracing::debug!("delivery token refused; submitting logged in");
                    conn.request(request).await
                }
                None => Ok(Err(e)),
            },
            answer => Ok(answer),
        }
    }

    /// A sealed envelope's submission, with the recipient's token if known.
    pub(super) fn submit_request(
        &self,
        recipient: &Address,
        envelope: Vec<u8>,
    ) -> Result<Request, ErrorReply> {
        Submit::new(recipient.clone(), envelope, self.peer_token(recipient))
            .map(Request::Submit)
            .map_err(|e| ErrorReply::new(ErrorCode::InvalidRequest, e.to_string()))
    }

    /// A group submission, each recipient with its token if known.
    pub(super) fn submit_group_request(
        &self,
        sealed: &tacit::group::multi::MultiSealed,
    ) -> Result<Request, ClientError> {
        Ok(Request::SubmitGroup(SubmitGroup::from_sealed(
            sealed,
            |a| self.peer_token(a),
        )?))
    }
}
