//! Frames between tacit clients and the relay.
