//! The bounded store of skipped message keys (`MKSKIPPED`).
//!
//! Keys are kept in insertion order, grouped in one run per header key
//! (the keys of one receiving chain are stored together). When the store
//! holds its cap, storing one more key evicts the oldest one; when it holds
//! keys of [`MAX_SKIPPED_CHAINS`] chains, storing a key of another chain
//! evicts the oldest chain with all its keys.
//!
//! No key is left behind in freed or unused memory: a buffer grows by
//! cloning into a larger one and dropping the old one (each key wipes
//! itself on drop, where `VecDeque`'s own growth would free the old buffer
//! with the keys in it), a key is wiped in place before it is popped, and
//! removal goes through `retain`, which swaps and drops in place instead of
//! shifting copies.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use zeroize::Zeroize;

use super::MAX_SKIPPED_CHAINS;
use crate::keys::SecretKey32;

/// The skipped keys of one receiving chain, in insertion order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct SkippedChain {
    /// The header key of the chain (`HKr` when the keys were skipped).
    pub(crate) header_key: SecretKey32,
    /// `(N, MK)` pairs, oldest first.
    pub(crate) keys: VecDeque<(u32, SecretKey32)>,
}

/// Skipped message keys, bounded by a cap on their total number.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct SkippedKeys {
    chains: VecDeque<SkippedChain>,
    len: usize,
}

impl SkippedKeys {
    /// The total number of stored keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The runs of keys, oldest first.
    pub(crate) fn chains(&self) -> impl Iterator<Item = &SkippedChain> {
        self.chains.iter()
    }

    /// Rebuilds a store from runs, as read back from storage. Returns `None`
    /// when a run is empty.
    pub(crate) fn from_chains(chains: VecDeque<SkippedChain>) -> Option<Self> {
        if chains.iter().any(|c| c.keys.is_empty()) {
            return None;
        }
        let len = chains.iter().map(|c| c.keys.len()).sum();
        Some(Self { chains, len })
    }

    /// The message key stored for `(header_key, n)`, without removing it.
    pub(crate) fn get(&self, header_key: &SecretKey32, n: u32) -> Option<&SecretKey32> {
        self.chains
            .iter()
            .filter(|c| &c.header_key == header_key)
            .flat_map(|c| c.keys.iter())
            .find(|(m, _)| *m == n)
            .map(|(_, mk)| mk)
    }

    /// Removes the key stored for `(header_key, n)`, if any.
    pub(crate) fn remove(&mut self, header_key: &SecretKey32, n: u32) {
        let Some(ci) = self
            .chains
            .iter()
            .position(|c| &c.header_key == header_key && c.keys.iter().any(|(m, _)| *m == n))
        else {
            return;
        };
        if let Some(chain) = self.chains.get_mut(ci) {
            chain.keys.retain(|(m, _)| *m != n);
            if chain.keys.is_empty() {
                self.chains.retain(|c| !c.keys.is_empty());
            }
            self.len = self.chains.iter().map(|c| c.keys.len()).sum();
        }
    }

    /// The header keys that have stored keys, oldest run first, each once.
    pub(crate) fn header_keys(&self) -> Vec<&SecretKey32> {
        let mut keys: Vec<&SecretKey32> = Vec::new();
        for chain in &self.chains {
            if !keys.contains(&&chain.header_key) {
                keys.push(&chain.header_key);
            }
        }
        keys
    }

    /// Stores `(header_key, n) -> message_key`, evicting the oldest key
    /// first when `cap` keys are already stored. With a cap of zero nothing
    /// is stored.
    pub(crate) fn push(
        &mut self,
        header_key: &SecretKey32,
        n: u32,
        message_key: SecretKey32,
        cap: usize,
    ) {
        if cap == 0 {
            return;
        }
        if !self.chains.iter().any(|c| &c.header_key == header_key) {
            while self.header_keys().len() >= MAX_SKIPPED_CHAINS {
                self.evict_oldest_chain();
            }
        }
        while self.len >= cap {
            self.evict_oldest();
        }
        // One run per header key: the keys of a chain are stored together.
        match self.chains.iter_mut().find(|c| &c.header_key == header_key) {
            Some(chain) => push_back_wiping(&mut chain.keys, (n, message_key), MIN_KEYS_CAPACITY),
            None => push_back_wiping(
                &mut self.chains,
                SkippedChain {
                    header_key: header_key.clone(),
                    keys: VecDeque::from([(n, message_key)]),
                },
                MAX_SKIPPED_CHAINS,
            ),
        }
        self.len = self.len.saturating_add(1);
    }

    /// Drops the oldest chains until at most [`MAX_SKIPPED_CHAINS`] remain
    /// (a record written before the limit may hold more).
    pub(crate) fn trim_chains(&mut self) {
        while self.header_keys().len() > MAX_SKIPPED_CHAINS {
            self.evict_oldest_chain();
        }
    }

    /// Removes every key stored under the oldest run's header key.
    fn evict_oldest_chain(&mut self) {
        let Some(front) = self.chains.front_mut() else {
            self.len = 0;
            return;
        };
        let header_key = front.header_key.clone();
        // Wiped in place: `pop_front` moves it out and leaves its bytes in
        // the slot. The chain's keys are wiped in their own buffer on drop.
        front.header_key.zeroize();
        self.chains.pop_front();
        self.chains.retain(|c| c.header_key != header_key);
        self.len = self.chains.iter().map(|c| c.keys.len()).sum();
    }

    fn evict_oldest(&mut self) {
        let Some(front) = self.chains.front_mut() else {
            self.len = 0;
            return;
        };
        // Wiped in place first: `pop_front` leaves the bytes in the slot.
        if let Some((_, message_key)) = front.keys.front_mut() {
            message_key.zeroize();
        }
        front.keys.pop_front();
        if front.keys.is_empty() {
            front.header_key.zeroize();
            self.chains.pop_front();
        }
        self.len = self.len.saturating_sub(1);
    }
}

/// The capacity of a chain's key buffer at its first growth (576 bytes).
const MIN_KEYS_CAPACITY: usize = 16;

/// Appends `item`. When the buffer is full, its elements are cloned into
/// one twice as large (at least `min_capacity`) and the old buffer is
/// dropped, so each element wipes itself before that memory is freed (a
/// `VecDeque` growing by itself copies the bytes and frees the old buffer
/// as it is).
pub(crate) fn push_back_wiping<T: Clone>(deque: &mut VecDeque<T>, item: T, min_capacity: usize) {
    if deque.len() == deque.capacity() {
        let capacity = deque.len().saturating_mul(2).max(min_capacity);
        let mut grown = VecDeque::with_capacity(capacity);
        grown.extend(deque.iter().cloned());
        *deque = grown;
    }
    deque.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey32 {
        SecretKey32::from_bytes([b; 32])
    }

    #[test]
    fn evicts_oldest_by_insertion_order_across_chains() {
        let mut store = SkippedKeys::default();
        for n in 0..3 {
            store.push(&key(1), n, key(10 + n as u8), 4);
        }
        for n in 0..2 {
            store.push(&key(2), n, key(20 + n as u8), 4);
        }
        assert_eq!(store.len(), 4);
        assert!(store.get(&key(1), 0).is_none(), "oldest evicted");
        assert_eq!(store.get(&key(1), 1), Some(&key(11)));
        assert_eq!(store.get(&key(2), 1), Some(&key(21)));
        store.push(&key(2), 2, key(22), 4);
        store.push(&key(2), 3, key(23), 4);
        assert!(store.get(&key(1), 2).is_none());
        assert_eq!(store.header_keys(), vec![&key(2)]);
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn remove_drops_only_that_key_and_empty_runs() {
        let mut store = SkippedKeys::default();
        store.push(&key(1), 5, key(15), 10);
        store.push(&key(2), 7, key(27), 10);
        store.push(&key(2), 8, key(28), 10);
        store.remove(&key(2), 9);
        assert_eq!(store.len(), 3);
        store.remove(&key(1), 5);
        assert_eq!(store.len(), 2);
        assert_eq!(store.header_keys(), vec![&key(2)]);
        store.remove(&key(2), 7);
        assert_eq!(store.get(&key(2), 8), Some(&key(28)));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_new_chain_beyond_the_limit_evicts_the_oldest_chain_whole() {
        let mut store = SkippedKeys::default();
        for chain in 0..MAX_SKIPPED_CHAINS as u8 {
            store.push(&key(chain), 0, key(100), 100);
            store.push(&key(chain), 1, key(101), 100);
        }
        // A key of a chain already there evicts nothing.
        store.push(&key(0), 2, key(102), 100);
        assert_eq!(store.len(), 2 * MAX_SKIPPED_CHAINS + 1);
        store.push(&key(50), 0, key(100), 100);
        assert_eq!(store.header_keys().len(), MAX_SKIPPED_CHAINS);
        assert!(store.get(&key(0), 0).is_none() && store.get(&key(0), 2).is_none());
        assert_eq!(store.len(), 2 * MAX_SKIPPED_CHAINS - 1);
        assert_eq!(store.get(&key(1), 1), Some(&key(101)));
    }

    /// Growth goes through [`push_back_wiping`]: the buffers never grow by
    /// themselves, so their capacities follow its policy (16, then
    /// doubling, for keys; exactly the chain limit for chains), where
    /// `VecDeque`'s own growth gives 4, 8, 16... and 8 chains.
    #[test]
    fn buffers_grow_only_by_cloning() {
        let mut store = SkippedKeys::default();
        for n in 0..100 {
            store.push(&key(1), n, key(n as u8), 2000);
            let keys = &store.chains[0].keys;
            let expected = match keys.len() {
                1 => 1,
                len => len.next_power_of_two().max(MIN_KEYS_CAPACITY),
            };
            assert_eq!(keys.capacity(), expected, "after {} keys", keys.len());
        }
        for chain in 2..=MAX_SKIPPED_CHAINS as u8 {
            store.push(&key(chain), 0, key(0), 2000);
        }
        store.push(&key(50), 0, key(0), 2000);
        assert_eq!(store.chains.capacity(), MAX_SKIPPED_CHAINS);
        assert_eq!(store.header_keys().len(), MAX_SKIPPED_CHAINS);
        assert!(store.get(&key(2), 0).is_some());
    }

    #[test]
    fn zero_cap_stores_nothing() {
        let mut store = SkippedKeys::default();
        store.push(&key(1), 0, key(2), 0);
        assert_eq!(store.len(), 0);
    }
}
