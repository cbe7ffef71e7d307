//! Connection slots: the global `max_connections` permits, the per-client-address cap
//! (`server.max_connections_per_ip`) and the "slots are short" signal that makes idle keep-alive
//! connections give their slot back. The accept loop (`server/accept.rs`) takes a [`Slot`] for every socket it
//! keeps; the connection loop (`request/conn.rs`) watches a [`Reclaim`] while it waits, idle, for the next
//! request. The counting itself is [`PerAddress`], plain bookkeeping without I/O or clocks.
//!
//! Clients are grouped like the rate limiter groups them (`limiter::client_key`: IPv4 address, IPv6
//! /64), and the address that counts is the TCP peer: `X-Forwarded-For` is not known before a request
//! arrives, and a connection slot is held by the peer. Peers in `trusted_proxies` are exempt, since every
//! client behind them shares their address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::limits::limiter::client_key;
use crate::token::format::IpNet;

/// Share of `max_connections` kept free: once fewer permits than this are left, connections that sit
/// idle between requests close so that new clients get in. 10 % leaves room for a burst of new
/// connections before anyone is disturbed.
pub const RECLAIM_LOW_WATER_PERCENT: usize = 10;
/// How long a connection must have waited, idle and with nothing buffered, before it is reclaimed under
/// slot pressure. Long enough that a client about to send its next request on a kept-alive connection
/// (or its first request on a fresh one) is rarely caught in the race; short enough that a new client
/// waits well under a second for a slot.
pub const RECLAIM_AFTER_IDLE: Duration = Duration::from_millis(300);

/// Live connections per client key. An entry exists only while its count is above zero, so the table
/// never holds more entries than there are open connections (itself bounded by `max_connections`).
#[derive(Debug)]
pub struct PerAddress {
    cap: usize,
    counts: HashMap<IpAddr, usize>,
}

impl PerAddress {
    /// A table admitting at most `cap` connections per key.
    pub fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap,
            counts: HashMap::new(),
        }
    }

    /// Count one more connection for `key`; `false` (and nothing counted) when `key` is at the cap.
    pub fn admit(&mut self, key: IpAddr) -> bool {
        let n = self.counts.entry(key).or_insert(0);
        if *n >= self.cap {
            return false;
        }
        *n += 1;
        true
    }

    /// Count one connection of `key` less; the entry goes away with its last connection.
    pub fn release(&mut self, key: IpAddr) {
        if let Some(n) = self.counts.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
    }

    /// Connections counted for `key`.
    pub fn count(&self, key: IpAddr) -> usize {
        self.counts.get(&key).copied().unwrap_or(0)
    }

    /// Keys with at least one connection.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Free permits below which idle connections are reclaimed: [`RECLAIM_LOW_WATER_PERCENT`] of
/// `max_connections`, at least one (so a relay with a handful of slots reclaims when all are taken).
pub fn low_water(max_connections: usize) -> usize {
    (max_connections * RECLAIM_LOW_WATER_PERCENT / 100).max(1)
}

/// The connection slots of one listener.
pub struct ConnLimits {
    permits: Arc<Semaphore>,
    per_address: Mutex<PerAddress>,
    exempt: Vec<IpNet>,
    low_water: usize,
    pressure: watch::Sender<bool>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerAddressCapReached;

impl ConnLimits {
    /// `max_connections` global slots, `per_ip` per client key; peers in `exempt` are not capped.
    pub fn new(max_connections: usize, per_ip: usize, exempt: Vec<IpNet>) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            permits: Arc::new(Semaphore::new(max_connections)),
            per_address: Mutex::new(PerAddress::new(per_ip)),
            exempt,
            low_water: low_water(max_connections),
            pressure: watch::channel(false).0,
        })
    }

    /// Wait for a global slot (taken before `accept`, so at most `max_connections` sockets are open).
    pub async fn permit(self: &Arc<Self>) -> OwnedSemaphorePermit {
        let p = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.update_pressure();
        p
    }

    /// Admit a connection from `peer` on `permit`, or refuse it (the permit is then given back).
    pub fn admit(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        peer: IpAddr,
    ) -> Result<Slot, PerAddressCapReached> {
        let key = if self.exempt.iter().any(|n| n.contains(peer)) {
            None
        } else {
            let key = client_key(peer);
            if !self.lock().admit(key) {
                drop(permit);
                self.update_pressure();
                return Err(PerAddressCapReached);
            }
            Some(key)
        };
        Ok(Slot {
            limits: self.clone(),
            key,
            permit: Some(permit),
        })
    }

    /// The signal idle connections watch.
    pub fn reclaim(&self) -> Reclaim {
        Reclaim::from_receiver(self.pressure.subscribe())
    }

    /// Connections counted for `peer`'s key (for tests and diagnostics).
    pub fn count(&self, peer: IpAddr) -> usize {
        self.lock().count(client_key(peer))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PerAddress> {
        // The table holds plain counts: a panic elsewhere while it was locked cannot leave it torn.
        self.per_address.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_pressure(&self) {
        let short = self.permits.available_permits() < self.low_water;
        self.pressure.send_if_modified(|p| {
            let changed = *p != short;
            *p = short;
            changed
        });
    }
}

/// One admitted connection: its global permit and its per-address count, both given back on drop.
pub struct Slot {
    limits: Arc<ConnLimits>,
    key: Option<IpAddr>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.limits.lock().release(key);
        }
        drop(self.permit.take());
        self.limits.update_pressure();
    }
}

/// Tells a connection waiting for its next request that slots are short and it should close.
#[derive(Clone)]
pub struct Reclaim(Option<watch::Receiver<bool>>);

impl Reclaim {
    /// A signal that never fires (listeners without slot accounting, tests).
    pub fn never() -> Reclaim {
        Reclaim(None)
    }

    /// The signal `rx` carries: true while slots are short.
    pub(crate) fn from_receiver(rx: watch::Receiver<bool>) -> Reclaim {
        Reclaim(Some(rx))
    }

    pub fn is_never(&self) -> bool {
        self.0.is_none()
    }

    /// Slots are short now.
    pub fn is_wanted(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// True when the signal changed (or its sender was dropped) since this was last called, without
    /// taking its lock; marks it seen.
    pub fn seen_change(&mut self) -> bool {
        let Some(rx) = &mut self.0 else {
            return false;
        };
        let moved = rx.has_changed().unwrap_or(true);
        if moved {
            rx.mark_unchanged();
        }
        moved
    }

    /// Resolves once slots are short; pends forever otherwise.
    pub async fn wanted(&mut self) {
        if let Some(rx) = &mut self.0 {
            if rx.wait_for(|short| *short).await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_caps_and_shrinks() {
        let mut t = PerAddress::new(2);
        let a = ip("10.0.0.1");
        let b = ip("10.0.0.2");
        assert!(t.admit(a) && t.admit(a));
        assert!(!t.admit(a), "third connection from one address");
        assert_eq!(t.count(a), 2);
        assert!(t.admit(b), "another address is not affected");
        assert_eq!(t.len(), 2);
        t.release(a);
        assert!(t.admit(a), "a released slot can be taken again");
        t.release(a);
        t.release(a);
        t.release(b);
        assert!(t.is_empty(), "entries go away with their last connection");
        // Releasing an unknown key is harmless (never underflows).
        t.release(b);
        assert!(t.is_empty());
    }

    #[test]
    fn low_water_is_a_share_with_a_floor() {
        assert_eq!(low_water(4096), 409);
        assert_eq!(low_water(100), 10);
        assert_eq!(low_water(8), 1);
        assert_eq!(low_water(1), 1);
    }

    #[tokio::test]
    async fn slots_count_per_key_exempt_proxies_and_signal_pressure() {
        let proxies = vec![crate::config::parse_net("10.9.0.0/16").unwrap()];
        let limits = ConnLimits::new(4, 2, proxies);
        let mut reclaim = limits.reclaim();
        let v6a = ip("2001:db8::1");
        let v6b = ip("2001:db8::2");
        let s1 = limits.admit(limits.permit().await, v6a).unwrap();
        let _s2 = limits.admit(limits.permit().await, v6b).unwrap();
        // Same /64: the third is refused and its permit is given back.
        assert_eq!(
            limits.admit(limits.permit().await, v6a).err(),
            Some(PerAddressCapReached)
        );
        assert_eq!(limits.count(v6a), 2);
        assert_eq!(limits.permits.available_permits(), 2);
        // A trusted proxy is not capped and not counted.
        let p1 = limits.admit(limits.permit().await, ip("10.9.1.1")).unwrap();
        assert_eq!(limits.count(ip("10.9.1.1")), 0);
        // One free permit is not below the low-water mark of 1; taking the last one is.
        assert!(!*limits.pressure.borrow());
        let p2 = limits.admit(limits.permit().await, ip("10.9.1.2")).unwrap();
        assert!(*limits.pressure.borrow());
        tokio::time::timeout(Duration::from_secs(5), reclaim.wanted())
            .await
            .expect("the signal fires under pressure");
        drop(p2);
        assert!(!*limits.pressure.borrow(), "a freed slot ends the pressure");
        drop((s1, p1));
        assert_eq!(limits.count(v6a), 1);
        assert_eq!(limits.permits.available_permits(), 3);
    }
}
