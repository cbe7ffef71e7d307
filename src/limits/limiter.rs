//! Request rate limits, as pure state machines over an injected monotonic `now`.
//!
//! This file owns three things: the token bucket (`TokenBucket`), the relay-wide and per-client-IP
//! limiter built from it (`RateLimiter`: the client's scope is charged for every routed request before
//! a token is even decoded, the relay-wide one only once a token is proven; see `request/admit.rs`), and
//! the per-token
//! limits read from an authenticated token's claims (`TokenLimits`: `rate` = at most n calls in any
//! window of s seconds, `conc` = at most c requests in flight). It never reads a clock, never does I/O
//! and holds no global state; the connection loop passes `Instant`s from `crate::clock` and turns a
//! rejection into a 429 with `Retry-After` (see `retry_after_secs`). Call counts (`max`) are the store's
//! job, not this file's.
//!
//! Memory is bounded everywhere: the per-IP table and the per-token table have a fixed number of
//! entries, an entry is only dropped when dropping it cannot loosen a limit, and what happens when a
//! table is full of entries that must be kept is spelled out at `RateLimiter` and `TokenLimits`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bucket levels count nano-tokens: one request costs this many units, and a bucket refilling at
/// `r` requests per second gains exactly `r` units per nanosecond, so refill is exact integer math with
/// no rounding drift however the elapsed time is sliced.
const UNITS_PER_TOKEN: u128 = 1_000_000_000;

/// Least time between two sweeps of a full table. A sweep walks the whole table under the lock; a
/// spray of fresh source addresses must not buy one walk per request. Until the next sweep, new
/// clients share the overflow bucket, which is safe (see `RateLimiter`), merely stricter.
const SWEEP_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Most time between sweeps of a full table, so that a lower bound that is far away (a one-call-per-
/// year token) or lost cannot postpone sweeping for longer than this.
const SWEEP_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Up to this many calls per window, a token's `rate` is enforced from an exact log of its accepted
/// calls. Above it, calls close in time share one log entry (see `CallWindow`), which bounds memory to
/// `WINDOW_GROUPS + 2` entries of 24 bytes per token and may hold a call up to `s / WINDOW_GROUPS`
/// longer than an exact log would, but never lets more than n calls into a window.
const WINDOW_GROUPS: u64 = 32;

/// Retry-After for a request refused because the per-token table is full of entries that must be
/// kept (recently used rate-limited tokens or requests in flight): the state of other tokens does not
/// say when a slot frees, and a short wait costs little because a full table is swept at most every
/// `SWEEP_MIN_INTERVAL`.
const TABLE_FULL_RETRY: Duration = Duration::from_secs(1);

/// Rounds a wait up to whole seconds for the `Retry-After` header; never less than 1, so that a client
/// told to retry does not retry in a tight loop, and never earlier than the limiter would allow.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

fn ceil_div(a: u128, b: u128) -> u128 {
    a / b + u128::from(a % b != 0)
}

/// `n` nanoseconds as a `Duration`, saturating instead of overflowing.
fn nanos(n: u128) -> Duration {
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits in u32.
    let sub = u32::try_from(n % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

/// `now + d`, or `None` if the platform's `Instant` cannot represent it (centuries ahead).
fn later(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation below happens after all checks and cannot panic halfway (no indexing, no
    // unchecked arithmetic), so the state behind a poisoned lock is still consistent. Recovering keeps
    // one panicking request from turning every later request into a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A token bucket: holds at most `burst` requests, refills at `rate_per_sec`, starts full.
///
/// `now` may go backwards (two requests read the clock, then race to the lock); an earlier `now`
/// refills nothing and is otherwise treated as the latest time seen, so time is never counted twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Units gained per nanosecond, equal to requests per second.
    rate: u128,
    /// `burst * UNITS_PER_TOKEN`.
    capacity: u128,
    level: u128,
    /// The time `level` was computed for.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` requests refilling at `rate_per_sec`.
    pub fn new(rate_per_sec: NonZeroU64, burst: NonZeroU64, now: Instant) -> Self {
        let capacity = u128::from(burst.get()) * UNITS_PER_TOKEN;
        TokenBucket {
            rate: u128::from(rate_per_sec.get()),
            capacity,
            level: capacity,
            last: now,
        }
    }

    /// Takes one request's worth if available. On refusal nothing is taken and the error is the exact
    /// time after `now` at which one request will be available (rounded up to the nanosecond).
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.ready(now)?;
        self.take();
        Ok(())
    }

    /// Whole requests available at `now`.
    pub fn available(&self, now: Instant) -> u64 {
        let mut b = self.clone();
        b.refill(now);
        u64::try_from(b.level / UNITS_PER_TOKEN).unwrap_or(u64::MAX)
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let gained = (now - self.last).as_nanos().saturating_mul(self.rate);
            self.level = self.level.saturating_add(gained).min(self.capacity);
            self.last = now;
        }
    }

    /// Refills up to `now` and reports whether one request is available, without taking it.
    fn ready(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.level >= UNITS_PER_TOKEN {
            Ok(())
        } else {
            // The wait is counted from `last`, which is `now` unless `now` went backwards.
            let wait = nanos(ceil_div(UNITS_PER_TOKEN - self.level, self.rate));
            Err(wait + self.last.saturating_duration_since(now))
        }
    }

    /// Takes one request. Only called right after `ready` succeeded under the same lock.
    fn take(&mut self) {
        self.level = self.level.saturating_sub(UNITS_PER_TOKEN);
    }

    /// Whether the bucket is back at `burst` by `now`: such a bucket behaves exactly like a bucket that
    /// was never created, so forgetting it cannot loosen the limit.
    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.level.saturating_add(elapsed.saturating_mul(self.rate)) >= self.capacity
    }

    /// When the bucket will be full if nothing more is taken; taking only moves this later.
    fn full_at(&self) -> Option<Instant> {
        later(
            self.last,
            nanos(ceil_div(self.capacity - self.level, self.rate)),
        )
    }
}

/// One scope's limit as configured: `requests_per_second == 0` disables the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeLimit {
    pub requests_per_second: u64,
    pub burst: u64,
}

impl ScopeLimit {
    /// A scope that lets everything through.
    pub const DISABLED: ScopeLimit = ScopeLimit {
        requests_per_second: 0,
        burst: 0,
    };

    fn params(self, scope: Scope) -> Result<Option<BucketParams>, LimiterConfigError> {
        let Some(rate) = NonZeroU64::new(self.requests_per_second) else {
            return Ok(None);
        };
        let burst = NonZeroU64::new(self.burst).ok_or(LimiterConfigError::ZeroBurst(scope))?;
        Ok(Some(BucketParams { rate, burst }))
    }
}

#[derive(Debug, Clone, Copy)]
struct BucketParams {
    rate: NonZeroU64,
    burst: NonZeroU64,
}

impl BucketParams {
    fn full(self, now: Instant) -> TokenBucket {
        TokenBucket::new(self.rate, self.burst, now)
    }

    /// Time for an empty bucket to gain one request.
    fn one_token(self) -> Duration {
        nanos(ceil_div(UNITS_PER_TOKEN, u128::from(self.rate.get())))
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The relay-wide bucket.
    Global,
    /// The client's address (IPv4 address or IPv6 /64).
    Ip,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Global => "global",
            Scope::Ip => "per-IP",
        })
    }
}

/// A request refused by `RateLimiter::check`: which scope, and the exact wait until that scope would
/// accept it (round it with `retry_after_secs` for `Retry-After`).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub scope: Scope,
    pub retry_after: Duration,
}

/// A rate-limit setting that cannot work; found when the limiter is built from `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterConfigError {
    /// `requests_per_second` is set but `burst` is 0, which would refuse every request.
    ZeroBurst(Scope),
    /// Per-IP limiting is on but `max_tracked_ips` is 0.
    ZeroTrackedIps,
}

impl fmt::Display for LimiterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimiterConfigError::ZeroBurst(scope) => write!(
                f,
                "{scope} rate limit: burst is 0, which would refuse every request; set burst to at \
                 least 1 (for example equal to requests_per_second), or set requests_per_second to 0 \
                 to disable this limit"
            ),
            LimiterConfigError::ZeroTrackedIps => f.write_str(
                "per-IP rate limit: max_tracked_ips is 0; set it to at least 1 (for example 100000), \
                 or set the per-IP requests_per_second to 0 to disable per-IP limiting",
            ),
        }
    }
}

impl std::error::Error for LimiterConfigError {}

/// When a full table may next be swept. Sweeping is skipped while it cannot free anything
/// (`useful_at`) and while the last sweep is recent (`not_before`), so its O(table) cost is paid at
/// most once per `SWEEP_MIN_INTERVAL`.
#[derive(Debug, Default)]
struct SweepSchedule {
    not_before: Option<Instant>,
    useful_at: Option<Instant>,
}

impl SweepSchedule {
    fn due(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t) && self.useful_at.is_none_or(|t| now >= t)
    }

    /// Records a sweep at `now`; `next_free` is the earliest time a kept entry may become removable.
    fn swept(&mut self, now: Instant, next_free: Option<Instant>) {
        self.not_before = later(now, SWEEP_MIN_INTERVAL);
        let cap = later(now, SWEEP_MAX_INTERVAL);
        self.useful_at = match (next_free, cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// An entry may become removable at `t`: make sure the schedule does not wait past it.
    fn lower(&mut self, t: Instant) {
        self.useful_at = Some(self.useful_at.map_or(t, |u| u.min(t)));
    }
}

/// The key a client is limited under: IPv4 addresses as they are (including IPv4 clients that reach a
/// dual-stack socket as `::ffff:a.b.c.d`), IPv6 addresses by their /64, because one host or home
/// network usually holds a whole /64 and could otherwise rotate addresses to escape the limit.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// Where a request's per-IP charge will go, decided before any scope is charged.
enum IpCharge {
    Existing,
    Insert(TokenBucket),
    Overflow,
}

#[derive(Debug)]
struct IpTable {
    params: BucketParams,
    max: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
    /// Shared by every client that arrives while the table is full; created on first use.
    overflow: Option<TokenBucket>,
    sweep: SweepSchedule,
}

impl IpTable {
    /// Finds or plans the bucket for `key` and checks it has a request available, charging nothing.
    fn check(&mut self, key: IpAddr, now: Instant) -> Result<IpCharge, Duration> {
        if let Some(b) = self.buckets.get_mut(&key) {
            return b.ready(now).map(|()| IpCharge::Existing);
        }
        if self.buckets.len() >= self.max && self.sweep.due(now) {
            self.sweep_full(now);
        }
        let params = self.params;
        let overflow = self.overflow.get_or_insert_with(|| params.full(now));
        if self.buckets.len() < self.max {
            // A new entry starts no fuller than the overflow bucket. A client served by the overflow
            // bucket (because the table was full) drained it as much as its own bucket would have been
            // drained, so the overflow level is never above what the client's own bucket would hold;
            // starting from it means moving from overflow to an entry never hands out a fresh burst.
            let mut b = params.full(now);
            overflow.refill(now);
            b.level = b.level.min(overflow.level);
            b.ready(now).map(|()| IpCharge::Insert(b))
        } else {
            overflow.ready(now).map(|()| IpCharge::Overflow)
        }
    }

    fn charge(&mut self, key: IpAddr, plan: IpCharge) {
        match plan {
            IpCharge::Existing => {
                if let Some(b) = self.buckets.get_mut(&key) {
                    b.take();
                }
            }
            IpCharge::Insert(mut b) => {
                b.take();
                self.buckets.insert(key, b);
            }
            IpCharge::Overflow => {
                if let Some(b) = self.overflow.as_mut() {
                    b.take();
                }
            }
        }
    }

    /// Drops every bucket that is full at `now` (equivalent to no entry).
    fn sweep_full(&mut self, now: Instant) {
        let mut next_free: Option<Instant> = None;
        self.buckets.retain(|_, b| {
            if b.is_full_at(now) {
                return false;
            }
            if let Some(t) = b.full_at() {
                next_free = Some(next_free.map_or(t, |n| n.min(t)));
            }
            true
        });
        // Entries inserted after this sweep are charged one request on insertion, so none of them is
        // full before one refill interval has passed.
        if let Some(t) = later(now, self.params.one_token()) {
            next_free = Some(next_free.map_or(t, |n| n.min(t)));
        }
        self.sweep.swept(now, next_free);
    }
}

#[derive(Debug)]
struct LimiterState {
    global_params: Option<BucketParams>,
    /// Created on the first check, full, which is the same as having been full since startup.
    global: Option<TokenBucket>,
    ip: Option<IpTable>,
}

/// The relay-wide and per-client-IP request limits. The relay charges them separately: `check_ip` for
/// every routed request, `check_global` only for calls whose token is proven authentic.
///
/// The per-IP table holds at most `max_tracked_ips` buckets. When a new address arrives and the table
/// is full, buckets that have refilled to `burst` are dropped first (a full bucket is the same as no
/// bucket). If none can be dropped, the new address shares one overflow bucket, with the per-IP limits,
/// with every other address that found the table full. This can neither grow memory nor loosen a limit:
/// addresses in overflow get at most one client's allowance between them, and an address that later
/// gets its own bucket starts no fuller than the overflow bucket. The cost is that during a spray of
/// addresses, new honest clients may be refused until buckets refill; existing entries are unaffected.
///
/// Thread-safe: one mutex guards both scopes, so a check and its charge are atomic.
pub struct RateLimiter {
    state: Mutex<LimiterState>,
}

impl RateLimiter {
    /// A limiter with the given scopes; `requests_per_second == 0` disables a scope.
    ///
    /// # Errors
    /// `ZeroBurst` if a scope has a rate but no burst; `ZeroTrackedIps` if per-IP limiting is on and
    /// `max_tracked_ips` is 0.
    pub fn new(
        global: ScopeLimit,
        per_ip: ScopeLimit,
        max_tracked_ips: usize,
    ) -> Result<Self, LimiterConfigError> {
        let global_params = global.params(Scope::Global)?;
        let ip = match per_ip.params(Scope::Ip)? {
            None => None,
            Some(_) if max_tracked_ips == 0 => return Err(LimiterConfigError::ZeroTrackedIps),
            Some(params) => Some(IpTable {
                params,
                max: max_tracked_ips,
                buckets: HashMap::new(),
                overflow: None,
                sweep: SweepSchedule::default(),
            }),
        };
        Ok(RateLimiter {
            state: Mutex::new(LimiterState {
                global_params,
                global: None,
                ip,
            }),
        })
    }

    /// The limiter described by `config.json`'s `rate_limit` section.
    ///
    /// # Errors
    /// As `new`.
    pub fn from_config(cfg: &crate::config::RateLimitConfig) -> Result<Self, LimiterConfigError> {
        RateLimiter::new(
            ScopeLimit {
                requests_per_second: cfg.requests_per_second,
                burst: cfg.burst,
            },
            ScopeLimit {
                requests_per_second: cfg.ip_limit.requests_per_second,
                burst: cfg.ip_limit.burst,
            },
            cfg.ip_limit.max_tracked_ips,
        )
    }

    /// Both scopes as one atomic step: the client's own limit first, then the global one, charged to
    /// both or to neither. The relay no longer admits this way (it charges the scopes at different
    /// points, see `check_ip`); the table and bucket properties below are proven through it.
    ///
    /// # Errors
    /// A `Rejection` naming the refusing scope and the wait until it would accept.
    #[cfg(test)]
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Rejection> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let key = client_key(ip);
        let ip_plan = match st.ip.as_mut() {
            Some(table) => Some(table.check(key, now).map_err(|retry_after| Rejection {
                scope: Scope::Ip,
                retry_after,
            })?),
            None => None,
        };
        if let Some(params) = st.global_params {
            st.global
                .get_or_insert_with(|| params.full(now))
                .ready(now)
                .map_err(|retry_after| Rejection {
                    scope: Scope::Global,
                    retry_after,
                })?;
        }
        // Both scopes accept: charge both.
        if let (Some(table), Some(plan)) = (st.ip.as_mut(), ip_plan) {
            table.charge(key, plan);
        }
        if let Some(g) = st.global.as_mut() {
            g.take();
        }
        Ok(())
    }

    /// Admits or refuses one request from `ip` by the client's own limit alone, charging it when
    /// admitted. The relay charges this for every routed request, before any token work, so junk only
    /// ever spends its sender's allowance.
    ///
    /// # Errors
    /// The exact wait until the client's bucket would accept.
    pub fn check_ip(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut st = lock(&self.state);
        let key = client_key(ip);
        if let Some(table) = st.ip.as_mut() {
            let plan = table.check(key, now)?;
            table.charge(key, plan);
        }
        Ok(())
    }

    /// Admits or refuses one request by the relay-wide limit alone, charging it when admitted. The
    /// relay charges this only for requests whose token is proven authentic.
    ///
    /// # Errors
    /// The exact wait until the global bucket would accept.
    pub fn check_global(&self, now: Instant) -> Result<(), Duration> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        if let Some(params) = st.global_params {
            st.global
                .get_or_insert_with(|| params.full(now))
                .try_take(now)?;
        }
        Ok(())
    }

    /// How many client addresses (or /64s) have their own bucket; never above `max_tracked_ips`.
    pub fn tracked_ips(&self) -> usize {
        lock(&self.state).ip.as_ref().map_or(0, |t| t.buckets.len())
    }
}

impl fmt::Debug for RateLimiter {
    /// Counts only: the table's addresses are client data and there may be many of them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("tracked_ips", &self.tracked_ips())
            .finish_non_exhaustive()
    }
}

/// Why a token's request was refused by `TokenLimits::try_acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// The token's `rate` is used up; a call will be accepted after this wait (if nothing else
    /// changes). Also returned, with a short wait, when the per-token table is full (see
    /// `TokenLimits`).
    RateLimited(Duration),
    /// The token already has `conc` requests in flight.
    TooManyConcurrent,
}

/// The log of a token's accepted calls that may still fall in a window: groups of calls, oldest first,
/// each with the time of its first and last call in nanoseconds since `epoch`.
///
/// With `n <= WINDOW_GROUPS` every call is its own group, so the log is exact. With more, a call joins
/// the newest group if that group started less than `s / WINDOW_GROUPS` earlier; a group then counts
/// as in a window until its *last* call leaves it, which can delay the next call by at most that
/// width compared with an exact log, but never admits too many. Group starts are at least that width apart, so at most
/// `WINDOW_GROUPS + 2` groups can be in the last `s` seconds.
#[derive(Debug)]
struct CallWindow {
    epoch: Instant,
    /// The window length of the latest call, used to know when the entry may be forgotten.
    span: Duration,
    groups: VecDeque<CallGroup>,
}

#[derive(Debug, Clone, Copy)]
struct CallGroup {
    first: u64,
    last: u64,
    count: u64,
}

impl CallWindow {
    fn new(epoch: Instant, span: Duration) -> Self {
        CallWindow {
            epoch,
            span,
            groups: VecDeque::new(),
        }
    }

    /// `now` as nanoseconds since `epoch`, never before the newest recorded call: evaluating a late
    /// arrival at the newest time keeps the recorded calls in order, so the n-in-any-window property
    /// holds for the recorded times.
    fn ticks(&self, now: Instant) -> u64 {
        let t =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.groups.back().map_or(t, |g| g.last.max(t))
    }

    /// Forgets groups whose last call is `s` or more before `t`: no window containing `t` or a later
    /// time can contain them.
    fn prune(&mut self, t: u64, s: u64) {
        while self
            .groups
            .front()
            .is_some_and(|g| g.last.saturating_add(s) <= t)
        {
            self.groups.pop_front();
        }
    }

    /// Whether a call at `now` keeps every window of `s` nanoseconds at `n` calls or fewer; on refusal,
    /// the wait until it would.
    fn check(&mut self, now: Instant, n: u64, s: u64) -> Result<(), Duration> {
        let t = self.ticks(now);
        self.prune(t, s);
        let live: u64 = self.groups.iter().map(|g| g.count).sum();
        if live < n {
            return Ok(());
        }
        // Enough of the oldest calls must leave the window to bring the count down to n - 1.
        let mut must_leave = live - (n - 1);
        for g in &self.groups {
            if g.count >= must_leave {
                let leaves_at = g.last.saturating_add(s);
                let behind = now.saturating_duration_since(self.epoch).as_nanos();
                // `t` may be ahead of `now` (a late arrival), so the wait is measured from `now`.
                return Err(nanos(u128::from(leaves_at).saturating_sub(behind)));
            }
            must_leave -= g.count;
        }
        // Unreachable: the groups hold `live >= must_leave` calls in total.
        Err(nanos(u128::from(s)))
    }

    fn record(&mut self, now: Instant, n: u64, s: u64) {
        let t = self.ticks(now);
        let width = s / WINDOW_GROUPS;
        match self.groups.back_mut() {
            Some(g) if n > WINDOW_GROUPS && t.saturating_sub(g.first) < width => {
                g.last = t;
                g.count += 1;
            }
            _ => self.groups.push_back(CallGroup {
                first: t,
                last: t,
                count: 1,
            }),
        }
    }

    /// When every recorded call has left the window.
    fn expires_at(&self) -> Option<Instant> {
        let last = self.groups.back().map_or(0, |g| g.last);
        later(
            self.epoch,
            Duration::from_nanos(last).saturating_add(self.span),
        )
    }
}

#[derive(Debug, Default)]
struct TokenEntry {
    in_flight: u32,
    window: Option<CallWindow>,
}

impl TokenEntry {
    fn removable_at(&self, now: Instant) -> bool {
        self.in_flight == 0
            && self
                .window
                .as_ref()
                .is_none_or(|w| w.expires_at().is_some_and(|e| e <= now))
    }
}

#[derive(Debug)]
struct TokenTable {
    max_entries: usize,
    entries: HashMap<String, TokenEntry>,
    sweep: SweepSchedule,
}

impl TokenTable {
    fn sweep(&mut self, now: Instant) {
        let mut next_free: Option<Instant> = None;
        self.entries.retain(|_, e| {
            if e.removable_at(now) {
                return false;
            }
            // Entries with requests in flight lower the schedule when their last guard drops.
            if e.in_flight == 0 {
                if let Some(t) = e.window.as_ref().and_then(CallWindow::expires_at) {
                    next_free = Some(next_free.map_or(t, |n| n.min(t)));
                }
            }
            true
        });
        self.sweep.swept(now, next_free);
    }

    fn release(&mut self, key: &str) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        if e.in_flight > 0 {
            return;
        }
        match e.window.as_ref().map(CallWindow::expires_at) {
            // Nothing but the in-flight count was kept: forget the token right away.
            None => {
                self.entries.remove(key);
            }
            Some(Some(t)) => self.sweep.lower(t),
            Some(None) => {}
        }
    }
}

/// Limits carried by authenticated tokens: `rate` (at most n calls in any window of s seconds) and
/// `conc` (at most c requests in flight), keyed by token id.
///
/// Key by something unique across tenants (for example `"{tid}/{jti}"`): a token id is chosen by its
/// minter, so one tenant could otherwise pick another tenant's id and share its limits.
///
/// The table holds at most `max_entries` tokens. A token is remembered while it has requests in flight
/// or calls within its last window, and forgotten as soon as neither holds (then it is exactly as if it
/// had never been seen). Tokens with neither `rate` nor `conc` are never stored. If a new token arrives
/// while the table is full of tokens that must be remembered, it is refused with
/// `RateLimited(1 s)`: admitting it untracked would let it exceed its own limits. Size the table above
/// the number of tokens expected to be active within their windows. Clones share one table.
#[derive(Clone)]
pub struct TokenLimits {
    table: Arc<Mutex<TokenTable>>,
}

/// Holds one in-flight slot of a token's `conc` limit; dropping it frees the slot. Tokens without
/// `conc` get a guard that does nothing.
#[must_use = "the request counts as in flight only while the guard is alive"]
pub struct ConcurrencyGuard {
    release: Option<(Arc<Mutex<TokenTable>>, String)>,
}

impl fmt::Debug for TokenLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenLimits")
            .field("tracked_tokens", &self.tracked_tokens())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ConcurrencyGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyGuard")
            .field("token", &self.release.as_ref().map(|(_, k)| k))
            .finish()
    }
}

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        if let Some((table, key)) = self.release.take() {
            lock(&table).release(&key);
        }
    }
}

impl TokenLimits {
    /// An empty table that remembers at most `max_entries` tokens (at least 1).
    pub fn new(max_entries: usize) -> Self {
        TokenLimits {
            table: Arc::new(Mutex::new(TokenTable {
                max_entries: max_entries.max(1),
                entries: HashMap::new(),
                sweep: SweepSchedule::default(),
            })),
        }
    }

    /// Admits one request of token `jti` at `now` under its `rate` `(n, s)` and `conc` limits.
    /// `jti` is not read when both are `None`, so callers may pass an empty key then.
    ///
    /// A request is counted against both limits or neither: a request refused for concurrency does not
    /// use up the rate, and one refused for rate does not hold a slot. When both limits refuse, the
    /// rate wins, because its wait is the one worth telling the client. The returned guard must be
    /// kept until the response has been fully relayed.
    ///
    /// Values outside the token format's ranges are taken literally rather than repaired: `n == 0`
    /// refuses every call, `s == 0` limits nothing, `conc == Some(0)` refuses every request.
    ///
    /// # Errors
    /// `RateLimited(wait)` when the call would put more than n calls in some window of s seconds, or
    /// the table is full; `TooManyConcurrent` when `conc` requests are already in flight.
    pub fn try_acquire(
        &self,
        jti: &str,
        rate: Option<(u64, u64)>,
        conc: Option<u32>,
        now: Instant,
    ) -> Result<ConcurrencyGuard, TokenRejection> {
        // (n, s) with s in nanoseconds; `s == 0` is no limit at all.
        let rate = rate
            .filter(|&(_, s)| s > 0)
            .map(|(n, s)| (n, s.saturating_mul(1_000_000_000)));
        if let Some((0, s)) = rate {
            return Err(TokenRejection::RateLimited(nanos(u128::from(s))));
        }
        if conc == Some(0) {
            return Err(TokenRejection::TooManyConcurrent);
        }
        if rate.is_none() && conc.is_none() {
            return Ok(ConcurrencyGuard { release: None });
        }

        let mut table = lock(&self.table);
        let table = &mut *table;
        if !table.entries.contains_key(jti) {
            if table.entries.len() >= table.max_entries && table.sweep.due(now) {
                table.sweep(now);
            }
            if table.entries.len() >= table.max_entries {
                return Err(TokenRejection::RateLimited(TABLE_FULL_RETRY));
            }
        }

        // Check both limits before touching anything, on a fresh entry if the token is new.
        let mut fresh = TokenEntry::default();
        let existing = table.entries.get_mut(jti);
        let is_new = existing.is_none();
        let entry = existing.unwrap_or(&mut fresh);
        if let Some((n, s)) = rate {
            let window = entry
                .window
                .get_or_insert_with(|| CallWindow::new(now, Duration::ZERO));
            window
                .check(now, n, s)
                .map_err(TokenRejection::RateLimited)?;
        }
        if let Some(c) = conc {
            if entry.in_flight >= c {
                return Err(TokenRejection::TooManyConcurrent);
            }
        }

        // Both accept: record the call and take the slot.
        let mut expiry = None;
        if let (Some((n, s)), Some(window)) = (rate, entry.window.as_mut()) {
            window.record(now, n, s);
            window.span = Duration::from_nanos(s);
            expiry = window.expires_at();
        }
        if conc.is_some() {
            entry.in_flight += 1;
        }
        if is_new {
            table.entries.insert(jti.to_owned(), fresh);
        }
        if let Some(t) = expiry {
            table.sweep.lower(t);
        }
        let release = conc.map(|_| (Arc::clone(&self.table), jti.to_owned()));
        Ok(ConcurrencyGuard { release })
    }

    /// How many tokens are remembered; never above `max_entries`.
    pub fn tracked_tokens(&self) -> usize {
        lock(&self.table).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Barrier;

    fn nz(v: u64) -> NonZeroU64 {
        NonZeroU64::new(v).expect("test values are non-zero")
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn ns(v: u64) -> Duration {
        Duration::from_nanos(v)
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// splitmix64: a deterministic generator for the property tests, so a failure replays exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    // ---- retry_after_secs ----

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ns(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1) + ns(1)), 2);
        assert_eq!(retry_after_secs(ms(2500)), 3);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    // ---- TokenBucket ----

    #[test]
    fn bucket_burst_then_exact_refill_timing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(nz(10), nz(5), t0);
        for i in 0..5 {
            assert_eq!(b.try_take(t0), Ok(()), "request {i} of the burst");
        }
        // 10 per second: one request every 100 ms, counted from the moment the bucket ran dry.
        assert_eq!(b.try_take(t0), Err(ms(100)));
        assert_eq!(b.try_take(t0 + ms(100) - ns(1)), Err(ns(1)));
        assert_eq!(b.try_take(t0 + ms(100)), Ok(()));
        assert_eq!(b.try_take(t0 + ms(100)), Err(ms(100)));
        assert_eq!(b.try_take(t0 + ms(150)), Err(ms(50)));
        assert_eq!(b.try_take(t0 + ms(200)), Ok(()));
    }

    #[test]
    fn bucket_with_uneven_rate_does_not_drift() {
        // 3 per second is 333_333_333.33 ns per request: rounding each interval would drift by a
        // nanosecond per request; nano-token accounting lands exactly on the second.
        let t0 = Instant::now();
        // Burst 2, so that arriving late banks the surplus instead of losing it to the cap.
        let mut b = TokenBucket::new(nz(3), nz(2), t0);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0), Err(ns(333_333_334)));
        assert!(b.try_take(t0 + ns(333_333_333)).is_err());
        assert_eq!(b.try_take(t0 + ns(333_333_334)), Ok(()));
        // The bucket kept the 0.67 ns surplus: the next request is due at 666_666_667 ns.
        assert_eq!(b.try_take(t0 + ns(666_666_666)), Err(ns(1)));
        assert_eq!(b.try_take(t0 + ns(666_666_667)), Ok(()));
        assert!(b.try_take(t0 + ns(999_999_999)).is_err());
        assert_eq!(b.try_take(t0 + Duration::from_secs(1)), Ok(()));
        // With burst 1 the same lateness is lost to the cap: the next request is due a full interval
        // after the late one.
        let mut b = TokenBucket::new(nz(3), nz(1), t0);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0 + ns(333_333_334)), Ok(()));
        assert_eq!(b.try_take(t0 + ns(666_666_667)), Err(ns(1)));
        // Over a long run of frequent polls, the grants are exactly burst + rate * elapsed, rounded
        // down: no nanosecond is lost or counted twice between polls.
        let (rate, burst, step) = (3u128, 5u128, 7_777_777u128);
        let mut b = TokenBucket::new(nz(3), nz(5), t0);
        let mut granted = 0u128;
        let mut t = 0u128;
        while t <= 10 * 1_000_000_000 {
            if b.try_take(t0 + nanos(t)).is_ok() {
                granted += 1;
            }
            t += step;
        }
        let last_poll = t - step;
        assert_eq!(
            granted,
            (burst * 1_000_000_000 + rate * last_poll) / 1_000_000_000
        );
    }

    #[test]
    fn bucket_refill_is_capped_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(nz(1000), nz(3), t0);
        for _ in 0..3 {
            b.try_take(t0).unwrap();
        }
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.available(later), 3);
        for _ in 0..3 {
            assert!(b.try_take(later).is_ok());
        }
        assert!(
            b.try_take(later).is_err(),
            "an hour idle must not bank more than burst"
        );
    }

    #[test]
    fn bucket_ignores_time_going_backwards() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = TokenBucket::new(nz(1), nz(1), t0);
        assert!(b.try_take(t1).is_ok());
        // An earlier `now` neither refills nor panics, and the wait accounts for the gap.
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(2)));
        assert_eq!(b.try_take(t1), Err(Duration::from_secs(1)));
        assert!(b.try_take(t1 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn bucket_extreme_parameters_do_not_overflow() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(nz(u64::MAX), nz(u64::MAX), t0);
        assert!(b.try_take(t0).is_ok());
        assert_eq!(b.available(t0 + Duration::from_secs(1_000_000)), u64::MAX);
        let mut slow = TokenBucket::new(nz(1), nz(u64::MAX), t0);
        assert!(slow.try_take(t0).is_ok());
        assert!(slow.full_at().is_some());
        let mut one = TokenBucket::new(nz(1), nz(1), t0);
        one.try_take(t0).unwrap();
        assert_eq!(one.try_take(t0), Err(Duration::from_secs(1)));
    }

    /// Property: whatever the sequence of waits and takes, the takes granted within any span of time
    /// never exceed burst + rate * span; and every refusal's wait is exact (one nanosecond earlier is
    /// still refused, at the wait it is granted).
    #[test]
    fn bucket_property_never_more_than_burst_plus_rate_times_elapsed() {
        let t0 = Instant::now();
        for seed in 0..200u64 {
            let mut rng = Rng(seed);
            let rate = 1 + rng.below(50);
            let burst = 1 + rng.below(20);
            let mut b = TokenBucket::new(nz(rate), nz(burst), t0);
            let mut now = Duration::ZERO;
            let mut granted: Vec<u128> = Vec::new();
            for _ in 0..300 {
                // Mostly short steps (bursts), sometimes long idle periods.
                now += match rng.below(10) {
                    0 => ns(rng.below(5_000_000_000)),
                    1..=3 => Duration::ZERO,
                    _ => ns(rng.below(200_000_000)),
                };
                let at = t0 + now;
                match b.try_take(at) {
                    Ok(()) => granted.push(now.as_nanos()),
                    Err(wait) => {
                        assert!(wait > Duration::ZERO);
                        let mut early = b.clone();
                        assert!(
                            early.try_take(at + wait - ns(1)).is_err(),
                            "seed {seed}: wait too long"
                        );
                        let mut on_time = b.clone();
                        assert!(
                            on_time.try_take(at + wait).is_ok(),
                            "seed {seed}: wait too short"
                        );
                    }
                }
            }
            for i in 0..granted.len() {
                for j in i..granted.len() {
                    let count = (j - i + 1) as u128;
                    let span = granted[j] - granted[i];
                    // count <= burst + rate * span / 1e9, in integers.
                    assert!(
                        count * 1_000_000_000
                            <= u128::from(burst) * 1_000_000_000 + u128::from(rate) * span,
                        "seed {seed}: {count} takes in {span} ns with rate {rate} burst {burst}"
                    );
                }
            }
        }
    }

    // ---- RateLimiter ----

    fn limiter(global: (u64, u64), ip: (u64, u64), cap: usize) -> RateLimiter {
        RateLimiter::new(
            ScopeLimit {
                requests_per_second: global.0,
                burst: global.1,
            },
            ScopeLimit {
                requests_per_second: ip.0,
                burst: ip.1,
            },
            cap,
        )
        .expect("valid test limits")
    }

    #[test]
    fn config_errors_are_reported() {
        let on = ScopeLimit {
            requests_per_second: 5,
            burst: 0,
        };
        let ok = ScopeLimit {
            requests_per_second: 5,
            burst: 5,
        };
        assert_eq!(
            RateLimiter::new(on, ok, 10).unwrap_err(),
            LimiterConfigError::ZeroBurst(Scope::Global)
        );
        assert_eq!(
            RateLimiter::new(ok, on, 10).unwrap_err(),
            LimiterConfigError::ZeroBurst(Scope::Ip)
        );
        assert_eq!(
            RateLimiter::new(ok, ok, 0).unwrap_err(),
            LimiterConfigError::ZeroTrackedIps
        );
        // A disabled per-IP scope needs no table size.
        assert!(RateLimiter::new(ok, ScopeLimit::DISABLED, 0).is_ok());
        let msg = LimiterConfigError::ZeroBurst(Scope::Ip).to_string();
        assert!(
            msg.contains("per-IP") && msg.contains("at least 1"),
            "{msg}"
        );
    }

    #[test]
    fn from_config_maps_the_fields() {
        use crate::config::{IpLimitConfig, RateLimitConfig};
        let cfg = RateLimitConfig {
            requests_per_second: 1,
            burst: 3,
            ip_limit: IpLimitConfig {
                requests_per_second: 1,
                burst: 2,
                max_tracked_ips: 7,
            },
            shared: false,
        };
        let l = RateLimiter::from_config(&cfg).unwrap();
        let t0 = Instant::now();
        assert!(l.check(v4(192, 0, 2, 1), t0).is_ok());
        assert!(l.check(v4(192, 0, 2, 1), t0).is_ok());
        assert_eq!(l.check(v4(192, 0, 2, 1), t0).unwrap_err().scope, Scope::Ip);
        assert!(l.check(v4(192, 0, 2, 2), t0).is_ok());
        assert_eq!(
            l.check(v4(192, 0, 2, 3), t0).unwrap_err().scope,
            Scope::Global
        );
    }

    #[test]
    fn per_ip_burst_then_refill() {
        let l = limiter((0, 0), (2, 3), 100);
        let t0 = Instant::now();
        let a = v4(198, 51, 100, 7);
        for _ in 0..3 {
            assert!(l.check(a, t0).is_ok());
        }
        assert_eq!(
            l.check(a, t0),
            Err(Rejection {
                scope: Scope::Ip,
                retry_after: ms(500)
            })
        );
        // Another client is unaffected.
        assert!(l.check(v4(198, 51, 100, 8), t0).is_ok());
        assert!(l.check(a, t0 + ms(499)).is_err());
        assert!(l.check(a, t0 + ms(500)).is_ok());
    }

    #[test]
    fn global_scope_limits_all_clients_together() {
        let l = limiter((1, 2), (0, 0), 100);
        let t0 = Instant::now();
        assert!(l.check(v4(192, 0, 2, 1), t0).is_ok());
        assert!(l.check(v4(192, 0, 2, 2), t0).is_ok());
        assert_eq!(
            l.check(v4(192, 0, 2, 3), t0),
            Err(Rejection {
                scope: Scope::Global,
                retry_after: Duration::from_secs(1)
            })
        );
        assert_eq!(l.tracked_ips(), 0, "a disabled per-IP scope keeps no table");
    }

    #[test]
    fn disabled_scopes_let_everything_through() {
        let l = limiter((0, 0), (0, 0), 1);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            assert!(l.check(IpAddr::V4(Ipv4Addr::from(i % 3)), t0).is_ok());
        }
        // Only per-IP on: the global scope never refuses.
        let l = limiter((0, 5), (1, 1), 10_000);
        for i in 0..1000u32 {
            assert!(l.check(IpAddr::V4(Ipv4Addr::from(i)), t0).is_ok());
        }
    }

    #[test]
    fn refused_by_global_does_not_charge_the_ip() {
        // Global refills every millisecond; per-IP has 2 requests and refills once a second.
        let l = limiter((1000, 1), (1, 2), 100);
        let t0 = Instant::now();
        let a = v4(203, 0, 113, 1);
        assert!(l.check(a, t0).is_ok());
        assert_eq!(l.check(a, t0).unwrap_err().scope, Scope::Global);
        assert_eq!(l.check(a, t0).unwrap_err().scope, Scope::Global);
        // Had the global refusals been charged to the IP, its second request would be gone.
        assert!(l.check(a, t0 + ms(1)).is_ok());
        assert_eq!(l.check(a, t0 + ms(2)).unwrap_err().scope, Scope::Ip);
    }

    #[test]
    fn refused_by_ip_does_not_charge_global() {
        let l = limiter((1, 2), (1, 1), 100);
        let t0 = Instant::now();
        let a = v4(203, 0, 113, 1);
        assert!(l.check(a, t0).is_ok());
        for _ in 0..5 {
            assert_eq!(l.check(a, t0).unwrap_err().scope, Scope::Ip);
        }
        // Global had 2: one used by `a`, the refusals used none.
        assert!(l.check(v4(203, 0, 113, 2), t0).is_ok());
        assert_eq!(
            l.check(v4(203, 0, 113, 3), t0).unwrap_err().scope,
            Scope::Global
        );
    }

    #[test]
    fn split_scopes_charge_the_address_alone_and_the_global_bucket_alone() {
        // Issue 9, finding 4: junk is charged to its own address only; the global bucket is spent by
        // authenticated calls only.
        let l = limiter((1, 2), (1, 3), 100);
        let t0 = Instant::now();
        let junk = v4(203, 0, 113, 1);
        for _ in 0..3 {
            assert!(l.check_ip(junk, t0).is_ok());
        }
        assert_eq!(l.check_ip(junk, t0), Err(Duration::from_secs(1)));
        // The junk spent none of the global bucket: a valid client gets both global requests.
        let valid = v4(203, 0, 113, 2);
        for _ in 0..2 {
            assert!(l.check_ip(valid, t0).is_ok());
            assert!(l.check_global(t0).is_ok());
        }
        // A global refusal happens after the address was charged, and takes nothing from the global one.
        assert!(l.check_ip(valid, t0).is_ok());
        assert_eq!(l.check_global(t0), Err(Duration::from_secs(1)));
        assert_eq!(l.check_ip(valid, t0), Err(Duration::from_secs(1)));
        assert!(l.check_global(t0 + Duration::from_secs(1)).is_ok());
        // Disabled scopes never refuse.
        let open = limiter((0, 0), (0, 0), 1);
        for _ in 0..100 {
            assert!(open.check_ip(junk, t0).is_ok() && open.check_global(t0).is_ok());
        }
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let l = limiter((0, 0), (1, 1), 100);
        let t0 = Instant::now();
        assert!(l.check(v6("2001:db8:1:2::1"), t0).is_ok());
        assert_eq!(
            l.check(v6("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0)
                .unwrap_err()
                .scope,
            Scope::Ip
        );
        assert_eq!(
            l.check(v6("2001:db8:1:2:abcd::9"), t0).unwrap_err().scope,
            Scope::Ip
        );
        // The neighbouring /64 is another client.
        assert!(l.check(v6("2001:db8:1:3::1"), t0).is_ok());
        assert_eq!(l.tracked_ips(), 2);
    }

    #[test]
    fn ipv4_mapped_addresses_are_limited_as_ipv4() {
        let l = limiter((0, 0), (1, 1), 100);
        let t0 = Instant::now();
        assert!(l.check(v6("::ffff:192.0.2.1"), t0).is_ok());
        // The same client seen over an IPv4 socket shares the bucket ...
        assert_eq!(l.check(v4(192, 0, 2, 1), t0).unwrap_err().scope, Scope::Ip);
        // ... and other IPv4 clients on a dual-stack socket are not lumped into one /64.
        assert!(l.check(v6("::ffff:192.0.2.2"), t0).is_ok());
        assert!(l.check(v4(192, 0, 2, 3), t0).is_ok());
    }

    #[test]
    fn exactly_burst_succeed_among_1000_threads_at_a_frozen_time() {
        const THREADS: usize = 1000;
        let t0 = Instant::now();
        let run = |l: &RateLimiter, distinct_ips: bool| -> (usize, Vec<Rejection>) {
            let barrier = Barrier::new(THREADS);
            let results: Vec<Result<(), Rejection>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|i| {
                        let barrier = &barrier;
                        s.spawn(move || {
                            let ip = if distinct_ips {
                                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32))
                            } else {
                                v4(10, 0, 0, 1)
                            };
                            barrier.wait();
                            l.check(ip, t0)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("thread"))
                    .collect()
            });
            let ok = results.iter().filter(|r| r.is_ok()).count();
            (ok, results.into_iter().filter_map(Result::err).collect())
        };
        // One client hammering: exactly its burst gets through.
        let (ok, refused) = run(&limiter((0, 0), (1, 37), 100), false);
        assert_eq!(ok, 37);
        assert!(refused.iter().all(|r| r.scope == Scope::Ip));
        // A thousand clients: exactly the global burst gets through.
        let (ok, refused) = run(&limiter((1, 123), (1, 1), 10_000), true);
        assert_eq!(ok, 123);
        assert!(refused.iter().all(|r| r.scope == Scope::Global));
    }

    #[test]
    fn a_million_distinct_ips_stay_within_the_table_cap() {
        const CAP: usize = 1000;
        let l = limiter((0, 0), (1, 1), CAP);
        let t0 = Instant::now();
        let mut accepted = 0u32;
        // A million addresses over 20 seconds of simulated time (50 000 new addresses a second).
        const SECS: u64 = 20;
        for i in 0..1_000_000u32 {
            let now = t0 + ns(u64::from(i) * SECS * 1_000);
            if l.check(IpAddr::V4(Ipv4Addr::from(i)), now).is_ok() {
                accepted += 1;
            }
            if i % 1024 == 0 {
                assert!(l.tracked_ips() <= CAP);
            }
        }
        assert!(l.tracked_ips() <= CAP);
        let st = lock(&l.state);
        let table = st.ip.as_ref().unwrap();
        // The map's allocation stays proportional to the cap, not to the addresses seen.
        assert!(
            table.buckets.capacity() <= 4 * CAP,
            "capacity {}",
            table.buckets.capacity()
        );
        drop(st);
        // Every accepted request either got a table slot or was charged to the overflow bucket. A
        // slot frees only when its bucket is full again, one second after its request, so each slot
        // serves at most once a second, and the overflow bucket once a second: the spray cannot get
        // more than that. But the slots are reused, so the spray does not lock out new clients for
        // good either.
        let most = (CAP as u64 + 1) * (SECS + 1);
        assert!(u64::from(accepted) <= most, "accepted {accepted} > {most}");
        assert!(
            u64::from(accepted) >= 5 * CAP as u64,
            "accepted {accepted}: slots were not reused"
        );
        // Once the spray stops and a second passes, a new client is served at once.
        let after = t0 + Duration::from_secs(SECS + 1);
        assert!(l.check(v4(192, 0, 2, 1), after).is_ok());
        assert!(l.tracked_ips() <= CAP);
    }

    #[test]
    fn a_full_table_evicts_full_buckets_then_uses_the_overflow_bucket() {
        let l = limiter((0, 0), (1, 1), 2);
        let t0 = Instant::now();
        let (a, b, c, d, e) = (
            v4(192, 0, 2, 1),
            v4(192, 0, 2, 2),
            v4(192, 0, 2, 3),
            v4(192, 0, 2, 4),
            v4(192, 0, 2, 5),
        );
        assert!(l.check(a, t0).is_ok());
        assert!(l.check(b, t0).is_ok());
        assert_eq!(l.tracked_ips(), 2);
        // Table full, nothing refilled: c and d share the overflow bucket (one request between them).
        assert!(l.check(c, t0).is_ok());
        assert_eq!(l.check(d, t0).unwrap_err().scope, Scope::Ip);
        assert_eq!(l.tracked_ips(), 2);
        // a and b are still tracked and still limited.
        assert_eq!(l.check(a, t0).unwrap_err().scope, Scope::Ip);
        // After a second, a and b are full again and give way to e.
        assert!(l.check(e, t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(l.tracked_ips(), 1);
        assert_eq!(
            l.check(e, t0 + Duration::from_secs(1)).unwrap_err().scope,
            Scope::Ip
        );
    }

    #[test]
    fn moving_from_overflow_to_an_entry_grants_no_fresh_burst() {
        // burst 2, 1 per second, room for one client.
        let l = limiter((0, 0), (1, 2), 1);
        let t0 = Instant::now();
        let (a, b) = (v4(192, 0, 2, 1), v4(192, 0, 2, 2));
        assert!(l.check(a, t0).is_ok());
        // b drains the overflow bucket.
        assert!(l.check(b, t0).is_ok());
        assert!(l.check(b, t0).is_ok());
        assert!(l.check(b, t0).is_err());
        // One second later a is full and is evicted; b gets an entry. b's own limit over that second
        // is burst + 1 = 3 requests, of which it used 2: one more, not a fresh burst of 2.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.check(b, t1).is_ok());
        assert_eq!(l.tracked_ips(), 1);
        assert_eq!(l.check(b, t1).unwrap_err().scope, Scope::Ip);
    }

    #[test]
    fn full_table_sweeps_are_rate_limited() {
        // 1000 per second: a bucket is full again 1 ms after its request.
        let l = limiter((0, 0), (1000, 1), 1);
        let t0 = Instant::now();
        let (a, b, c, d) = (
            v4(192, 0, 2, 1),
            v4(192, 0, 2, 2),
            v4(192, 0, 2, 3),
            v4(192, 0, 2, 4),
        );
        assert!(l.check(a, t0).is_ok());
        // Table full: b triggers a sweep that frees nothing and goes to overflow.
        assert!(l.check(b, t0).is_ok());
        // 50 ms later a is full, but sweeping again so soon is not allowed: c uses overflow.
        assert!(l.check(c, t0 + ms(50)).is_ok());
        assert!(lock(&l.state).ip.as_ref().unwrap().buckets.contains_key(&a));
        // After the minimum interval the next new client sweeps a away and takes its slot.
        assert!(l.check(d, t0 + SWEEP_MIN_INTERVAL).is_ok());
        let st = lock(&l.state);
        let buckets = &st.ip.as_ref().unwrap().buckets;
        assert!(!buckets.contains_key(&a) && buckets.contains_key(&d));
    }

    /// Property over the whole limiter: for random clients (some sharing a /64) in a small table,
    /// no client ever gets more than burst + rate * elapsed, overflow and eviction included.
    #[test]
    fn limiter_property_no_client_exceeds_its_allowance() {
        let t0 = Instant::now();
        for seed in 0..40u64 {
            let mut rng = Rng(seed ^ 0x5eed);
            let rate = 1 + rng.below(5);
            let burst = 1 + rng.below(4);
            let cap = 1 + rng.below(4) as usize;
            let l = limiter((0, 0), (rate, burst), cap);
            let mut granted: HashMap<IpAddr, Vec<u128>> = HashMap::new();
            let mut now = Duration::ZERO;
            for _ in 0..2000 {
                now += ns(rng.below(150_000_000));
                let host = rng.below(8);
                let ip = if host < 4 {
                    v4(192, 0, 2, host as u8)
                } else {
                    // Two hosts in each of two /64s.
                    v6(&format!("2001:db8:0:{}::{}", host % 2, host))
                };
                assert!(l.tracked_ips() <= cap);
                if l.check(ip, t0 + now).is_ok() {
                    granted
                        .entry(client_key(ip))
                        .or_default()
                        .push(now.as_nanos());
                }
            }
            for (ip, times) in &granted {
                for i in 0..times.len() {
                    for j in i..times.len() {
                        let count = (j - i + 1) as u128;
                        let span = times[j] - times[i];
                        assert!(
                            count * 1_000_000_000
                                <= u128::from(burst) * 1_000_000_000 + u128::from(rate) * span,
                            "seed {seed}: {ip} got {count} in {span} ns (rate {rate}, burst {burst})"
                        );
                    }
                }
            }
        }
    }

    // ---- TokenLimits ----

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn no_limits_means_no_entry() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        for _ in 0..100 {
            let g = tl.try_acquire("a", None, None, t0).unwrap();
            drop(g);
        }
        // s == 0 is no window at all.
        assert!(tl.try_acquire("a", Some((1, 0)), None, t0).is_ok());
        assert!(tl.try_acquire("a", Some((1, 0)), None, t0).is_ok());
        assert_eq!(tl.tracked_tokens(), 0);
    }

    #[test]
    fn out_of_range_limits_refuse_rather_than_open() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        assert_eq!(
            tl.try_acquire("a", Some((0, 5)), None, t0).unwrap_err(),
            TokenRejection::RateLimited(Duration::from_secs(5))
        );
        assert_eq!(
            tl.try_acquire("a", None, Some(0), t0).unwrap_err(),
            TokenRejection::TooManyConcurrent
        );
    }

    #[test]
    fn rate_window_burst_then_exact_expiry() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        let r = Some((3, 10));
        for _ in 0..3 {
            assert!(tl.try_acquire("tok", r, None, t0).is_ok());
        }
        assert_eq!(
            tl.try_acquire("tok", r, None, t0).unwrap_err(),
            TokenRejection::RateLimited(Duration::from_secs(10))
        );
        assert_eq!(
            tl.try_acquire("tok", r, None, t0 + ns(10 * SEC - 1))
                .unwrap_err(),
            TokenRejection::RateLimited(ns(1))
        );
        // At exactly s seconds all three leave the window together: a full new batch of 3.
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert!(tl.try_acquire("tok", r, None, t1).is_ok());
        }
        assert!(tl.try_acquire("tok", r, None, t1).is_err());
        // Another token has its own window.
        assert!(tl.try_acquire("other", r, None, t1).is_ok());
    }

    #[test]
    fn rate_window_slides() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        let r = Some((3, 10));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(tl.try_acquire("t", r, None, at(0)).is_ok());
        assert!(tl.try_acquire("t", r, None, at(4)).is_ok());
        assert!(tl.try_acquire("t", r, None, at(8)).is_ok());
        assert_eq!(
            tl.try_acquire("t", r, None, at(9)).unwrap_err(),
            TokenRejection::RateLimited(Duration::from_secs(1))
        );
        assert!(tl.try_acquire("t", r, None, at(10)).is_ok());
        // Now calls at 4, 8, 10: the next is due when 4 leaves, at 14.
        assert_eq!(
            tl.try_acquire("t", r, None, at(11)).unwrap_err(),
            TokenRejection::RateLimited(Duration::from_secs(3))
        );
        assert!(tl.try_acquire("t", r, None, at(14)).is_ok());
    }

    #[test]
    fn rate_is_n_in_any_window_not_a_refilling_bucket() {
        // GCRA or a bucket with burst n and interval s/n would admit 2n - 1 calls within s seconds
        // (n at once, then one every s/n). The claim says n in *any* window of s seconds.
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        let r = Some((4, 8));
        let mut ok = 0;
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(8) {
            if tl.try_acquire("t", r, None, t0 + t).is_ok() {
                ok += 1;
            }
            t += ms(250);
        }
        assert_eq!(ok, 4);
    }

    /// Checks the accepted call times against n-in-any-window-of-s and the refusals against an exact
    /// sliding log (for n <= WINDOW_GROUPS) or against the documented slack (for larger n).
    fn window_property(seed: u64, n: u64, s_secs: u64, steps: usize) {
        let mut rng = Rng(seed);
        let tl = TokenLimits::new(4);
        let t0 = Instant::now();
        let s = s_secs * SEC;
        let slack = if n <= WINDOW_GROUPS {
            0
        } else {
            s / WINDOW_GROUPS
        };
        let mut accepted: Vec<u64> = Vec::new();
        let mut now = 0u64;
        // Step sizes around s / n so that the window is sometimes full, sometimes not.
        let step = (s / n).max(1);
        for _ in 0..steps {
            now += match rng.below(4) {
                0 => 0,
                1 => rng.below(step),
                2 => rng.below(4 * step),
                _ => rng.below(s + 1) / 4,
            };
            // Accepted calls in (now - len, now].
            let in_last = |len: u64| {
                accepted
                    .iter()
                    .filter(|&&a| i128::from(a) > i128::from(now) - i128::from(len))
                    .count() as u64
            };
            match tl.try_acquire("tok", Some((n, s_secs)), None, t0 + ns(now)) {
                Ok(_) => {
                    assert!(
                        in_last(s) < n,
                        "seed {seed} n {n}: admitted at {now} with a full window"
                    );
                    accepted.push(now);
                }
                Err(TokenRejection::RateLimited(wait)) => {
                    // Refused: at least n calls in the window stretched by the slack.
                    assert!(
                        in_last(s + slack) >= n,
                        "seed {seed} n {n}: refused at {now} with fewer than n calls in the window"
                    );
                    // The wait ends exactly when (exact log) or no later than slack after (groups) the
                    // n-th most recent call leaves the window.
                    let nth = accepted[accepted.len() - n as usize];
                    let exact = (nth + s).saturating_sub(now);
                    let w = u64::try_from(wait.as_nanos()).unwrap();
                    assert!(
                        w >= exact && w <= exact + slack,
                        "seed {seed} n {n}: wait {w} exact {exact}"
                    );
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(
            accepted.len() as u64 > n,
            "seed {seed}: the sequence never refilled the window"
        );
        // The contract: no n + 1 accepted calls within less than s.
        for win in accepted.windows(n as usize + 1) {
            let spread = win[n as usize] - win[0];
            assert!(
                spread >= s,
                "seed {seed} n {n}: n+1 calls within {spread} ns"
            );
        }
    }

    #[test]
    fn rate_window_property_exact_log() {
        for seed in 0..60 {
            let n = 1 + seed % WINDOW_GROUPS;
            window_property(seed, n, 1 + seed % 7, 1500);
        }
    }

    #[test]
    fn rate_window_property_grouped_log() {
        for seed in 0..20 {
            let n = WINDOW_GROUPS + 1 + seed * 37 % 500;
            window_property(seed, n, 1 + seed % 5, 4000);
            let groups = {
                let tl = TokenLimits::new(1);
                let t0 = Instant::now();
                // Spread 10 * n calls evenly: the log must stay small.
                for i in 0..(10 * n) {
                    let _ = tl.try_acquire("t", Some((n, 1)), None, t0 + ns(i * SEC / n));
                }
                let table = lock(&tl.table);
                table.entries["t"].window.as_ref().unwrap().groups.len()
            };
            assert!(
                groups <= WINDOW_GROUPS as usize + 2,
                "n {n}: {groups} groups"
            );
        }
    }

    #[test]
    fn concurrency_guard_releases_on_drop() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        let g1 = tl.try_acquire("t", None, Some(2), t0).unwrap();
        let g2 = tl.try_acquire("t", None, Some(2), t0).unwrap();
        assert_eq!(
            tl.try_acquire("t", None, Some(2), t0).unwrap_err(),
            TokenRejection::TooManyConcurrent
        );
        drop(g1);
        let g3 = tl.try_acquire("t", None, Some(2), t0).unwrap();
        assert_eq!(
            tl.try_acquire("t", None, Some(2), t0).unwrap_err(),
            TokenRejection::TooManyConcurrent
        );
        drop(g2);
        drop(g3);
        // A conc-only token is forgotten as soon as nothing is in flight.
        assert_eq!(tl.tracked_tokens(), 0);
        // Guards can be released from another thread.
        let g = tl.try_acquire("t", None, Some(1), t0).unwrap();
        std::thread::spawn(move || drop(g)).join().unwrap();
        assert!(tl.try_acquire("t", None, Some(1), t0).is_ok());
    }

    #[test]
    fn refused_for_concurrency_does_not_use_the_rate() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        let r = Some((2, 60));
        let g = tl.try_acquire("t", r, Some(1), t0).unwrap();
        for _ in 0..5 {
            assert_eq!(
                tl.try_acquire("t", r, Some(1), t0).unwrap_err(),
                TokenRejection::TooManyConcurrent
            );
        }
        drop(g);
        assert!(
            tl.try_acquire("t", r, Some(1), t0).is_ok(),
            "the refusals must not count as calls"
        );
    }

    #[test]
    fn refused_for_rate_does_not_hold_a_slot() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        let r = Some((1, 60));
        let g = tl.try_acquire("t", r, Some(5), t0).unwrap();
        for _ in 0..5 {
            assert!(matches!(
                tl.try_acquire("t", r, Some(5), t0),
                Err(TokenRejection::RateLimited(_))
            ));
        }
        assert_eq!(lock(&tl.table).entries["t"].in_flight, 1);
        drop(g);
        assert_eq!(lock(&tl.table).entries["t"].in_flight, 0);
    }

    #[test]
    fn rate_wins_when_both_limits_refuse() {
        let tl = TokenLimits::new(10);
        let t0 = Instant::now();
        let _g = tl.try_acquire("t", Some((1, 60)), Some(1), t0).unwrap();
        assert_eq!(
            tl.try_acquire("t", Some((1, 60)), Some(1), t0).unwrap_err(),
            TokenRejection::RateLimited(Duration::from_secs(60))
        );
    }

    #[test]
    fn token_table_is_bounded_and_forgets_expired_windows() {
        let tl = TokenLimits::new(2);
        let t0 = Instant::now();
        let r = Some((1, 10));
        assert!(tl.try_acquire("a", r, None, t0).is_ok());
        assert!(tl.try_acquire("b", r, None, t0).is_ok());
        // Full of tokens still inside their windows: a third is refused, not admitted untracked.
        assert_eq!(
            tl.try_acquire("c", r, None, t0).unwrap_err(),
            TokenRejection::RateLimited(TABLE_FULL_RETRY)
        );
        assert_eq!(tl.tracked_tokens(), 2);
        // Known tokens keep working against their own limits.
        assert!(tl.try_acquire("a", r, None, t0 + ms(5)).is_err());
        // Once their windows have passed, they are forgotten and c fits.
        let t1 = t0 + Duration::from_secs(10);
        assert!(tl.try_acquire("c", r, None, t1).is_ok());
        assert!(tl.tracked_tokens() <= 2);
        // a was forgotten, which is the same as its window being empty: it may call again.
        assert!(tl.try_acquire("a", r, None, t1).is_ok());
        assert!(tl.try_acquire("d", r, None, t1).is_err());
    }

    #[test]
    fn token_held_in_flight_is_not_forgotten() {
        let tl = TokenLimits::new(1);
        let t0 = Instant::now();
        let g = tl.try_acquire("a", Some((5, 1)), Some(1), t0).unwrap();
        let t1 = t0 + Duration::from_secs(60);
        // a's window is long past, but its request is still in flight.
        assert_eq!(
            tl.try_acquire("b", None, Some(1), t1).unwrap_err(),
            TokenRejection::RateLimited(TABLE_FULL_RETRY)
        );
        assert_eq!(
            tl.try_acquire("a", Some((5, 1)), Some(1), t1).unwrap_err(),
            TokenRejection::TooManyConcurrent
        );
        drop(g);
        // The release told the sweep schedule that a is removable; b fits once the min interval passed.
        assert!(tl
            .try_acquire("b", None, Some(1), t1 + SWEEP_MIN_INTERVAL)
            .is_ok());
    }

    #[test]
    fn exactly_n_calls_and_conc_slots_among_1000_threads() {
        const THREADS: usize = 1000;
        let t0 = Instant::now();
        let tl = TokenLimits::new(10);
        let barrier = Barrier::new(THREADS);
        let (rate_ok, conc_ok) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (tl, barrier) = (&tl, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let by_rate = tl.try_acquire("rate", Some((100, 60)), None, t0).is_ok();
                        // Hold the conc guard until every thread has tried.
                        let guard = tl.try_acquire("conc", None, Some(10), t0);
                        barrier.wait();
                        (by_rate, guard.is_ok())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .fold((0, 0), |(r, c), (a, b)| {
                    (r + usize::from(a), c + usize::from(b))
                })
        });
        assert_eq!(rate_ok, 100);
        assert_eq!(conc_ok, 10);
        // Every guard was dropped when its thread finished.
        assert!(tl.try_acquire("conc", None, Some(10), t0).is_ok());
    }
}
