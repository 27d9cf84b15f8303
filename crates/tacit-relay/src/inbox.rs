//! Messages the writer hands to a logged-in connection after their commit,
//! so that the connection pushes them without reading them back from the
//! store.
//!
//! The connection's delivery task keeps a cursor: the id of the last
//! message it pushed. It reads its mailbox from the store after the
//! cursor while the inbox is *stale*: at login (the backlog), after the
//! inbox overflowed (a slow reader), and whenever a message landed that
//! was not handed over (a group copy, or any mail on a shared database,
//! where other nodes' commits are announced only by a wake-up). Otherwise
//! it pushes what was handed over, in order, skipping ids at or below the
//! cursor (those the store read already pushed).
//!
//! Why nothing is skipped or pushed twice, on SQLite (one writer, ids
//! increasing in commit order): the connection is registered as online
//! before its first store read, so a message committed before that read
//! is read from the store, and one committed after it is handed over (the
//! writer looks the recipient up after the commit) or, if dropped by an
//! overflow, leaves the inbox stale, so that the next pass reads the store
//! again from the cursor. Handed-over messages arrive in id order, and the
//! cursor drops what a store read covered.

use std::sync::Mutex;

use crate::store::StoredMessage;

/// What one message costs in the inbox beyond its envelope.
const OVERHEAD: usize = 64;

/// The messages handed to one connection and not yet taken.
#[derive(Debug)]
pub(crate) struct Inbox {
    state: Mutex<State>,
    /// The most bytes held before the inbox gives up and goes stale.
    cap: usize,
}

#[derive(Debug)]
struct State {
    messages: Vec<StoredMessage>,
    bytes: usize,
    stale: bool,
}

/// What [`Inbox::take`] returns.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The store must be read from the cursor before `messages`.
    pub(crate) stale: bool,
    /// The messages handed over, in commit (id) order.
    pub(crate) messages: Vec<StoredMessage>,
}

impl Inbox {
    /// An empty, stale inbox (the backlog is still to be read) holding at
    /// most `cap` bytes.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State {
                messages: Vec::new(),
                bytes: 0,
                stale: true,
            }),
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands over a committed message. Past the cap, everything held is
    /// dropped and the inbox goes stale: the store has it all.
    pub(crate) fn hand(&self, message: StoredMessage) {
        let mut state = self.lock();
        if state.stale {
            return;
        }
        let cost = message.envelope.len() + OVERHEAD;
        if state.bytes + cost > self.cap {
            state.messages = Vec::new();
            state.bytes = 0;
            state.stale = true;
            return;
        }
        state.bytes += cost;
        state.messages.push(message);
    }

    /// Mail landed that was not handed over: the store must be read.
    pub(crate) fn mark_stale(&self) {
        let mut state = self.lock();
        state.messages = Vec::new();
        state.bytes = 0;
        state.stale = true;
    }

    /// Takes what was handed over, and whether the store must be read
    /// first; the inbox is then empty and fresh.
    pub(crate) fn take(&self) -> Taken {
        let mut state = self.lock();
        state.bytes = 0;
        Taken {
            stale: std::mem::replace(&mut state.stale, false),
            messages: std::mem::take(&mut state.messages),
        }
    }
}

/// The messages of `taken` after `cursor`, in order: those a store read
/// has not already pushed.
pub(crate) fn after(
    cursor: u64,
    messages: Vec<StoredMessage>,
) -> impl Iterator<Item = StoredMessage> {
    messages.into_iter().filter(move |m| m.id > cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64) -> StoredMessage {
        StoredMessage {
            id,
            server_ms: 0,
            envelope: vec![0; 100],
            kind: 0,
        }
    }

    #[test]
    fn starts_stale_then_hands_over_in_order() {
        let inbox = Inbox::new(10_000);
        // Before the first take the backlog is unread: nothing is held.
        inbox.hand(msg(1));
        let first = inbox.take();
        assert!(first.stale);
        assert!(first.messages.is_empty());
        inbox.hand(msg(2));
        inbox.hand(msg(3));
        let next = inbox.take();
        assert!(!next.stale);
        let ids: Vec<u64> = next.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, [2, 3]);
        let empty = inbox.take();
        assert!(!empty.stale && empty.messages.is_empty());
    }

    #[test]
    fn overflow_goes_stale_and_drops_what_it_held() {
        let inbox = Inbox::new(3 * (100 + OVERHEAD));
        let _ = inbox.take();
        for id in 1..=5 {
            inbox.hand(msg(id));
        }
        let taken = inbox.take();
        assert!(
            taken.stale,
            "an overflow must make the next pass read the store"
        );
        assert!(taken.messages.is_empty());
        // After the store read the inbox is fresh again.
        inbox.hand(msg(6));
        let taken = inbox.take();
        assert!(!taken.stale);
        assert_eq!(taken.messages.len(), 1);
    }

    #[test]
    fn mark_stale_forces_a_store_read() {
        let inbox = Inbox::new(10_000);
        let _ = inbox.take();
        inbox.hand(msg(7));
        inbox.mark_stale();
        let taken = inbox.take();
        assert!(taken.stale);
        assert!(taken.messages.is_empty());
    }

    #[test]
    fn after_drops_what_the_store_read_pushed() {
        let ids: Vec<u64> = after(5, (3..=8).map(msg).collect()).map(|m| m.id).collect();
        assert_eq!(ids, [6, 7, 8]);
    }
}
