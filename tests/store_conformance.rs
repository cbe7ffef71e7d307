//! One conformance suite for every usage store backend: each check below runs against the in-memory
//! store, a SQLite file and a real `redis-server`, through the public `Store` API only. The backend
//! specific tests at the end cover what only one backend has: persistence across reopen and expiry
//! clean-up (SQLite), key expiry, sharing, and an unreachable or hung server (Redis). The last test
//! runs the whole suite once more on a real 3-master Redis Cluster.

mod store_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use relayapi::store::{
    RedisOptions, RedisTarget, Reservation, Spend, SpendLimit, SpendLine, SpendReservation, Store,
    TokenRef, Usage, MAX_TIME, RETAIN_AFTER_EXPIRY,
};
use store_support::topology::RedisCluster;
use store_support::RedisServer;

/// Longest a token can be accepted after issue in these tests (`max_token_life`).
const TOKEN_LIFE: u64 = 7 * 24 * 3600;

/// A store and what must outlive it (the temporary directory, the Redis server).
struct Fixture {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<RedisServer>,
}

fn memory() -> Fixture {
    Fixture {
        store: Store::memory(),
        _dir: None,
        _redis: None,
    }
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("usage.db"), TOKEN_LIFE).unwrap();
    Fixture {
        store,
        _dir: Some(dir),
        _redis: None,
    }
}

fn redis_options(server: &RedisServer, prefix: &str, timeout: Duration) -> RedisOptions {
    RedisOptions {
        target: RedisTarget::Server(server.url()),
        key_prefix: prefix.into(),
        connect_timeout: timeout,
        command_timeout: timeout,
        replica_acks: 0,
    }
}

fn redis() -> Fixture {
    let server = RedisServer::start();
    let store = Store::open_redis(
        redis_options(&server, "test:", Duration::from_secs(2)),
        TOKEN_LIFE,
    )
    .unwrap();
    Fixture {
        store,
        _dir: None,
        _redis: Some(server),
    }
}

fn tok<'a>(tenant: &'a str, jti: &'a str, max: Option<u64>) -> TokenRef<'a> {
    TokenRef {
        jti,
        tenant,
        iat: 1_000,
        exp: 10_000,
        max,
    }
}

async fn granted(s: &Store, t: TokenRef<'_>, now: u64) -> u64 {
    match s.reserve(t, now).await.unwrap() {
        Reservation::Granted { used } => used,
        other => panic!("expected a granted reservation, got {other:?}"),
    }
}

/// Until when the spend lines of the shared checks are kept: far in the future on every clock,
/// since Redis expires keys on its own (real) clock.
const KEEP: u64 = 1 << 32;

fn spend(calls: u64, input: u64, output: u64, cached_input: u64, cost: u64) -> Spend {
    Spend {
        calls,
        input,
        output,
        cached_input,
        cost,
    }
}

fn limit(calls: Option<u64>, tokens: Option<u64>, cost: Option<u64>) -> SpendLimit {
    SpendLimit {
        calls,
        tokens,
        cost,
    }
}

fn line(key: &str, limit: SpendLimit) -> SpendLine {
    SpendLine {
        key: key.into(),
        limit,
        keep_until: KEEP,
    }
}

fn open_line(key: &str) -> SpendLine {
    line(key, SpendLimit::default())
}

/// `amount` times `n`, member by member.
fn times(amount: Spend, n: u64) -> Spend {
    spend(
        amount.calls * n,
        amount.input * n,
        amount.output * n,
        amount.cached_input * n,
        amount.cost * n,
    )
}

async fn reserve_spend(
    s: &Store,
    tenant: &str,
    lines: &[SpendLine],
    amount: Spend,
) -> SpendReservation {
    s.spend_reserve(tenant, lines, &amount, 1_100)
        .await
        .unwrap()
}

async fn spent(s: &Store, tenant: &str, keys: &[&str]) -> Vec<Spend> {
    s.spend_get(tenant, keys).await.unwrap()
}

// ---------------------------------------------------------------------------------------------------
// The shared checks
// ---------------------------------------------------------------------------------------------------

async fn counts_exactly_max_calls(s: &Store) {
    for i in 1..=3 {
        assert_eq!(granted(s, tok("acme", "a", Some(3)), 1_100 + i).await, i);
    }
    assert_eq!(
        s.reserve(tok("acme", "a", Some(3)), 1_200).await.unwrap(),
        Reservation::Exhausted
    );
    let u = s.usage("acme", "a").await.unwrap().unwrap();
    assert_eq!(
        u,
        Usage {
            tenant: "acme".into(),
            calls_used: 3,
            max_calls: Some(3),
            first_used_at: Some(1_101),
            last_used_at: Some(1_103),
            expires_at: Some(10_000),
            issued_at: Some(1_000),
            revoked: false,
        },
        "a refused call is not a use"
    );
    s.refund("acme", "a").await.unwrap();
    assert_eq!(granted(s, tok("acme", "a", Some(3)), 1_300).await, 3);
    let u = s.usage("acme", "a").await.unwrap().unwrap();
    assert_eq!(
        (u.calls_used, u.first_used_at, u.last_used_at),
        (3, Some(1_101), Some(1_300))
    );
}

async fn unlimited_tokens_count_every_call(s: &Store) {
    for i in 1..=40 {
        assert_eq!(granted(s, tok("acme", "u", None), 1_100).await, i);
    }
    let u = s.usage("acme", "u").await.unwrap().unwrap();
    assert_eq!((u.calls_used, u.max_calls), (40, None));
}

async fn tenants_never_share_counters(s: &Store) {
    assert_eq!(granted(s, tok("acme", "same-id", Some(1)), 1_100).await, 1);
    assert_eq!(
        granted(s, tok("globex", "same-id", Some(1)), 1_100).await,
        1,
        "another tenant's token with the same id has its own counter"
    );
    s.revoke("acme", "same-id").await.unwrap();
    s.revoke_before("acme", 5_000).await.unwrap();
    let other = s.usage("globex", "same-id").await.unwrap().unwrap();
    assert_eq!((other.calls_used, other.revoked), (1, false));
    s.refund("globex", "same-id").await.unwrap();
    assert_eq!(
        granted(s, tok("globex", "same-id", Some(1)), 1_101).await,
        1
    );
    assert_eq!(s.usage("initech", "same-id").await.unwrap(), None);
}

async fn parallel_reservations_never_exceed_max(s: Arc<Store>) {
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.reserve(tok("acme", "p", Some(5)), 1_100).await.unwrap()
        }));
    }
    let mut granted = Vec::new();
    for t in tasks {
        if let Reservation::Granted { used } = t.await.unwrap() {
            granted.push(used);
        }
    }
    granted.sort_unstable();
    assert_eq!(granted, [1, 2, 3, 4, 5], "each count handed out once");
    assert_eq!(s.usage("acme", "p").await.unwrap().unwrap().calls_used, 5);
}

async fn refund_never_goes_below_zero(s: &Store) {
    s.refund("acme", "never-seen").await.unwrap();
    assert_eq!(
        s.usage("acme", "never-seen").await.unwrap(),
        None,
        "a refund does not create a record"
    );
    granted(s, tok("acme", "r", Some(2)), 1_100).await;
    s.refund("acme", "r").await.unwrap();
    s.refund("acme", "r").await.unwrap();
    assert_eq!(s.usage("acme", "r").await.unwrap().unwrap().calls_used, 0);
    assert_eq!(granted(s, tok("acme", "r", Some(2)), 1_100).await, 1);
}

async fn revoking_an_unseen_token(s: &Store) {
    let u = s.revoke("acme", "fresh").await.unwrap();
    assert_eq!(
        u,
        Usage {
            tenant: "acme".into(),
            revoked: true,
            ..Usage::default()
        }
    );
    assert_eq!(
        s.revoke("acme", "fresh").await.unwrap(),
        u,
        "revoking is idempotent"
    );
    assert_eq!(
        s.reserve(tok("acme", "fresh", None), 1_100).await.unwrap(),
        Reservation::Revoked
    );
    let u = s.usage("acme", "fresh").await.unwrap().unwrap();
    assert!(u.revoked);
    assert_eq!(u.calls_used, 0, "a refused call is not counted");
}

async fn revoking_a_used_token_keeps_its_count(s: &Store) {
    granted(s, tok("acme", "used", Some(10)), 1_100).await;
    granted(s, tok("acme", "used", Some(10)), 1_101).await;
    let u = s.revoke("acme", "used").await.unwrap();
    assert_eq!((u.calls_used, u.revoked, u.max_calls), (2, true, Some(10)));
    assert_eq!(
        s.reserve(tok("acme", "used", Some(10)), 1_102)
            .await
            .unwrap(),
        Reservation::Revoked
    );
    let u = s.usage("acme", "used").await.unwrap().unwrap();
    assert_eq!((u.calls_used, u.last_used_at), (2, Some(1_101)));
}

async fn revoke_before_is_a_monotonic_tenant_mark(s: &Store) {
    granted(s, tok("acme", "old-used", None), 1_100).await;
    assert_eq!(s.revoke_before("acme", 1_001).await.unwrap(), 1_001);
    assert_eq!(
        s.revoke_before("acme", 500).await.unwrap(),
        1_001,
        "never lowers the mark"
    );
    // iat 1000 < 1001: refused, and not recorded.
    assert_eq!(
        s.reserve(tok("acme", "old", None), 1_100).await.unwrap(),
        Reservation::Revoked
    );
    assert_eq!(s.usage("acme", "old").await.unwrap(), None);
    let used = s.usage("acme", "old-used").await.unwrap().unwrap();
    assert_eq!(
        (used.revoked, used.calls_used),
        (true, 1),
        "usage reports the mark"
    );
    // Issued exactly at the mark: not before it.
    let mut at_mark = tok("acme", "at-mark", None);
    at_mark.iat = 1_001;
    assert_eq!(granted(s, at_mark, 1_100).await, 1);
    assert!(!s.usage("acme", "at-mark").await.unwrap().unwrap().revoked);
    assert_eq!(
        s.revoke_before("acme", u64::MAX).await.unwrap(),
        MAX_TIME,
        "capped above every valid iat"
    );
    assert_eq!(
        s.reserve(at_mark, 1_100).await.unwrap(),
        Reservation::Revoked
    );
}

async fn usage_of_an_unknown_token_is_none(s: &Store) {
    assert_eq!(s.usage("acme", "nobody").await.unwrap(), None);
    assert_eq!(s.revoke_before("acme", 0).await.unwrap(), 0);
    assert_eq!(s.usage("acme", "nobody").await.unwrap(), None);
}

async fn reservation_records_the_token_facts(s: &Store) {
    let t = TokenRef {
        jti: "facts",
        tenant: "acme",
        iat: 2_000,
        exp: 9_000,
        max: Some(MAX_TIME),
    };
    assert_eq!(granted(s, t, 2_500).await, 1);
    let u = s.usage("acme", "facts").await.unwrap().unwrap();
    assert_eq!(
        (u.issued_at, u.expires_at, u.max_calls),
        (Some(2_000), Some(9_000), Some(MAX_TIME)),
        "the largest limit a token can carry is held exactly"
    );
}

async fn a_token_facts_follow_its_latest_claims(s: &Store) {
    // A limit of 0 refuses the first call but still records the token.
    assert_eq!(
        s.reserve(tok("acme", "zero", Some(0)), 1_100)
            .await
            .unwrap(),
        Reservation::Exhausted
    );
    let u = s.usage("acme", "zero").await.unwrap().unwrap();
    assert_eq!(
        (u.calls_used, u.max_calls, u.first_used_at),
        (0, Some(0), None)
    );
    // The same id presented with other claims: the record takes the latest ones.
    assert_eq!(granted(s, tok("acme", "grows", Some(1)), 1_100).await, 1);
    assert_eq!(
        s.reserve(tok("acme", "grows", Some(1)), 1_101)
            .await
            .unwrap(),
        Reservation::Exhausted
    );
    let mut more = tok("acme", "grows", Some(2));
    more.exp = 20_000;
    assert_eq!(granted(s, more, 1_102).await, 2);
    let u = s.usage("acme", "grows").await.unwrap().unwrap();
    assert_eq!(
        (u.calls_used, u.max_calls, u.expires_at, u.last_used_at),
        (2, Some(2), Some(20_000), Some(1_102))
    );
    // A token revoked before it was seen gets its facts on its first (refused) call.
    s.revoke("acme", "early").await.unwrap();
    assert_eq!(
        s.reserve(tok("acme", "early", Some(5)), 1_100)
            .await
            .unwrap(),
        Reservation::Revoked
    );
    let u = s.usage("acme", "early").await.unwrap().unwrap();
    assert_eq!(
        (
            u.calls_used,
            u.max_calls,
            u.expires_at,
            u.issued_at,
            u.revoked
        ),
        (0, Some(5), Some(10_000), Some(1_000), true)
    );
}

// ---------------------------------------------------------------------------------------------------
// Spend lines (docs/budgets.md §3-4)
// ---------------------------------------------------------------------------------------------------

async fn spend_is_all_or_nothing_across_lines(s: &Store) {
    let a = spend(1, 30, 20, 7, 5);
    let lines = [
        line("t/tok", limit(Some(10), None, None)),
        line("u/ann/d/2026-12-07", limit(None, Some(100), None)),
        open_line("u/ann/a"),
    ];
    let keys = ["t/tok", "u/ann/d/2026-12-07", "u/ann/a"];
    assert_eq!(spent(s, "acme", &keys).await, [Spend::default(); 3]);
    for n in 1..=2 {
        assert_eq!(
            reserve_spend(s, "acme", &lines, a).await,
            SpendReservation::Granted
        );
        assert_eq!(spent(s, "acme", &keys).await, [times(a, n); 3]);
    }
    // The day line holds 100 tokens: a third reservation of 50 fits the others but not it.
    assert_eq!(
        reserve_spend(s, "acme", &lines, a).await,
        SpendReservation::NoRoom(vec![times(a, 2); 3]),
        "each line's use, in the order given"
    );
    assert_eq!(
        spent(s, "acme", &keys).await,
        [times(a, 2); 3],
        "nothing added anywhere"
    );
    // The full line first, then a line never seen: still nothing written, the new line stays
    // unknown (zero), and the answer says so.
    let with_new = [lines[1].clone(), open_line("u/bob/a"), lines[0].clone()];
    assert_eq!(
        reserve_spend(s, "acme", &with_new, a).await,
        SpendReservation::NoRoom(vec![times(a, 2), Spend::default(), times(a, 2)])
    );
    assert_eq!(
        spent(s, "acme", &["u/bob/a", "t/tok"]).await,
        [Spend::default(), times(a, 2)]
    );
    // A reservation on no line at all has nothing to refuse.
    assert_eq!(
        reserve_spend(s, "acme", &[], a).await,
        SpendReservation::Granted
    );
    assert_eq!(spent(s, "acme", &[]).await, []);
}

async fn spend_limit_of_n_allows_n_never_n_plus_one(s: &Store) {
    // Calls: 7 reservations of one call each, then none.
    let calls = [line("calls", limit(Some(7), None, None))];
    for _ in 0..7 {
        assert_eq!(
            reserve_spend(s, "acme", &calls, spend(1, 0, 0, 0, 0)).await,
            SpendReservation::Granted
        );
    }
    assert_eq!(
        reserve_spend(s, "acme", &calls, spend(1, 0, 0, 0, 0)).await,
        SpendReservation::NoRoom(vec![spend(7, 0, 0, 0, 0)])
    );
    // Tokens are input plus output: 60 + 40 fills a limit of 100 exactly; one more token does not fit.
    let tokens = [line("tokens", limit(None, Some(100), None))];
    assert_eq!(
        reserve_spend(s, "acme", &tokens, spend(0, 101, 0, 0, 0)).await,
        SpendReservation::NoRoom(vec![Spend::default()]),
        "N + 1 at once"
    );
    assert_eq!(
        reserve_spend(s, "acme", &tokens, spend(0, 60, 40, 0, 0)).await,
        SpendReservation::Granted
    );
    assert_eq!(
        reserve_spend(s, "acme", &tokens, spend(0, 0, 1, 0, 0)).await,
        SpendReservation::NoRoom(vec![spend(0, 60, 40, 0, 0)])
    );
    // Money: a limit of 1000 micro-units takes 999 then 1, and refuses the next one.
    let cost = [line("cost", limit(None, None, Some(1_000)))];
    for c in [999, 1] {
        assert_eq!(
            reserve_spend(s, "acme", &cost, spend(0, 0, 0, 0, c)).await,
            SpendReservation::Granted
        );
    }
    assert_eq!(
        reserve_spend(s, "acme", &cost, spend(0, 0, 0, 0, 1)).await,
        SpendReservation::NoRoom(vec![spend(0, 0, 0, 0, 1_000)])
    );
    // The largest limit a claim can carry, filled exactly.
    let big = [line(
        "big",
        limit(Some(MAX_TIME), Some(MAX_TIME), Some(MAX_TIME)),
    )];
    let most = spend(MAX_TIME, MAX_TIME - 1, 1, 0, MAX_TIME);
    assert_eq!(
        reserve_spend(s, "acme", &big, most).await,
        SpendReservation::Granted
    );
    assert_eq!(spent(s, "acme", &["big"]).await, [most], "held exactly");
    assert_eq!(
        reserve_spend(s, "acme", &big, spend(0, 0, 1, 0, 0)).await,
        SpendReservation::NoRoom(vec![most])
    );
}

async fn spend_each_unit_limits_on_its_own(s: &Store) {
    let huge = spend(1, 1_000_000, 1_000_000, 1_000_000, 1_000_000);
    // A calls limit ignores tokens and money, however large.
    let calls = [line("c", limit(Some(2), None, None))];
    for _ in 0..2 {
        assert_eq!(
            reserve_spend(s, "acme", &calls, huge).await,
            SpendReservation::Granted
        );
    }
    assert!(matches!(
        reserve_spend(s, "acme", &calls, spend(1, 0, 0, 0, 0)).await,
        SpendReservation::NoRoom(_)
    ));
    // A tokens limit ignores calls, money and cached input (already counted in input).
    let tokens = [line("k", limit(None, Some(10), None))];
    for _ in 0..20 {
        assert_eq!(
            reserve_spend(s, "acme", &tokens, spend(1_000, 0, 0, 1_000, 1_000)).await,
            SpendReservation::Granted
        );
    }
    assert_eq!(
        reserve_spend(s, "acme", &tokens, spend(0, 6, 4, 50, 0)).await,
        SpendReservation::Granted
    );
    assert!(matches!(
        reserve_spend(s, "acme", &tokens, spend(0, 1, 0, 0, 0)).await,
        SpendReservation::NoRoom(_)
    ));
    // A money limit ignores calls and tokens.
    let cost = [line("m", limit(None, None, Some(10)))];
    assert_eq!(
        reserve_spend(s, "acme", &cost, spend(500, 10_000, 10_000, 0, 10)).await,
        SpendReservation::Granted
    );
    assert!(matches!(
        reserve_spend(s, "acme", &cost, spend(0, 0, 0, 0, 1)).await,
        SpendReservation::NoRoom(_)
    ));
    // With every unit limited, the first one exhausted refuses, whichever it is.
    let all = [line("all", limit(Some(3), Some(30), Some(300)))];
    assert_eq!(
        reserve_spend(s, "acme", &all, spend(1, 10, 10, 0, 100)).await,
        SpendReservation::Granted
    );
    for over in [
        spend(3, 0, 0, 0, 0),
        spend(0, 0, 11, 0, 0),
        spend(0, 0, 0, 0, 201),
    ] {
        assert!(matches!(
            reserve_spend(s, "acme", &all, over).await,
            SpendReservation::NoRoom(_)
        ));
    }
    assert_eq!(spent(s, "acme", &["all"]).await, [spend(1, 10, 10, 0, 100)]);
}

async fn spend_settles_down_and_up(s: &Store) {
    let lines = [
        line("t/s", limit(None, Some(300), None)),
        open_line("u/s/a"),
    ];
    let keys = ["t/s", "u/s/a"];
    let reserved = spend(1, 100, 50, 0, 500);
    assert_eq!(
        reserve_spend(s, "acme", &lines, reserved).await,
        SpendReservation::Granted
    );
    // Down: the provider reported less than the worst case.
    let actual = spend(1, 80, 20, 10, 300);
    s.spend_settle("acme", &lines, &reserved, &actual)
        .await
        .unwrap();
    assert_eq!(spent(s, "acme", &keys).await, [actual; 2]);
    // Up: more than reserved is still charged, past the limit (an overshoot).
    assert_eq!(
        reserve_spend(s, "acme", &lines, reserved).await,
        SpendReservation::Granted
    );
    let over = spend(1, 400, 100, 0, 900);
    s.spend_settle("acme", &lines, &reserved, &over)
        .await
        .unwrap();
    let total = spend(2, 480, 120, 10, 1_200);
    assert_eq!(spent(s, "acme", &keys).await, [total; 2]);
    assert_eq!(
        reserve_spend(s, "acme", &lines, spend(0, 0, 1, 0, 0)).await,
        SpendReservation::NoRoom(vec![total; 2]),
        "a line past its limit refuses everything"
    );
    // Floored at zero: settling more than the line holds (say, after its window was forgotten).
    s.spend_settle(
        "acme",
        &lines,
        &spend(5, 1_000, 1_000, 1_000, 2_000),
        &Spend::default(),
    )
    .await
    .unwrap();
    assert_eq!(spent(s, "acme", &keys).await, [Spend::default(); 2]);
    // Lines missing from the store are created: usage never reserved (a token without a budget).
    let fresh = [open_line("t/unbudgeted")];
    s.spend_settle("acme", &fresh, &Spend::default(), &actual)
        .await
        .unwrap();
    s.spend_settle("acme", &[open_line("t/gone")], &reserved, &actual)
        .await
        .unwrap();
    assert_eq!(
        spent(s, "acme", &["t/unbudgeted", "t/gone"]).await,
        [actual, spend(0, 0, 0, 10, 0)],
        "each member on its own, floored at zero"
    );
}

async fn spend_values_are_exact_up_to_2_pow_53(s: &Store) {
    let l = [open_line("big")];
    let near = spend(MAX_TIME - 2, MAX_TIME - 1, 1, 3, MAX_TIME - 3);
    s.spend_settle("acme", &l, &Spend::default(), &near)
        .await
        .unwrap();
    assert_eq!(spent(s, "acme", &["big"]).await, [near], "held exactly");
    assert_eq!(
        reserve_spend(s, "acme", &l, spend(1, 1, 1, 1, 1)).await,
        SpendReservation::Granted
    );
    assert_eq!(
        spent(s, "acme", &["big"]).await,
        [spend(MAX_TIME - 1, MAX_TIME, 2, 4, MAX_TIME - 2)]
    );
    // Capped at 2^53 - 1, whatever is added, reserved or settled.
    assert_eq!(
        reserve_spend(s, "acme", &l, spend(5, 5, u64::MAX, 0, 1)).await,
        SpendReservation::Granted
    );
    s.spend_settle("acme", &l, &Spend::default(), &spend(0, 0, 0, u64::MAX, 1))
        .await
        .unwrap();
    let capped = spend(MAX_TIME, MAX_TIME, MAX_TIME, MAX_TIME, MAX_TIME);
    assert_eq!(spent(s, "acme", &["big"]).await, [capped]);
    // And back down exactly.
    s.spend_settle(
        "acme",
        &l,
        &spend(1, 2, MAX_TIME - 3, 4, 5),
        &Spend::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        spent(s, "acme", &["big"]).await,
        [spend(
            MAX_TIME - 1,
            MAX_TIME - 2,
            3,
            MAX_TIME - 4,
            MAX_TIME - 5
        )]
    );
    // Limits decide exactly next to 2^53, in every unit: 2^53 - 2 used plus 2 does not fit 2^53 - 1,
    // plus 1 does.
    let edge = [line(
        "edge",
        limit(Some(MAX_TIME), Some(MAX_TIME), Some(MAX_TIME)),
    )];
    s.spend_settle(
        "acme",
        &edge,
        &Spend::default(),
        &spend(MAX_TIME - 1, MAX_TIME - 2, 1, 0, MAX_TIME - 1),
    )
    .await
    .unwrap();
    for over in [
        spend(2, 0, 0, 0, 0),
        spend(0, 1, 1, 0, 0),
        spend(0, 0, 0, 0, 2),
    ] {
        assert!(
            matches!(
                reserve_spend(s, "acme", &edge, over).await,
                SpendReservation::NoRoom(_)
            ),
            "{over:?}"
        );
    }
    assert_eq!(
        reserve_spend(s, "acme", &edge, spend(1, 0, 1, 0, 1)).await,
        SpendReservation::Granted
    );
    // Limits beyond 2^53 (never minted, but the type allows them) still compare exactly.
    let wide = [line(
        "wide",
        limit(Some(u64::MAX), Some(u64::MAX), Some(u64::MAX)),
    )];
    assert_eq!(
        reserve_spend(s, "acme", &wide, spend(u64::MAX, u64::MAX, 0, 0, u64::MAX)).await,
        SpendReservation::Granted
    );
    assert!(matches!(
        reserve_spend(s, "acme", &wide, spend(0, u64::MAX, 1, 0, 0)).await,
        SpendReservation::NoRoom(_)
    ));
}

async fn spend_tenants_never_share_lines(s: &Store) {
    let l = [line("u/same/a", limit(Some(1), None, None))];
    let one = spend(1, 10, 10, 0, 10);
    assert_eq!(
        reserve_spend(s, "acme", &l, one).await,
        SpendReservation::Granted
    );
    assert_eq!(
        reserve_spend(s, "globex", &l, one).await,
        SpendReservation::Granted,
        "another tenant's line with the same key is its own"
    );
    assert!(matches!(
        reserve_spend(s, "acme", &l, one).await,
        SpendReservation::NoRoom(_)
    ));
    s.spend_settle("globex", &l, &one, &Spend::default())
        .await
        .unwrap();
    assert_eq!(spent(s, "acme", &["u/same/a"]).await, [one]);
    assert_eq!(spent(s, "globex", &["u/same/a"]).await, [Spend::default()]);
    assert_eq!(spent(s, "initech", &["u/same/a"]).await, [Spend::default()]);
}

async fn spend_keep_until_is_only_raised(s: &Store) {
    // A later reservation or settlement naming an earlier keep_until never shortens the line's life
    // (the backends' own tests check when each forgets it).
    let mut l = line("t/keep", limit(Some(10), None, None));
    assert_eq!(
        reserve_spend(s, "acme", &[l.clone()], spend(1, 0, 0, 0, 0)).await,
        SpendReservation::Granted
    );
    l.keep_until = 5_000;
    assert_eq!(
        reserve_spend(s, "acme", &[l.clone()], spend(1, 0, 0, 0, 0)).await,
        SpendReservation::Granted
    );
    s.spend_settle("acme", &[l], &Spend::default(), &spend(1, 0, 0, 0, 0))
        .await
        .unwrap();
    assert_eq!(spent(s, "acme", &["t/keep"]).await, [spend(3, 0, 0, 0, 0)]);
}

/// 200 reservations of one amount race against lines that hold exactly 50 of them (several tasks,
/// several stores on one backend when `stores` has more than one): exactly 50 are granted, and every
/// line holds exactly 50 amounts.
async fn spend_parallel_reservations_grant_exactly_the_limit(stores: Vec<Arc<Store>>) {
    let a = spend(1, 300, 700, 11, 1_234);
    let lines = Arc::new([
        line("t/race", limit(None, Some(50 * 1_000), None)),
        line("u/race/d/2026-12-07", limit(None, None, Some(50 * 1_234))),
        line("u/race/m/2026-12", limit(Some(50), None, None)),
        line("u/race/a", limit(Some(1_000), Some(1 << 40), Some(1 << 40))),
    ]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (s, lines) = (stores[i % stores.len()].clone(), lines.clone());
        tasks.push(tokio::spawn(async move {
            s.spend_reserve("acme", &lines[..], &a, 1_100)
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap() {
            SpendReservation::Granted => granted += 1,
            SpendReservation::NoRoom(used) => assert_eq!(used.len(), 4),
        }
    }
    assert_eq!(granted, 50, "exactly the limit");
    let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
    for s in &stores {
        assert_eq!(spent(s, "acme", &keys).await, [times(a, 50); 4]);
    }
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn counts_exactly_max_calls() {
                super::counts_exactly_max_calls(&super::$backend().store).await
            }
            #[tokio::test]
            async fn unlimited_tokens_count_every_call() {
                super::unlimited_tokens_count_every_call(&super::$backend().store).await
            }
            #[tokio::test]
            async fn tenants_never_share_counters() {
                super::tenants_never_share_counters(&super::$backend().store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn parallel_reservations_never_exceed_max() {
                let f = super::$backend();
                let store = Arc::new(f.store);
                super::parallel_reservations_never_exceed_max(store).await;
            }
            #[tokio::test]
            async fn refund_never_goes_below_zero() {
                super::refund_never_goes_below_zero(&super::$backend().store).await
            }
            #[tokio::test]
            async fn revoking_an_unseen_token() {
                super::revoking_an_unseen_token(&super::$backend().store).await
            }
            #[tokio::test]
            async fn revoking_a_used_token_keeps_its_count() {
                super::revoking_a_used_token_keeps_its_count(&super::$backend().store).await
            }
            #[tokio::test]
            async fn revoke_before_is_a_monotonic_tenant_mark() {
                super::revoke_before_is_a_monotonic_tenant_mark(&super::$backend().store).await
            }
            #[tokio::test]
            async fn usage_of_an_unknown_token_is_none() {
                super::usage_of_an_unknown_token_is_none(&super::$backend().store).await
            }
            #[tokio::test]
            async fn reservation_records_the_token_facts() {
                super::reservation_records_the_token_facts(&super::$backend().store).await
            }
            #[tokio::test]
            async fn a_token_facts_follow_its_latest_claims() {
                super::a_token_facts_follow_its_latest_claims(&super::$backend().store).await
            }
            #[tokio::test]
            async fn check_answers() {
                super::$backend().store.check().await.unwrap();
            }
        }
    };
}

conformance!(memory);
conformance!(sqlite);
conformance!(redis);

/// The spend-line checks, for every backend (`docs/budgets.md` §4).
macro_rules! spend_conformance {
    ($backend:ident, $name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn spend_is_all_or_nothing_across_lines() {
                super::spend_is_all_or_nothing_across_lines(&super::$backend().store).await
            }
            #[tokio::test]
            async fn spend_limit_of_n_allows_n_never_n_plus_one() {
                super::spend_limit_of_n_allows_n_never_n_plus_one(&super::$backend().store).await
            }
            #[tokio::test]
            async fn spend_each_unit_limits_on_its_own() {
                super::spend_each_unit_limits_on_its_own(&super::$backend().store).await
            }
            #[tokio::test]
            async fn spend_settles_down_and_up() {
                super::spend_settles_down_and_up(&super::$backend().store).await
            }
            #[tokio::test]
            async fn spend_values_are_exact_up_to_2_pow_53() {
                super::spend_values_are_exact_up_to_2_pow_53(&super::$backend().store).await
            }
            #[tokio::test]
            async fn spend_tenants_never_share_lines() {
                super::spend_tenants_never_share_lines(&super::$backend().store).await
            }
            #[tokio::test]
            async fn spend_keep_until_is_only_raised() {
                super::spend_keep_until_is_only_raised(&super::$backend().store).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn spend_parallel_reservations_grant_exactly_the_limit() {
                let f = super::$backend();
                let store = Arc::new(f.store);
                super::spend_parallel_reservations_grant_exactly_the_limit(vec![store]).await;
            }
        }
    };
}

spend_conformance!(memory, memory_spend);
spend_conformance!(sqlite, sqlite_spend);
spend_conformance!(redis, redis_spend);

// ---------------------------------------------------------------------------------------------------
// SQLite only
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_counts_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    {
        let s = Store::open_sqlite(&path, TOKEN_LIFE).unwrap();
        assert_eq!(s.kind(), "sqlite");
        for _ in 0..3 {
            granted(&s, tok("acme", "keep", Some(4)), 1_100).await;
        }
        s.revoke("acme", "gone").await.unwrap();
        s.revoke_before("globex", 1_500).await.unwrap();
    }
    let s = Store::open_sqlite(&path, TOKEN_LIFE).unwrap();
    assert_eq!(
        s.usage("acme", "keep").await.unwrap().unwrap().calls_used,
        3
    );
    assert_eq!(granted(&s, tok("acme", "keep", Some(4)), 1_200).await, 4);
    assert_eq!(
        s.reserve(tok("acme", "keep", Some(4)), 1_200)
            .await
            .unwrap(),
        Reservation::Exhausted,
        "the limit holds across a restart"
    );
    assert_eq!(
        s.reserve(tok("acme", "gone", None), 1_200).await.unwrap(),
        Reservation::Revoked
    );
    assert_eq!(
        s.reserve(tok("globex", "any", None), 1_200).await.unwrap(),
        Reservation::Revoked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_second_store_on_one_file_is_refused() {
    // A mistaken second relay on the same file never shares counters with the first: it cannot open
    // the file at all while the first holds it, and says why.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let a = Arc::new(Store::open_sqlite(&path, TOKEN_LIFE).unwrap());
    granted(&a, tok("acme", "shared", Some(5)), 1_100).await;
    let e = Store::open_sqlite(&path, TOKEN_LIFE).err().unwrap();
    assert!(
        e.to_string().contains("usage.db") && e.to_string().contains("in use by another process"),
        "{e}"
    );
    // The first store is untouched by the attempt and still counts exactly under load.
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = a.clone();
        tasks.push(tokio::spawn(async move {
            s.reserve(tok("acme", "shared", Some(5)), 1_100)
                .await
                .unwrap()
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += usize::from(matches!(t.await.unwrap(), Reservation::Granted { .. }));
    }
    assert_eq!(n, 4);
    // Dropping the store lets go of the file at once.
    drop(Arc::into_inner(a).unwrap());
    let b = Store::open_sqlite(&path, TOKEN_LIFE).unwrap();
    assert_eq!(
        b.usage("acme", "shared").await.unwrap().unwrap().calls_used,
        5
    );
}

#[test]
fn sqlite_a_second_relay_on_one_file_fails_at_start_naming_store_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let _first = Store::open_sqlite(&db, TOKEN_LIFE).unwrap();
    let cfg = dir.path().join("config.json");
    let config = serde_json::json!({
        "server": {"host": "127.0.0.1", "port": 0},
        "store": {"type": "sqlite", "path": db},
    });
    std::fs::write(&cfg, config.to_string()).unwrap();
    let rai = dir.path().join("t.rai");
    let mut seed = 7u8;
    let mut rng = |b: &mut [u8]| {
        for x in b.iter_mut() {
            seed = seed.wrapping_mul(13).wrapping_add(5);
            *x = seed;
        }
    };
    let r = relayapi::token::rai::generate_rai("http", "127.0.0.1", 8080, "acme", "k1", &mut rng);
    std::fs::write(&rai, relayapi::token::rai::to_json_pretty(&r)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .arg("--config")
        .arg(&cfg)
        .arg("--rai")
        .arg(&rai)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A relay that wrongly starts would serve forever: bound the wait and stop it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the second relay started on a file the first one holds");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("field `store.path`")
            && err.contains(&db.display().to_string())
            && err.contains("in use by another process"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_failing_reservation_never_fails_the_others_in_its_batch() {
    // Reservations that arrive together share one transaction. One that fails on its own (here an
    // expiry SQLite cannot hold) must be answered with its error while the others around it count.
    let f = sqlite();
    let s = Arc::new(f.store);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = tok("acme", "mixed", Some(50));
            if i % 3 == 0 {
                t.jti = "broken";
                t.exp = u64::MAX;
            }
            (i % 3 == 0, s.reserve(t, 1_100).await)
        }));
    }
    let mut used = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (true, r) => assert!(r.is_err(), "{r:?}"),
            (false, Ok(Reservation::Granted { used: n })) => used.push(n),
            (false, Ok(Reservation::Exhausted)) => {}
            (false, r) => panic!("{r:?}"),
        }
    }
    used.sort_unstable();
    assert_eq!(
        used,
        (1..=50).collect::<Vec<_>>(),
        "each count handed out once"
    );
    assert_eq!(
        s.usage("acme", "mixed").await.unwrap().unwrap().calls_used,
        50
    );
    assert_eq!(s.usage("acme", "broken").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_forgets_tokens_a_day_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_sqlite(&dir.path().join("usage.db"), TOKEN_LIFE).unwrap();
    granted(&s, tok("acme", "short", None), 1_100).await;
    s.revoke("acme", "revoked-unseen").await.unwrap();
    // Still within the retention: kept.
    let later = 10_000 + RETAIN_AFTER_EXPIRY - 1;
    let mut other = tok("acme", "other", None);
    other.exp = later + 10_000;
    granted(&s, other, later).await;
    assert!(s.usage("acme", "short").await.unwrap().is_some());
    // An hour later the sweep runs again and the expired token's record goes.
    granted(&s, other, later + 3_600).await;
    assert_eq!(s.usage("acme", "short").await.unwrap(), None);
    assert!(
        s.usage("acme", "revoked-unseen")
            .await
            .unwrap()
            .unwrap()
            .revoked,
        "a revocation of an unseen token is kept as long as a token may live"
    );
}

#[tokio::test]
async fn sqlite_spend_lines_survive_reopening_and_go_after_keep_until() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let a = spend(1, 10, 20, 0, 30);
    let mut l = line("u/ann/d/2026-12-07", limit(Some(3), None, None));
    l.keep_until = 5_000;
    let other = [line("u/ann/a", SpendLimit::default())];
    {
        let s = Store::open_sqlite(&path, TOKEN_LIFE).unwrap();
        // The first reservation also runs the first clean-up (next one an hour later).
        let r = s.spend_reserve("acme", &[l.clone()], &a, 1_000).await;
        assert_eq!(r.unwrap(), SpendReservation::Granted);
        let mut earlier = l.clone();
        earlier.keep_until = 3_000;
        let r = s.spend_reserve("acme", &[earlier], &a, 1_000).await;
        assert_eq!(r.unwrap(), SpendReservation::Granted);
        let mut later = l.clone();
        later.keep_until = 20_000;
        s.spend_settle("acme", &[later], &Spend::default(), &Spend::default())
            .await
            .unwrap();
    }
    let s = Store::open_sqlite(&path, TOKEN_LIFE).unwrap();
    assert_eq!(
        spent(&s, "acme", &[&l.key]).await,
        [times(a, 2)],
        "kept across a restart"
    );
    // Past both earlier keep_until values, before the latest: a clean-up keeps the line.
    let r = s.spend_reserve("acme", &other, &a, 6_000).await;
    assert_eq!(r.unwrap(), SpendReservation::Granted);
    assert_eq!(spent(&s, "acme", &[&l.key]).await, [times(a, 2)]);
    // On its keep_until: still kept.
    s.spend_reserve("acme", &other, &a, 20_000).await.unwrap();
    assert_eq!(spent(&s, "acme", &[&l.key]).await, [times(a, 2)]);
    // After it, at the next clean-up (an hour on): gone, and the limit starts over.
    s.spend_reserve("acme", &other, &a, 23_600).await.unwrap();
    assert_eq!(spent(&s, "acme", &[&l.key]).await, [Spend::default()]);
    assert_eq!(
        spent(&s, "acme", &[&other[0].key]).await,
        [times(a, 3)],
        "a line kept longer stays"
    );
}

#[tokio::test]
async fn sqlite_a_file_of_schema_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // What a relay before spend limits wrote.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE token_usage (
             tenant TEXT NOT NULL, jti TEXT NOT NULL, calls_used INTEGER NOT NULL DEFAULT 0,
             max_calls INTEGER, first_used_at INTEGER, last_used_at INTEGER, expires_at INTEGER,
             issued_at INTEGER, revoked INTEGER NOT NULL DEFAULT 0, forget_at INTEGER NOT NULL,
             PRIMARY KEY (tenant, jti)) WITHOUT ROWID;
         CREATE INDEX token_usage_forget_at ON token_usage (forget_at);
         CREATE TABLE tenant_revocation (
             tenant TEXT PRIMARY KEY, revoked_before INTEGER NOT NULL) WITHOUT ROWID;
         INSERT INTO token_usage (tenant, jti, calls_used, max_calls, expires_at, issued_at,
             forget_at) VALUES ('acme', 'old', 2, 5, 10000, 1000, 99999);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(c);
    {
        let s = Store::open_sqlite(&path, TOKEN_LIFE).unwrap();
        assert_eq!(s.usage("acme", "old").await.unwrap().unwrap().calls_used, 2);
        let r = s
            .spend_reserve("acme", &[open_line("t/old")], &spend(1, 2, 3, 4, 5), 1_100)
            .await;
        assert_eq!(r.unwrap(), SpendReservation::Granted);
        assert_eq!(granted(&s, tok("acme", "old", Some(5)), 1_100).await, 3);
    }
    let c = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, 3,
        "a relay of schema 1 or 2 now refuses the file instead of ignoring budgets or the grant journal"
    );
}

#[tokio::test]
async fn sqlite_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("usage.db");
    let e = Store::open_sqlite(&missing, TOKEN_LIFE).err().unwrap();
    assert!(e.to_string().contains("no-such-dir"), "{e}");

    let newer = dir.path().join("newer.db");
    let c = rusqlite::Connection::open(&newer).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = Store::open_sqlite(&newer, TOKEN_LIFE).err().unwrap();
    assert!(
        e.to_string().contains("newer.db") && e.to_string().contains("newer relay"),
        "{e}"
    );
}

#[test]
fn sqlite_file_is_in_wal_mode_with_normal_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let s = Store::open_sqlite(&path, TOKEN_LIFE).unwrap();
    // The store holds the file while open; look once it has let go.
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "the mode is stored in the file");
}

// ---------------------------------------------------------------------------------------------------
// Redis only
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn redis_keys_expire_with_the_token() {
    let server = RedisServer::start();
    let s = Store::open_redis(
        redis_options(&server, "ttl:", Duration::from_secs(2)),
        TOKEN_LIFE,
    )
    .unwrap();
    granted(&s, tok("acme", "t1", None), 4_000).await;
    let ttl: u64 = server
        .command("TTL ttl:tok:{acme:t1}")
        .trim_start_matches(':')
        .parse()
        .unwrap();
    let want = 10_000 - 4_000 + RETAIN_AFTER_EXPIRY;
    assert!(
        (want - 5..=want).contains(&ttl),
        "TTL {ttl}, expected about {want}"
    );

    s.revoke("acme", "unseen").await.unwrap();
    let ttl: u64 = server
        .command("TTL ttl:tok:{acme:unseen}")
        .trim_start_matches(':')
        .parse()
        .unwrap();
    let want = TOKEN_LIFE + RETAIN_AFTER_EXPIRY;
    assert!(
        (want - 5..=want).contains(&ttl),
        "TTL {ttl}, expected about {want}"
    );
    s.revoke("acme", "t1").await.unwrap();
    let ttl: u64 = server
        .command("TTL ttl:tok:{acme:t1}")
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(
        ttl <= 10_000 - 4_000 + RETAIN_AFTER_EXPIRY,
        "revoking a seen token keeps its expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_instances_share_limits_and_revocations() {
    let server = RedisServer::start();
    let open = |prefix: &str| {
        Arc::new(
            Store::open_redis(
                redis_options(&server, prefix, Duration::from_secs(2)),
                TOKEN_LIFE,
            )
            .unwrap(),
        )
    };
    let (a, b, elsewhere) = (open("shared:"), open("shared:"), open("other-app:"));
    instances_share_limits_and_revocations(a, b, elsewhere).await;
}

/// Two stores with one key prefix are two relays on one Redis (server or Cluster): 200 racing
/// reservations of a 5-call token grant exactly 5, a revocation through one is refused by the other,
/// and a third store with another prefix is another namespace.
async fn instances_share_limits_and_revocations(
    a: Arc<Store>,
    b: Arc<Store>,
    elsewhere: Arc<Store>,
) {
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.reserve(tok("acme", "s", Some(5)), 1_100).await.unwrap()
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += usize::from(matches!(t.await.unwrap(), Reservation::Granted { .. }));
    }
    assert_eq!(n, 5, "exactly the limit across two instances");

    a.revoke("acme", "r").await.unwrap();
    assert_eq!(
        b.reserve(tok("acme", "r", None), 1_100).await.unwrap(),
        Reservation::Revoked
    );
    b.revoke_before("acme", 1_001).await.unwrap();
    assert_eq!(
        a.reserve(tok("acme", "new-id", None), 1_100).await.unwrap(),
        Reservation::Revoked
    );
    assert_eq!(
        granted(&elsewhere, tok("acme", "s", Some(5)), 1_100).await,
        1,
        "another key prefix is another namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_two_relays_share_a_spend_line_exactly() {
    // Two stores on one server are two relays: 200 reservations split between them against lines
    // that hold 50 grant exactly 50, and both read the same lines.
    let server = RedisServer::start();
    let open = || {
        Arc::new(
            Store::open_redis(
                redis_options(&server, "shared:", Duration::from_secs(2)),
                TOKEN_LIFE,
            )
            .unwrap(),
        )
    };
    spend_parallel_reservations_grant_exactly_the_limit(vec![open(), open()]).await;
    let elsewhere = Store::open_redis(
        redis_options(&server, "other-app:", Duration::from_secs(2)),
        TOKEN_LIFE,
    )
    .unwrap();
    assert_eq!(
        spent(&elsewhere, "acme", &["t/race"]).await,
        [Spend::default()],
        "another key prefix is another namespace"
    );
}

/// Seconds until `key` expires on the server.
fn ttl(server: &RedisServer, key: &str) -> i64 {
    server
        .command(&format!("TTL {key}"))
        .trim_start_matches(':')
        .parse()
        .unwrap()
}

#[tokio::test]
async fn redis_spend_lines_expire_at_keep_until() {
    let server = RedisServer::start();
    let s = Store::open_redis(
        redis_options(&server, "ttl:", Duration::from_secs(2)),
        TOKEN_LIFE,
    )
    .unwrap();
    // Redis forgets lines on its own clock: keep_until is a real time here.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let a = spend(1, 2, 3, 4, 5);
    let mut l = line("u/ann/d/2026-12-07", limit(Some(10), None, None));
    let key = "ttl:sp:{acme:u/ann}/d/2026-12-07";
    l.keep_until = now + 1_000;
    assert_eq!(
        reserve_spend(&s, "acme", std::slice::from_ref(&l), a).await,
        SpendReservation::Granted
    );
    assert!(
        (995..=1_000).contains(&ttl(&server, key)),
        "{}",
        ttl(&server, key)
    );
    // An earlier keep_until never shortens the line's life.
    l.keep_until = now + 10;
    assert_eq!(
        reserve_spend(&s, "acme", std::slice::from_ref(&l), a).await,
        SpendReservation::Granted
    );
    s.spend_settle("acme", std::slice::from_ref(&l), &a, &a)
        .await
        .unwrap();
    assert!(
        (995..=1_000).contains(&ttl(&server, key)),
        "{}",
        ttl(&server, key)
    );
    // A later one extends it, by settlement as by reservation.
    l.keep_until = now + 5_000;
    s.spend_settle("acme", std::slice::from_ref(&l), &a, &a)
        .await
        .unwrap();
    assert!(
        (4_995..=5_000).contains(&ttl(&server, key)),
        "{}",
        ttl(&server, key)
    );
    assert_eq!(spent(&s, "acme", &[&l.key]).await, [times(a, 2)]);
    // Past keep_until the line is gone and its limit starts over.
    let mut old = line("u/ann/d/2026-12-05", limit(Some(1), None, None));
    old.keep_until = now - 1;
    assert_eq!(
        reserve_spend(&s, "acme", std::slice::from_ref(&old), a).await,
        SpendReservation::Granted
    );
    assert_eq!(
        ttl(&server, "ttl:sp:{acme:u/ann}/d/2026-12-05"),
        -2,
        "no such key"
    );
    assert_eq!(spent(&s, "acme", &[&old.key]).await, [Spend::default()]);
}

#[tokio::test]
async fn redis_down_refuses_spend_reservations() {
    let mut server = RedisServer::start();
    let s = Store::open_redis(
        redis_options(&server, "down:", Duration::from_secs(1)),
        TOKEN_LIFE,
    )
    .unwrap();
    let l = [line("t/d", limit(Some(5), None, None))];
    let a = spend(1, 0, 0, 0, 0);
    assert_eq!(
        reserve_spend(&s, "acme", &l, a).await,
        SpendReservation::Granted
    );
    server.stop();
    assert!(s.spend_reserve("acme", &l, &a, 1_100).await.is_err());
    assert!(s.spend_settle("acme", &l, &a, &a).await.is_err());
    assert!(s.spend_get("acme", &["t/d"]).await.is_err());
}

#[tokio::test]
async fn redis_down_is_an_error_never_a_grant_then_recovers() {
    let mut server = RedisServer::start();
    let s = Store::open_redis(
        redis_options(&server, "down:", Duration::from_secs(1)),
        TOKEN_LIFE,
    )
    .unwrap();
    granted(&s, tok("acme", "d", None), 1_100).await;
    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        assert!(s.reserve(tok("acme", "d", None), 1_100).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    assert!(s.usage("acme", "d").await.is_err());
    assert!(s.refund("acme", "d").await.is_err());
    assert!(s.check().await.is_err());
    server.restart();
    // The server came back empty (no persistence); the store reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.reserve(tok("acme", "d", None), 1_100).await {
            Ok(r) => {
                assert_eq!(r, Reservation::Granted { used: 1 });
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no reconnection: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_hung_server_times_out() {
    let server = RedisServer::start();
    let s = Store::open_redis(
        redis_options(&server, "hung:", Duration::from_secs(1)),
        TOKEN_LIFE,
    )
    .unwrap();
    granted(&s, tok("acme", "h", None), 1_100).await;
    server.freeze(true);
    let started = Instant::now();
    let r = s.reserve(tok("acme", "h", None), 1_100).await;
    let waited = started.elapsed();
    server.freeze(false);
    assert!(r.is_err(), "a hung server never grants: {r:?}");
    assert!(
        waited < Duration::from_secs(3),
        "bounded by the command timeout, waited {waited:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.reserve(tok("acme", "h", None), 1_100).await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after the thaw");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_bad_url_is_refused_without_echoing_it() {
    let e = Store::open_redis(
        RedisOptions {
            target: RedisTarget::Server("redis://user:hunter2@[bad".into()),
            key_prefix: "x:".into(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            replica_acks: 0,
        },
        TOKEN_LIFE,
    )
    .err()
    .unwrap();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

// ---------------------------------------------------------------------------------------------------
// Redis Cluster: the whole suite on one 3-master cluster (each check under its own key prefix)
// ---------------------------------------------------------------------------------------------------

fn cluster_store(cluster: &RedisCluster, prefix: &str) -> Arc<Store> {
    let opts = RedisOptions {
        target: RedisTarget::Cluster(cluster.urls()),
        key_prefix: prefix.into(),
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        replica_acks: 0,
    };
    Arc::new(Store::open_redis(opts, TOKEN_LIFE).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_passes_the_suite_and_two_relays_share_exact_limits() {
    let cluster = RedisCluster::start();
    let open = |prefix: &str| cluster_store(&cluster, prefix);
    open("c0:").check().await.unwrap();
    counts_exactly_max_calls(&open("c1:")).await;
    unlimited_tokens_count_every_call(&open("c2:")).await;
    tenants_never_share_counters(&open("c3:")).await;
    parallel_reservations_never_exceed_max(open("c4:")).await;
    refund_never_goes_below_zero(&open("c5:")).await;
    revoking_an_unseen_token(&open("c6:")).await;
    revoking_a_used_token_keeps_its_count(&open("c7:")).await;
    revoke_before_is_a_monotonic_tenant_mark(&open("c8:")).await;
    usage_of_an_unknown_token_is_none(&open("c9:")).await;
    reservation_records_the_token_facts(&open("c10:")).await;
    a_token_facts_follow_its_latest_claims(&open("c11:")).await;
    spend_is_all_or_nothing_across_lines(&open("s1:")).await;
    spend_limit_of_n_allows_n_never_n_plus_one(&open("s2:")).await;
    spend_each_unit_limits_on_its_own(&open("s3:")).await;
    spend_settles_down_and_up(&open("s4:")).await;
    spend_values_are_exact_up_to_2_pow_53(&open("s5:")).await;
    spend_tenants_never_share_lines(&open("s6:")).await;
    spend_keep_until_is_only_raised(&open("s7:")).await;
    // Two relays: two stores, one prefix.
    instances_share_limits_and_revocations(open("two:"), open("two:"), open("other:")).await;
    spend_parallel_reservations_grant_exactly_the_limit(vec![open("two:"), open("two:")]).await;
    // The keys spread: every master holds some (a script crossing slots would have failed above).
    for n in &cluster.nodes {
        let keys: u64 = n.command("DBSIZE").trim_start_matches(':').parse().unwrap();
        assert!(keys > 0, "node {} holds no key", n.port);
    }
}
