//! Memory for request bodies the relay must hold whole (a token policy reads them): one budget for all
//! of them together (`server.max_buffered_body_bytes`) and a share per client address
//! (`server.max_buffered_body_bytes_per_ip`, IPv6 grouped by /64 like `limiter::client_key`). Bytes are
//! taken before they are buffered (the whole Content-Length at once, chunked bodies as they arrive) and
//! given back when the request is done; when either bound would be passed the request is refused at
//! once with 503 and `Retry-After` (`Error::BodyBudgetExhausted`), never queued. Bodies that no policy
//! reads are streamed and take nothing from here.
//!
//! [`Usage`] is the bookkeeping, without locks or I/O; [`BodyBudget`] shares it between connections
//! and [`BodyShare`] gives a request's bytes back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use crate::error::Error;
use crate::limits::limiter::client_key;

/// Bytes held per client key and in total. A key has an entry only while it holds bytes, so the table
/// never has more entries than there are requests buffering a body.
#[derive(Debug, Default)]
pub struct Usage {
    total: u64,
    per_key: HashMap<IpAddr, u64>,
}

impl Usage {
    /// Take `n` more bytes for `key` if neither `max_total` nor `max_per_key` would be passed.
    pub fn take(&mut self, key: IpAddr, n: u64, max_total: u64, max_per_key: u64) -> bool {
        let held = self.per_key.get(&key).copied().unwrap_or(0);
        let fits = |used: u64, max: u64| used.checked_add(n).is_some_and(|u| u <= max);
        if n == 0 || !fits(self.total, max_total) || !fits(held, max_per_key) {
            return n == 0;
        }
        self.total += n;
        *self.per_key.entry(key).or_insert(0) += n;
        true
    }

    /// Give back `n` bytes `key` took.
    pub fn give(&mut self, key: IpAddr, n: u64) {
        if let Some(held) = self.per_key.get_mut(&key) {
            let n = n.min(*held);
            *held -= n;
            self.total -= n;
            if *held == 0 {
                self.per_key.remove(&key);
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Keys holding bytes.
    pub fn keys(&self) -> usize {
        self.per_key.len()
    }
}

/// The relay-wide budget for buffered request bodies.
#[derive(Debug)]
pub struct BodyBudget {
    max_total: u64,
    max_per_key: u64,
    usage: Mutex<Usage>,
}

impl BodyBudget {
    pub fn new(max_total: u64, max_per_key: u64) -> BodyBudget {
        BodyBudget {
            max_total,
            max_per_key,
            usage: Mutex::default(),
        }
    }

    /// An empty share for a request from `client`; grow it before buffering.
    pub fn share(&self, client: IpAddr) -> BodyShare<'_> {
        BodyShare {
            budget: self,
            key: client_key(client),
            held: 0,
        }
    }

    /// Bytes held by all buffered bodies now.
    pub fn in_use(&self) -> u64 {
        self.lock().total()
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        // Plain counters: a panic elsewhere while locked cannot leave them torn.
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bytes one request holds; given back on drop.
#[derive(Debug)]
pub struct BodyShare<'a> {
    budget: &'a BodyBudget,
    key: IpAddr,
    held: u64,
}

impl BodyShare<'_> {
    /// Hold `total` bytes in all (no-op when already holding that many).
    pub fn grow_to(&mut self, total: u64) -> Result<(), Error> {
        if total <= self.held {
            return Ok(());
        }
        let b = self.budget;
        if !b
            .lock()
            .take(self.key, total - self.held, b.max_total, b.max_per_key)
        {
            return Err(Error::BodyBudgetExhausted);
        }
        self.held = total;
        Ok(())
    }
}

impl Drop for BodyShare<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.lock().give(self.key, self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn usage_bounds_total_and_per_key_and_shrinks() {
        let mut u = Usage::default();
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        assert!(u.take(a, 60, 100, 60));
        assert!(!u.take(a, 1, 100, 60), "a's share is full");
        assert!(u.take(b, 40, 100, 60));
        assert!(!u.take(c, 1, 100, 60), "the total is full");
        assert!(u.take(c, 0, 100, 60), "nothing is always available");
        assert_eq!((u.total(), u.keys()), (100, 2));
        u.give(a, 60);
        assert!(u.take(c, 50, 100, 60));
        u.give(b, 40);
        u.give(c, 50);
        assert_eq!(
            (u.total(), u.keys()),
            (0, 0),
            "entries go with their last byte"
        );
        // Giving back more than held (or for an unknown key) never underflows.
        u.give(a, 5);
        assert_eq!((u.total(), u.keys()), (0, 0));
        assert!(
            !u.take(a, u64::MAX, 100, u64::MAX),
            "no overflow past the total"
        );
    }

    #[test]
    fn shares_grow_refuse_and_give_back_on_drop() {
        let budget = BodyBudget::new(100, 70);
        let v6 = ip("2001:db8::1");
        let mut s1 = budget.share(v6);
        s1.grow_to(50).unwrap();
        s1.grow_to(30).unwrap();
        assert_eq!(budget.in_use(), 50, "growing to less holds what is held");
        // Same /64: the per-address share is counted together.
        let mut s2 = budget.share(ip("2001:db8::2"));
        assert_eq!(s2.grow_to(30), Err(Error::BodyBudgetExhausted));
        let mut s3 = budget.share(ip("192.0.2.1"));
        s3.grow_to(50).unwrap();
        assert_eq!(
            budget.share(ip("192.0.2.9")).grow_to(1),
            Err(Error::BodyBudgetExhausted)
        );
        drop(s1);
        s2.grow_to(30).unwrap();
        drop((s2, s3));
        assert_eq!(budget.in_use(), 0);
    }
}
