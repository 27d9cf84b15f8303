//! Linking a new device to its user (`docs/PROTOCOL.md` 14.7), on the new
//! device's side: it shows a one-time code, puts its sealed request at the
//! relay, waits for the answer sealed under the same code, checks that the
//! answer's signed list names it, trusts that list as its own, and
//! registers. The device that holds the user key answers with
//! [`Client::approve_link`](crate::Client::approve_link).

use std::time::Duration;

use rand_core::OsRng;
use tacit::identity::LinkCode;
use tacit::Address;
use tacit_relay_proto::{ErrorCode, LinkPut, Reply, Request};
use tokio::time::Instant;

use crate::courier::Courier;
use crate::endpoint::Endpoint;
use crate::engine::{open_manager, register_here, unexpected, Creation};
use crate::worker;
use crate::{ClientConfig, ClientError, Registration};

/// How often the new device asks the relay for the answer.
const POLL: Duration = Duration::from_millis(250);

/// Links this store's device, at `address`, to its user: `code` is the
/// one-time code the application showed the user (make one with
/// [`LinkCode::generate`]), which the user enters on a device of theirs
/// that holds the user key. Waits up to `wait` for the answer, then
/// registers with the relay and publishes prekeys.
///
/// Safe to call again with the same store and a new code after a failure:
/// the device keeps its identity key. A store already linked (or already
/// the first device of its user) just registers again.
pub async fn link(
    config: &ClientConfig,
    address: Address,
    code: &LinkCode,
    wait: Duration,
) -> Result<Registration, ClientError> {
    let config = config.clone();
    let code = code.clone();
    worker::run("tacit-link", move || async move {
        link_here(&config, address, &code, wait).await
    })
    .await
}

/// [`link`] on the calling thread.
async fn link_here(
    config: &ClientConfig,
    address: Address,
    code: &LinkCode,
    wait: Duration,
) -> Result<Registration, ClientError> {
    let endpoint = Endpoint::new(config)?;
    let mut manager = open_manager(config, Some(Creation::LinkedDevice(&address)))?;
    if manager.device_list(address.user_id())?.is_none() {
        let identity = manager.account().identity().public_key();
        let secrets = code.secrets();
        let mut courier = Courier::new(endpoint, config.request_timeout);
        let blob = secrets.seal_request(&address, &identity, &mut OsRng)?;
        let put = LinkPut::new(secrets.request_slot(), blob)?;
        match courier.link(Request::LinkPut(put)).await? {
            Ok(Reply::LinkStored) => {}
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(ClientError::Relay(e)),
        }
        let answer = courier
            .take_link_slot(secrets.response_slot(), Instant::now() + wait, POLL)
            .await?;
        let answer = match answer {
            Ok(blob) => blob,
            Err(e) if e.code == ErrorCode::LinkSlotUnavailable => {
                courier.close().await;
                return Err(ClientError::Timeout("waiting for the link to be approved"));
            }
            Err(e) => return Err(ClientError::Relay(e)),
        };
        courier.close().await;
        let list = secrets.open_response(&answer)?;
        if list.user_id() != address.user_id() || !list.lists(address.device_id(), &identity) {
            return Err(ClientError::Invalid(
                "the approved list does not name this device".into(),
            ));
        }
        manager.update_device_list(&list)?;
    }
    drop(manager);
    register_here(config, address).await
}
