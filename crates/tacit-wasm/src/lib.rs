//! tacit in the browser: a JavaScript API (wasm-bindgen) over the session
//! layer of `tacit`, with the state persisted through a small storage
//! interface (`TacitStorage`; `js/idb-storage.js` implements it on
//! IndexedDB), every record sealed at rest ([`store`]).
//!
//! [`Tacit`] is one device of a user: it creates the account and the
//! user's signed device list (`docs/PROTOCOL.md` 14), gives its prekey
//! bundle, takes the device lists and bundles of peers, seals messages for
//! every device of a user and opens envelopes; it creates and changes
//! groups, sends group messages and reads them ([`groups`],
//! `docs/PROTOCOL.md` 16). A method that changes state
//! returns a promise that settles once the storage has written the change
//! (in one transaction): act on its result (send the envelopes, acknowledge
//! the delivery) only then. Errors are thrown as `TacitError`s with a
//! stable `code` ([`error::CODES`]).
//!
//! `build.sh` builds the module and its glue with `wasm-bindgen-cli` of the
//! exact version of the `wasm-bindgen` crate.

mod api;
pub mod error;
pub mod groups;
mod groups_js;
#[cfg(feature = "perf")]
pub mod perf;
#[cfg(feature = "perf")]
mod perf_js;
pub mod relay;
mod relay_device;
pub mod store;
pub mod tokens;
mod tokens_js;

pub use api::{DeviceAddress, Outgoing, Received, Storage, Tacit};
pub use groups_js::{GroupInfo, GroupMemberInfo, GroupReceived, GroupSent, GroupUpdate};
#[cfg(feature = "perf")]
pub use perf_js::perf_run;
