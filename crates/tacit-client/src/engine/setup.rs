//! Opening the store (creating the account for a new user or a device to
//! be linked) and registering with the relay.

use rand_core::OsRng;
use tacit::error::SessionError;
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::session::{SessionConfig, SessionManager};
use tacit::{Account, Address};
use tacit_relay_proto::{Register, Reply, Request, UploadPreKeys};

use crate::conn::{Conn, Role};
use crate::endpoint::{login_name, Endpoint};
use crate::store::{ClientStore, Profile};
use crate::worker;
use crate::{now_ms, ClientConfig, ClientError, Registration};

use super::prekeys::{self, Stored};
use super::Manager;

/// How a new store is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Creation<'a> {
    /// The first device of a new user: a new user key and a one-device list.
    NewUser(&'a Address),
    /// A device to be linked: its list comes from the device that links it.
    LinkedDevice(&'a Address),
}

impl<'a> Creation<'a> {
    fn address(self) -> &'a Address {
        match self {
            Self::NewUser(a) | Self::LinkedDevice(a) => a,
        }
    }
}

/// Opens the store and its session manager, creating the account (and the
/// profile naming the address) when `create` is set and the store is new.
pub(crate) fn open_manager(
    config: &ClientConfig,
    create: Option<Creation<'_>>,
) -> Result<Manager, ClientError> {
    let store = ClientStore::open(&config.store_path, config.store_key.as_bytes())?;
    match (store.profile()?, create) {
        (Some(profile), requested) => {
            let address = profile.address()?;
            if let Some(requested) = requested.map(Creation::address) {
                if *requested != address {
                    return Err(ClientError::ProfileMismatch {
                        stored: address.to_string(),
                        requested: requested.to_string(),
                    });
                }
            }
            let mut manager = SessionManager::open(store, address, SessionConfig::default())?;
            // A store from before tacit-v2 gets its KEM prekeys now; they
            // are uploaded at the next login.
            prekeys::enable_post_quantum(&mut manager)?;
            Ok(manager)
        }
        (None, None) => Err(ClientError::NotRegistered),
        (None, Some(Creation::LinkedDevice(address))) => {
            // The account and the profile; the own list comes from the
            // device that links this one.
            store.hold()?;
            let account = Account::generate(now_ms(), &mut OsRng);
            let created =
                SessionManager::create(store, address.clone(), account, SessionConfig::default());
            let manager = created?;
            let held = manager.store().release()?;
            let profile = Profile {
                user_id: address.user_id().into(),
                device_id: address.device_id(),
            };
            manager.store().set_profile(&profile, None, held)?;
            Ok(manager)
        }
        (None, Some(Creation::NewUser(address))) => {
            // The account, the user key, the device's own signed list and
            // the profile are written in one transaction.
            store.hold()?;
            let account = Account::generate(now_ms(), &mut OsRng);
            let identity = account.identity().public_key();
            let created =
                SessionManager::create(store, address.clone(), account, SessionConfig::default());
            let mut manager = created?;
            let user_key = UserKeyPair::generate(&mut OsRng);
            let list = DeviceList::sign(
                &user_key,
                address.user_id(),
                1,
                &[(address.device_id(), identity, now_ms())],
            )
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
            manager.update_device_list(&list)?;
            let held = manager.store().release()?;
            let profile = Profile {
                user_id: address.user_id().into(),
                device_id: address.device_id(),
            };
            manager
                .store()
                .set_profile(&profile, Some(&user_key), held)?;
            Ok(manager)
        }
    }
}

/// Creates the device's identity in the store at `config.store_path` (or
/// reuses the one there, which must be for `address`), registers it with
/// the relay (again, if the relay already knows it with this key, or has
/// lost its database) and publishes its signed, fallback and one-time
/// prekeys. The work runs on a thread of its own (see `worker`).
pub async fn register(
    config: &ClientConfig,
    address: Address,
) -> Result<Registration, ClientError> {
    let config = config.clone();
    worker::run("tacit-register", move || async move {
        register_here(&config, address).await
    })
    .await
}

/// [`register`] on the calling thread.
pub(crate) async fn register_here(
    config: &ClientConfig,
    address: Address,
) -> Result<Registration, ClientError> {
    // The URL is checked before the store is touched.
    let endpoint = Endpoint::new(config)?;
    let mut manager = open_manager(config, Some(Creation::NewUser(&address)))?;
    let mut conn = Conn::connect(&endpoint, config.request_timeout, Role::Account).await?;
    let challenge = challenge(&mut conn).await?;
    let server_name = login_name(&config.server_name, &challenge.server_name)?;
    let own_list = manager
        .device_list(address.user_id())?
        .ok_or(ClientError::Session(SessionError::NotOnOwnList))?;
    let request = Register::sign(
        manager.account().identity(),
        server_name,
        &challenge.challenge,
        now_ms(),
        address.clone(),
        &own_list,
    );
    let info = match conn.request(Request::Register(request)).await? {
        Ok(Reply::LoggedIn(info)) => info,
        Ok(other) => return Err(unexpected(&other)),
        Err(e) => return Err(ClientError::Relay(e)),
    };
    let relay = Stored {
        one_time: info.one_time_prekeys,
        one_time_kem: info.one_time_kem_prekeys,
    };
    let stored = if info.registered || !info.has_signed_prekey {
        prekeys::publish_all(&mut manager, &mut conn, config)
            .await?
            .stored
    } else if !info.has_kem_prekey && manager.account().has_kem_prekeys() {
        prekeys::publish_kem(&mut manager, &mut conn, config, info.one_time_prekeys)
            .await?
            .stored
    } else {
        prekeys::top_up(
            &mut manager,
            &mut conn,
            config,
            relay,
            UploadPreKeys::default(),
        )
        .await?
        .map_or(relay, |p| p.stored)
    };
    conn.close().await;
    Ok(Registration {
        address,
        newly_registered: info.registered,
        one_time_prekeys: stored.one_time,
        one_time_kem_prekeys: stored.one_time_kem,
    })
}

pub(crate) fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected answer {reply:?}"))
}

pub(super) async fn challenge(
    conn: &mut Conn,
) -> Result<tacit_relay_proto::Challenge, ClientError> {
    match conn.request(Request::GetChallenge).await? {
        Ok(Reply::Challenge(c)) => Ok(c),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}
