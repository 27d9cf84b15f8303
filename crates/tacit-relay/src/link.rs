//! Link slots: opaque blobs two devices exchange while linking
//! (`docs/PROTOCOL.md` 14.7), held in memory, or on a shared database in
//! its `link_slots` table so that every node sees them.
//!
//! A slot holds one blob until it is taken (which deletes it) or until it
//! expires. The relay never reads the blobs. Slots in memory are not
//! durable: a restart loses them, and the devices start the linking again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tacit_relay_proto::{ErrorCode, ErrorReply, LINK_SLOT_LEN};

use crate::store::postgres::links;
use crate::store::Readers;

/// Slot id to blob and expiry.
type Slots = HashMap<[u8; LINK_SLOT_LEN], (Vec<u8>, Instant)>;

/// The live link slots.
#[derive(Debug)]
pub(crate) struct LinkSlots {
    slots: Mutex<Slots>,
    ttl: Duration,
    max: usize,
    /// The shared database holding the slots instead of `slots`.
    shared: Option<deadpool_postgres::Pool>,
}

impl LinkSlots {
    /// Slots that live `ttl`, at most `max` at once.
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            ttl,
            max,
            shared: None,
        }
    }

    /// Keeps the slots in the shared database `readers` read, if it is one.
    pub(crate) fn on(mut self, readers: &Readers) -> Self {
        if let Readers::Postgres(r) = readers {
            self.shared = Some(r.pool().clone());
        }
        self
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts `blob` in a free slot. An occupied live slot is
    /// `LinkSlotUnavailable`; when `max` slots are live, `RateLimited` with
    /// the time until the oldest expires.
    pub(crate) async fn put(
        &self,
        slot: [u8; LINK_SLOT_LEN],
        blob: Vec<u8>,
    ) -> Result<(), ErrorReply> {
        if let Some(pool) = &self.shared {
            let limits = (crate::now_ms(), self.ttl_ms(), self.max);
            return links::put(pool, &slot, &blob, limits).await;
        }
        let now = Instant::now();
        let mut map = self.map();
        if map.get(&slot).is_some_and(|(_, expires)| *expires > now) {
            return Err(ErrorReply::new(
                ErrorCode::LinkSlotUnavailable,
                "the link slot is occupied",
            ));
        }
        if map.len() >= self.max && !map.contains_key(&slot) {
            map.retain(|_, (_, expires)| *expires > now);
            if map.len() >= self.max {
                let wait = map
                    .values()
                    .map(|(_, expires)| expires.saturating_duration_since(now))
                    .min()
                    .unwrap_or(self.ttl);
                let mut reply =
                    ErrorReply::new(ErrorCode::RateLimited, "too many link slots in use");
                reply.retry_after_ms =
                    Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
                return Err(reply);
            }
        }
        map.insert(slot, (blob, now + self.ttl));
        Ok(())
    }

    /// Takes the blob of a live slot, deleting it; an empty or expired slot
    /// is `LinkSlotUnavailable`.
    pub(crate) async fn take(&self, slot: &[u8; LINK_SLOT_LEN]) -> Result<Vec<u8>, ErrorReply> {
        if let Some(pool) = &self.shared {
            return links::take(pool, slot, crate::now_ms()).await;
        }
        match self.map().remove(slot) {
            Some((blob, expires)) if expires > Instant::now() => Ok(blob),
            _ => Err(ErrorReply::new(
                ErrorCode::LinkSlotUnavailable,
                "the link slot is empty or expired",
            )),
        }
    }

    /// Deletes expired slots (on a shared database, in the background).
    pub(crate) fn sweep(&self) {
        if let Some(pool) = &self.shared {
            let pool = pool.clone();
            tokio::spawn(async move { links::sweep(&pool, crate::now_ms()).await });
            return;
        }
        let now = Instant::now();
        self.map().retain(|_, (_, expires)| *expires > now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_bounded_and_freed_by_takes() {
        let slots = LinkSlots::new(Duration::from_secs(60), 2);
        slots.put([1; 32], vec![1]).await.unwrap();
        slots.put([2; 32], vec![2]).await.unwrap();
        let full = slots.put([3; 32], vec![3]).await.unwrap_err();
        assert_eq!(full.code, ErrorCode::RateLimited);
        assert!(full.retry_after_ms.is_some());
        assert_eq!(slots.take(&[1; 32]).await.unwrap(), vec![1]);
        slots.put([3; 32], vec![3]).await.unwrap();
        assert_eq!(
            slots.put([3; 32], vec![4]).await.unwrap_err().code,
            ErrorCode::LinkSlotUnavailable
        );
    }
}
