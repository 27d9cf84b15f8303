//! Token-bucket rate limits: requests, and bytes, per connection, per
//! peer network (an IPv4 address or an IPv6 /64, [`ip_key`]) and per
//! account.

use std::borrow::Borrow;
use std::hash::Hash;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::listener::ip_key;

/// A rate: a sustained number of requests (or bytes) per second and a
/// burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests (or bytes) per second, sustained.
    pub per_second: f64,
    /// Requests (or bytes) allowed at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// A rate of `per_second` with a burst of `burst`.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn full(rate: Rate) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.take_n(rate, 1.0, now)
    }

    /// Takes `n` tokens, or says how long until they are there. `n` above
    /// the burst is taken as the burst (a full bucket lets it through).
    pub(crate) fn take_n(&mut self, rate: Rate, n: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        let n = n.min(f64::from(rate.burst));
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else if rate.per_second > 0.0 {
            Err(Duration::from_secs_f64(
                ((n - self.tokens) / rate.per_second).min(3600.0),
            ))
        } else {
            Err(Duration::from_secs(3600))
        }
    }

    /// Takes exactly `n` tokens, all or none. Unlike
    /// [`take_n`](Self::take_n), `n` above the burst is never taken:
    /// `Err(None)`, no wait would help; otherwise `Err(Some(wait))`.
    pub(crate) fn take_exact(
        &mut self,
        rate: Rate,
        n: u32,
        now: Instant,
    ) -> Result<(), Option<Duration>> {
        if n > rate.burst {
            return Err(None);
        }
        self.take_n(rate, f64::from(n), now).map_err(Some)
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate.per_second >= f64::from(rate.burst)
    }
}

/// Buckets per key (a peer network, an account), each shared by every
/// connection of its key.
#[derive(Debug)]
pub(crate) struct PerKey<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// Buckets per peer network.
pub(crate) type PerIp = PerKey<IpAddr>;

/// Who asks: a logged-in account, or the peer network of a connection
/// that is not logged in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Requester {
    /// A user id.
    Account(String),
    /// A peer network ([`ip_key`]).
    Network(IpAddr),
}

impl PerIp {
    /// Takes one token from the bucket of `ip`'s network.
    pub(crate) fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        self.take_n(ip, 1)
    }

    /// Takes `n` tokens (bytes) from the bucket of `ip`'s network.
    pub(crate) fn take_n(&self, ip: IpAddr, n: usize) -> Result<(), Duration> {
        self.take_key(ip_key(ip), n)
    }
}

impl<K: Hash + Eq> PerKey<K> {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens from the bucket of `key`.
    pub(crate) fn take_key(&self, key: K, n: usize) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key)
            .or_insert_with(|| Bucket::full(self.rate))
            .take_n(self.rate, n as f64, now)
    }

    /// Takes `n` tokens from the bucket of `key`, as [`take_key`]
    /// (Self::take_key) does, making an owned key only for a bucket that
    /// is not there yet: no allocation per request for a key such as a
    /// user id.
    pub(crate) fn take_borrowed<Q>(&self, key: &Q, n: usize) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bucket) = map.get_mut(key) {
            return bucket.take_n(self.rate, n as f64, now);
        }
        let mut bucket = Bucket::full(self.rate);
        let taken = bucket.take_n(self.rate, n as f64, now);
        map.insert(key.to_owned(), bucket);
        taken
    }

    /// Takes exactly `n` tokens from the bucket of `key`, all or none
    /// ([`Bucket::take_exact`]).
    pub(crate) fn take_exact(&self, key: K, n: u32) -> Result<(), Option<Duration>> {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key)
            .or_insert_with(|| Bucket::full(self.rate))
            .take_exact(self.rate, n, now)
    }

    /// Forgets buckets that have refilled (they would start full anyway).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, b| !b.is_full(self.rate, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let rate = Rate::new(10.0, 3);
        let mut b = Bucket::full(rate);
        let t0 = b.last;
        for _ in 0..3 {
            assert!(b.take(rate, t0).is_ok());
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(b.take(rate, t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(rate, t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn byte_buckets_take_sizes() {
        let rate = Rate::new(1000.0, 4000);
        let mut b = Bucket::full(rate);
        let t0 = b.last;
        assert!(b.take_n(rate, 3000.0, t0).is_ok());
        let wait = b.take_n(rate, 2000.0, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(b.take_n(rate, 2000.0, t0 + Duration::from_secs(1)).is_ok());
        // More than the burst passes on a full bucket only.
        let mut full = Bucket::full(rate);
        assert!(full.take_n(rate, 1e9, t0).is_ok());
        assert!(full.take_n(rate, 1.0, t0).is_err());
    }

    #[test]
    fn exact_takes_are_all_or_none_and_never_above_the_burst() {
        let rate = Rate::new(1.0, 3);
        let mut b = Bucket::full(rate);
        let t0 = b.last;
        assert_eq!(b.take_exact(rate, 4, t0), Err(None));
        assert!(b.take_exact(rate, 2, t0).is_ok());
        assert_eq!(b.take_exact(rate, 2, t0), Err(Some(Duration::from_secs(1))));
        // The refused take took nothing.
        assert!(b.take_exact(rate, 1, t0).is_ok());
        assert!(b.take_exact(rate, 1, t0).is_err());
    }

    #[test]
    fn borrowed_and_owned_keys_share_one_bucket() {
        let limits: PerKey<String> = PerKey::new(Rate::new(0.0, 1000));
        // A new key's bucket starts full, and a take above what is left
        // is refused without taking anything.
        assert!(limits.take_borrowed("alice", 600).is_ok());
        assert!(limits.take_key("alice".to_owned(), 600).is_err());
        assert!(limits.take_borrowed("alice", 400).is_ok());
        assert!(limits.take_borrowed("alice", 1).is_err());
        assert!(limits.take_key("alice".to_owned(), 1).is_err());
        // Another key has a bucket of its own.
        assert!(limits.take_borrowed("bob", 1000).is_ok());
        assert!(limits.take_borrowed("bob", 1).is_err());
        // The first take keeps the key's bucket, once.
        assert_eq!(limits.buckets.lock().unwrap().len(), 2);
    }

    #[test]
    fn per_ip_buckets_are_shared_by_an_ipv6_64() {
        let limits = PerIp::new(Rate::new(0.0, 2));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(limits.take(ip("2001:db8::1")).is_ok());
        assert!(limits.take(ip("2001:db8::2")).is_ok());
        // Another address of the same /64 finds the bucket empty.
        assert!(limits.take(ip("2001:db8::ffff:3")).is_err());
        // Another /64 has a bucket of its own.
        assert!(limits.take(ip("2001:db8:0:1::1")).is_ok());
        let bytes = PerIp::new(Rate::new(0.0, 1000));
        assert!(bytes.take_n(ip("192.0.2.1"), 600).is_ok());
        assert!(bytes.take_n(ip("192.0.2.1"), 600).is_err());
        assert!(bytes.take_n(ip("192.0.2.2"), 600).is_ok());
    }
}
