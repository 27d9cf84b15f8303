//! Connection-level limits on the listener: a cap on open connections
//! (across the relay and per peer network), and a deadline by which an
//! HTTP connection must have become a WebSocket.
//!
//! Every accepted socket takes a [`Slot`] before any byte of it is read
//! (before the TLS handshake, when there is one) and gives it back when
//! the socket is dropped, whether it became a WebSocket or not. A peer over
//! its cap is disconnected at once.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::{inc, Metrics};

/// The key the relay's per-address limits use: an IPv4 address, or the
/// /64 network of an IPv6 address (one host commonly holds a whole /64, so
/// keying on the full address would give it 2^64 budgets). An IPv4 address
/// mapped into IPv6 counts as the IPv4 address.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = v6.to_bits() & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from_bits(prefix))
            }
        },
    }
}

/// The open connections, counted across the relay and per peer network.
#[derive(Debug)]
pub(crate) struct ConnSlots {
    max_total: usize,
    max_per_ip: usize,
    metrics: Arc<Metrics>,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl ConnSlots {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            metrics,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a slot for a connection from `ip`, or `None` when the relay
    /// or the peer's network is at its cap.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let key = ip_key(ip);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let per_ip = open.1.get(&key).copied().unwrap_or(0);
        if open.0 >= self.max_total || per_ip >= self.max_per_ip {
            drop(open);
            inc(&self.metrics.connections_refused_total);
            return None;
        }
        open.0 += 1;
        open.1.insert(key, per_ip + 1);
        Some(Slot {
            slots: Arc::clone(self),
            key,
        })
    }

    fn release(&self, key: IpAddr) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&key);
            }
        }
    }
}

/// One open connection's place under the caps; given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<ConnSlots>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.key);
    }
}

/// Lifts the upgrade deadline of one connection once it is a WebSocket,
/// or moves it for an attachment transfer.
#[derive(Debug, Clone)]
pub(crate) struct Upgraded(Arc<Timing>);

#[derive(Debug, Default)]
struct Timing {
    lifted: AtomicBool,
    /// A deadline set by [`Upgraded::retime`], not yet taken up by the
    /// socket.
    moved: Mutex<Option<Instant>>,
}

impl Upgraded {
    /// The connection is a WebSocket: its reads and writes are no longer
    /// timed here (the connection's own login deadline and keepalive take
    /// over).
    pub(crate) fn lift(&self) {
        self.0.lifted.store(true, Ordering::Release);
    }

    /// The connection carries an attachment transfer: its reads and
    /// writes fail once `until` passes instead of the upgrade deadline,
    /// whether or not the peer reads what is written.
    pub(crate) fn retime(&self, until: Instant) {
        *self
            .0
            .moved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until);
    }
}

/// A socket under the limits: it holds its [`Slot`], and its reads and
/// writes fail with `TimedOut` once the upgrade deadline (or the one
/// [`Upgraded::retime`] set) passes unless it became a WebSocket before.
/// The HTTP server then drops the connection: a peer that sends its
/// request head slowly, keeps a plain HTTP connection open, or stops
/// reading an answer, is disconnected.
#[derive(Debug)]
pub(crate) struct Guarded<Io> {
    io: Io,
    _slot: Slot,
    deadline: Pin<Box<Sleep>>,
    upgraded: Upgraded,
    expired: bool,
}

impl<Io> Guarded<Io> {
    pub(crate) fn new(io: Io, slot: Slot, upgrade_within: Duration) -> Self {
        Self {
            io,
            _slot: slot,
            deadline: Box::pin(tokio::time::sleep(upgrade_within)),
            upgraded: Upgraded(Arc::new(Timing::default())),
            expired: false,
        }
    }

    /// The handle that lifts the deadline.
    pub(crate) fn upgraded(&self) -> Upgraded {
        self.upgraded.clone()
    }
}

impl<Io> Guarded<Io> {
    /// Whether the deadline has passed (and the connection is not a
    /// WebSocket); registers `cx` to be woken when it passes.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.upgraded.0.lifted.load(Ordering::Acquire) {
            return false;
        }
        let moved = self
            .upgraded
            .0
            .moved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(until) = moved {
            self.deadline.as_mut().reset(until);
            self.expired = false;
        }
        if !self.expired && self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
        }
        self.expired
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no WebSocket upgrade or transfer within the deadline",
    )
}

impl<Io: AsyncRead + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.timed_out(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.timed_out(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A listener that accepts plain TCP connections under the limits, with
/// `TCP_NODELAY` set: answers and pushes are small frames, and Nagle's
/// algorithm would hold each one back until the peer acknowledged the
/// previous one. The connection's writer coalesces frames itself.
#[derive(Debug)]
pub(crate) struct PlainListener {
    listener: tokio::net::TcpListener,
    slots: Arc<ConnSlots>,
    upgrade_within: Duration,
}

impl PlainListener {
    pub(crate) fn new(
        listener: tokio::net::TcpListener,
        slots: Arc<ConnSlots>,
        upgrade_within: Duration,
    ) -> Self {
        Self {
            listener,
            slots,
            upgrade_within,
        }
    }
}

impl axum::serve::Listener for PlainListener {
    type Io = Guarded<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            let Some(slot) = self.slots.try_take(addr.ip()) else {
                tracing::debug!("connection refused: at the connection cap");
                continue;
            };
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY failed");
            }
            return (Guarded::new(tcp, slot, self.upgrade_within), addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_are_keyed_by_their_64() {
        assert_eq!(ip_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            ip_key(ip("2001:db8:1:2::1")),
            ip_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:2::1")), ip_key(ip("2001:db8:1:3::1")));
        assert_eq!(ip_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(ip_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn slots_cap_each_network_and_the_total_and_come_back_on_drop() {
        let slots = ConnSlots::new(3, 2, Arc::new(Metrics::default()));
        let a = slots.try_take(ip("2001:db8::1")).unwrap();
        let _b = slots.try_take(ip("2001:db8::2")).unwrap();
        // A third address of the same /64 is over the per-network cap.
        assert!(slots.try_take(ip("2001:db8::3")).is_none());
        let _c = slots.try_take(ip("2001:db8:0:1::1")).unwrap();
        // The relay is full.
        assert!(slots.try_take(ip("192.0.2.1")).is_none());
        drop(a);
        assert!(slots.try_take(ip("2001:db8::3")).is_some());
    }
}
