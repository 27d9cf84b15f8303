//! Generation and verification of the profile `tacit-v1` test vectors
//! (`x3dh.json`, `ratchet.json`, `envelope.json` and `identity.json`) and
//! of profile `tacit-v2`'s (`pqxdh.json`), of the groups'
//! (`group.json`), and of the relay's frames (`relay-frames.json`).
//!
//! `verify` reads files of the profile's schema strictly and recomputes
//! everything from the inputs alone, so it checks files written by any
//! implementation of the profile.

pub mod envelope;
pub mod envelope_attachments;
pub mod envelope_contents;
pub mod envelope_session;
pub mod envelope_tokens;
pub mod generate;
pub mod group;
pub mod group_gen;
pub mod group_gen_multi;
pub mod group_gen_states;
pub mod group_multi;
pub mod group_schema;
pub mod group_wire;
pub mod identity;
pub mod link;
pub mod pqxdh;
pub mod relay_frames;
pub mod schema;
pub mod script_rng;
pub mod transcript;
pub mod verify;
