//! Test support shared by the workspace's tests and fuzz targets, so that
//! each fixture is written once:
//!
//! - [`TestUser`]: a user with one device, its user key, identity and
//!   device certificate, as the group tests and fuzz targets need them;
//! - [`device`]: a device over an in-memory store, with prekeys;
//! - [`fuzz::mutate`]: a real sample damaged as a fuzz input says;
//! - with the `relay` feature, `relay::Client`, the one client of the
//!   relay's frames (the relay's tests and the load generator use it; its
//!   halves pipeline), the devices it logs in as, `relay::spawn_relay` for
//!   a relay process, `relay::request`, one request a connection, and
//!   `relay::Sender`, a device that is no `tacit-client` (an impersonator,
//!   a non-member) and seals and submits what a test scripts.
//!
//! A fixture that cannot be built is a failed test: the helpers panic
//! (the relay client's `try_` forms return the failure instead).
#![allow(clippy::expect_used, clippy::panic)]

mod device;
pub mod fuzz;
mod user;

#[cfg(feature = "relay")]
pub mod relay;

pub use device::{device, device_with, Device};
pub use user::TestUser;
