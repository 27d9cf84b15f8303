//! Device lists from the relay: fetched, verified and trusted when newer,
//! and refreshed once when an envelope names an unknown user or device.

use rand_core::OsRng;
use tacit::error::SessionError;
use tacit::identity::{DeviceList, UserKey};
use tacit::session::{DeviceListUpdate, Received};
use tacit_relay_proto::{FetchDeviceList, Reply};

use crate::ClientError;

use super::{unexpected, Engine};

impl Engine {
    /// Fetches `user_id`'s list from the relay and trusts it if it is newer
    /// than the stored one (an older one is ignored: the newest verified
    /// list stays). Returns whether the relay served a list that verifies.
    pub(super) async fn refresh_list(&mut self, user_id: &str) -> Result<bool, ClientError> {
        let Some(list) = self.fetch_list(user_id, None).await? else {
            return Ok(false);
        };
        match self.manager.update_device_list(&list) {
            Ok(_) | Err(SessionError::StaleDeviceList { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The user's current list from the relay, verified, for that user and
    /// (when `expected` is given) under that user key. `None` when the
    /// relay has none or serves one that does not verify: a relay cannot
    /// make this client trust a list the user key did not sign.
    pub(super) async fn fetch_list(
        &mut self,
        user_id: &str,
        expected: Option<&UserKey>,
    ) -> Result<Option<DeviceList>, ClientError> {
        let request = FetchDeviceList::new(user_id)?;
        let bytes = match self.courier.fetch_device_list(request).await? {
            Ok(Reply::DeviceList(bytes)) => bytes,
            Ok(other) => return Err(unexpected(&other)),
            Err(_) => return Ok(None),
        };
        let Ok(list) = bytes.verify() else {
            tracing::warn!(
                user_id,
                "the relay served a device list that does not verify"
            );
            return Ok(None);
        };
        if list.user_id() != user_id || expected.is_some_and(|k| k != list.user_key()) {
            return Ok(None);
        }
        Ok(Some(list))
    }

    /// Opens `envelope`, refreshing the sender's device list once from the
    /// relay when the sender's user is unknown or its device not listed
    /// (it may have been linked since). Returns the result and whether the
    /// sender's user was met for the first time. The store's hold is active
    /// when it returns.
    pub(super) async fn open_with_lists(
        &mut self,
        envelope: &[u8],
    ) -> Result<(Result<Received, SessionError>, bool), ClientError> {
        let mut first_contact = false;
        let mut refreshed = false;
        loop {
            self.manager.store().hold()?;
            let opened = self.manager.open_envelope(envelope, &mut OsRng);
            let retry = match &opened {
                Err(SessionError::UnknownUser(u)) if !refreshed => {
                    Some((u.user_id.clone(), u.user_key))
                }
                Err(SessionError::DeviceNotListed(a)) if !refreshed => {
                    Some((a.user_id().to_owned(), None))
                }
                _ => None,
            };
            let Some((user, expected)) = retry else {
                return Ok((opened, first_contact));
            };
            // The failed open wrote nothing.
            self.manager.store().release()?;
            refreshed = true;
            let Some(list) = self.fetch_list(&user, expected.as_ref()).await? else {
                self.manager.store().hold()?;
                return Ok((opened, first_contact));
            };
            match self.manager.update_device_list(&list) {
                Ok(DeviceListUpdate::FirstContact) => first_contact = true,
                Ok(_) => {}
                Err(SessionError::Store(e)) => return Err(e.into()),
                Err(_) => {
                    self.manager.store().hold()?;
                    return Ok((opened, first_contact));
                }
            }
        }
    }
}
