//! The user's own devices, on the device that holds the user key: linking
//! a new device (the answer to [`crate::link`]), removing one, and listing
//! them (`docs/PROTOCOL.md` 14.7).

use std::time::Duration;

use rand_core::OsRng;
use tacit::error::SessionError;
use tacit::identity::{DeviceList, LinkCode, UserKeyPair};
use tacit::{Address, DeviceId};
use tacit_relay_proto::{DeviceListBytes, LinkPut, PublishDeviceList, Reply, Request};
use tokio::time::Instant;

use super::{unexpected, Engine};
use crate::conn::Conn;
use crate::{now_ms, ClientError, DeviceInfo, RecoveryCode};

/// How long the approving device waits for the new device's request to
/// reach the relay (the new device puts it before it shows the code, so
/// it is normally there at once).
const REQUEST_WAIT: Duration = Duration::from_secs(10);

impl Engine {
    /// The user key; only the user's first device holds it.
    fn user_key(&self) -> Result<UserKeyPair, ClientError> {
        self.manager
            .store()
            .user_key()?
            .ok_or_else(|| ClientError::Invalid("this device does not hold its user's key".into()))
    }

    /// The local user's verified list, refreshed from the relay first.
    async fn own_list(&mut self) -> Result<DeviceList, ClientError> {
        let user = self.manager.local_address().user_id().to_owned();
        self.refresh_list(&user).await?;
        self.manager
            .device_list(&user)?
            .ok_or(ClientError::Session(SessionError::NotOnOwnList))
    }

    /// Publishes `list` over the logged-in connection, then trusts it here.
    async fn publish(&mut self, conn: &mut Conn, list: &DeviceList) -> Result<(), ClientError> {
        let request = PublishDeviceList {
            device_list: DeviceListBytes::from(list),
        };
        match conn.request(Request::PublishDeviceList(request)).await? {
            Ok(Reply::DeviceListStored { .. }) => {}
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(ClientError::Relay(e)),
        }
        self.manager.update_device_list(list)?;
        Ok(())
    }

    /// Approves the device that showed `code`: takes its request, signs the
    /// next list with it on, publishes the list and answers the new device
    /// with it. Returns the new device's address.
    pub(super) async fn approve_link(
        &mut self,
        conn: &mut Conn,
        code: &LinkCode,
    ) -> Result<Address, ClientError> {
        let user_key = self.user_key()?;
        let secrets = code.secrets();
        let blob = self
            .courier
            .take_link_slot(
                secrets.request_slot(),
                Instant::now() + REQUEST_WAIT,
                Duration::from_millis(250),
            )
            .await?
            .map_err(ClientError::Relay)?;
        let request = secrets.open_request(&blob)?;
        if request.address.user_id() != self.manager.local_address().user_id() {
            return Err(ClientError::Invalid(format!(
                "the request is for another user: {}",
                request.address
            )));
        }
        let list = self.own_list().await?.with_device(
            &user_key,
            request.address.device_id(),
            request.identity,
            now_ms(),
        )?;
        self.publish(conn, &list).await?;
        let answer = secrets.seal_response(&list, &mut OsRng)?;
        let put = LinkPut::new(secrets.response_slot(), answer)?;
        match self.courier.link(Request::LinkPut(put)).await? {
            Ok(Reply::LinkStored) => Ok(request.address),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(ClientError::Relay(e)),
        }
    }

    /// Removes `device_id` from the user's list: the relay deletes its
    /// registration and mailbox, and peers that fetch the list stop
    /// sending to it.
    pub(super) async fn remove_device(
        &mut self,
        conn: &mut Conn,
        device_id: DeviceId,
    ) -> Result<(), ClientError> {
        if device_id == self.manager.local_address().device_id() {
            return Err(ClientError::Invalid(
                "this device holds the user key and cannot remove itself".into(),
            ));
        }
        let user_key = self.user_key()?;
        let list = self
            .own_list()
            .await?
            .without_device(&user_key, device_id)?;
        self.publish(conn, &list).await
    }

    /// The user key's recovery code.
    pub(super) fn recovery_code(&self) -> Result<RecoveryCode, ClientError> {
        self.user_key().map(RecoveryCode::of)
    }

    /// The devices on the local user's verified list.
    pub(super) fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let local = self.manager.local_address();
        let list = self
            .manager
            .device_list(local.user_id())?
            .ok_or(ClientError::Session(SessionError::NotOnOwnList))?;
        Ok(list
            .devices()
            .iter()
            .filter_map(|d| {
                let address = Address::new(local.user_id(), d.device_id).ok()?;
                Some(DeviceInfo {
                    this_device: address == *local,
                    address,
                    identity: d.identity_key,
                    added_at_ms: d.added_at_ms,
                })
            })
            .collect())
    }
}
