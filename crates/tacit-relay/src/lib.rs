//! The tacit relay: authenticated delivery, prekey directory, durable mailboxes.
