//! The devices logged in on this relay, and how to reach their
//! connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tacit::Address;
use tokio::sync::{mpsc, Notify};

use crate::inbox::Inbox;
use crate::kem::PreKeyCounts;
use crate::push::Pusher;
use crate::store::StoredMessage;

/// The most bytes of handed-over messages a connection holds before it
/// reads its mailbox from the store instead.
const INBOX_BYTES: usize = 256 * 1024;

/// How the relay reaches one logged-in connection.
#[derive(Debug)]
pub(crate) struct Signal {
    /// The connection's number.
    pub(crate) connection: u64,
    /// Wakes the delivery task: new mail, or a prekey warning.
    pub(crate) wake: Notify,
    /// Tells the connection another login replaced it, or (with
    /// `removed` set) that its device was removed.
    pub(crate) kicked: Notify,
    /// The device was removed from its user's list.
    removed: AtomicBool,
    /// A pending low-prekeys warning (the counts).
    low: Mutex<Option<PreKeyCounts>>,
    /// Messages handed over after their commit ([`crate::inbox`]).
    pub(crate) inbox: Inbox,
}

impl Signal {
    pub(crate) fn new(connection: u64) -> Self {
        Self {
            connection,
            wake: Notify::new(),
            kicked: Notify::new(),
            removed: AtomicBool::new(false),
            low: Mutex::new(None),
            inbox: Inbox::new(INBOX_BYTES),
        }
    }

    /// Mail landed that was not handed over: the delivery task reads the
    /// store again.
    fn stale(&self) {
        self.inbox.mark_stale();
        self.wake.notify_one();
    }

    /// Whether the connection was kicked because its device was removed.
    pub(crate) fn was_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Takes the pending low-prekeys warning.
    pub(crate) fn take_low(&self) -> Option<PreKeyCounts> {
        self.low
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// A device's connection and when it logged in (ms since the Unix epoch).
type Entry = (Arc<Signal>, u64);

/// The registry of logged-in devices: at most one connection per device.
#[derive(Debug, Default)]
pub(crate) struct Online {
    devices: Mutex<HashMap<Address, Entry>>,
    /// Devices removed from their users' lists since start.
    removed: AtomicU64,
    /// Where logins are announced to the other nodes of a shared database.
    announce: OnceLock<mpsc::UnboundedSender<(Address, u64)>>,
    /// Where wake-ups for devices offline here go.
    push: OnceLock<Pusher>,
}

impl Online {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Entry>> {
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes `signal` the device's connection; an earlier one is told it
    /// was replaced, here and (with [`Online::announce_logins`]) on the
    /// other nodes.
    pub(crate) fn insert(&self, address: Address, signal: Arc<Signal>) {
        let since = crate::now_ms();
        if let Some((old, _)) = self.map().insert(address.clone(), (signal, since)) {
            old.kicked.notify_one();
        }
        if let Some(announce) = self.announce.get() {
            let _ = announce.send((address, since));
        }
    }

    /// Sends every later login (address, time) to `announce`.
    pub(crate) fn announce_logins(&self, announce: mpsc::UnboundedSender<(Address, u64)>) {
        let _ = self.announce.set(announce);
    }

    /// Another node logged the device in at `since_ms`: a connection here
    /// that logged in no later is told it was replaced.
    pub(crate) fn superseded(&self, address: &Address, since_ms: u64) {
        let mut map = self.map();
        if map.get(address).is_some_and(|(_, own)| *own <= since_ms) {
            if let Some((old, _)) = map.remove(address) {
                old.kicked.notify_one();
            }
        }
    }

    /// Wakes every connection's delivery task, to read its mailbox again.
    pub(crate) fn wake_all(&self) {
        for (signal, _) in self.map().values() {
            signal.stale();
        }
    }

    /// Forgets the device's connection if it is still `connection`.
    pub(crate) fn remove(&self, address: &Address, connection: u64) {
        let mut map = self.map();
        if map
            .get(address)
            .is_some_and(|(s, _)| s.connection == connection)
        {
            map.remove(address);
        }
    }

    /// Closes the device's connection, if it is online: the device was
    /// removed from its user's list.
    pub(crate) fn device_removed(&self, address: &Address) {
        self.removed.fetch_add(1, Ordering::Relaxed);
        if let Some((s, _)) = self.map().remove(address) {
            s.removed.store(true, Ordering::Release);
            s.kicked.notify_one();
        }
    }

    /// Wakes the device's delivery task, if it is online, to read its
    /// mailbox.
    pub(crate) fn wake(&self, address: &Address) {
        if let Some((s, _)) = self.map().get(address) {
            s.stale();
        }
    }

    /// Sends wake-ups for devices not online here to `pusher`.
    pub(crate) fn push_with(&self, pusher: Pusher) {
        let _ = self.push.set(pusher);
    }

    /// Mail landed in the device's mailbox: wakes its delivery task if it
    /// is online here, or else offers it a push wake-up. On a shared
    /// database the device may be online on another node; it then gets a
    /// wake-up it does not need (`docs/relay.md`, "Push wake-ups").
    pub(crate) fn wake_or_push(&self, address: &Address) {
        if let Some((s, _)) = self.map().get(address) {
            s.stale();
            return;
        }
        if let Some(pusher) = self.push.get() {
            pusher.offer(address);
        }
    }

    /// A message committed to the device's mailbox: handed to its
    /// connection if it is online here. Returns whether it is.
    pub(crate) fn hand_over(&self, address: &Address, message: StoredMessage) -> bool {
        let signal = self.map().get(address).map(|(s, _)| Arc::clone(s));
        match signal {
            Some(s) => {
                s.inbox.hand(message);
                s.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Offers a push wake-up to a device not online here.
    pub(crate) fn offer_push(&self, address: &Address) {
        if let Some(pusher) = self.push.get() {
            pusher.offer(address);
        }
    }

    /// Warns the device, if it is online, that its prekeys run low.
    pub(crate) fn prekeys_low(&self, address: &Address, remaining: PreKeyCounts) {
        if let Some((s, _)) = self.map().get(address) {
            *s.low
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(remaining);
            s.wake.notify_one();
        }
    }

    /// How many devices were removed from their users' lists since start.
    pub(crate) fn removed(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }

    /// How many devices are online.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}
