//! A device over an in-memory store, for the session layer's tests.

use rand_core::CryptoRngCore;
use tacit::session::{Account, SessionConfig, SessionManager};
use tacit::store::InMemoryStore;
use tacit::{Address, DeviceId};

/// The session manager of a test device.
pub type Device = SessionManager<InMemoryStore>;

/// Device `device_id` of `user`: a new account (created at time 0) under
/// the default config, with 4 one-time prekeys.
pub fn device(user: &str, device_id: DeviceId, rng: &mut impl CryptoRngCore) -> Device {
    device_with(user, device_id, SessionConfig::default(), rng)
}

/// [`device`] under `config`.
pub fn device_with(
    user: &str,
    device_id: DeviceId,
    config: SessionConfig,
    rng: &mut impl CryptoRngCore,
) -> Device {
    let mut d = SessionManager::create(
        InMemoryStore::new(),
        Address::new(user, device_id).expect("a valid test address"),
        Account::generate(0, rng),
        config,
    )
    .expect("a new session manager");
    d.generate_one_time_prekeys(4, rng)
        .expect("one-time prekeys");
    d
}
