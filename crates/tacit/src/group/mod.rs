//! Groups (`docs/PROTOCOL.md` section 16).
//!
//! [`multi`] is the multi-recipient envelope: one encryption of a group
//! message for every recipient device, with a 32-byte part per device.

pub mod multi;
mod multi_proto;
