//! The spend lines a token's calls are charged to (`docs/budgets.md` §4): the token's own `t/<jti>`
//! and, for each of its end-user quotas, `u/<uid>/d/<YYYY-MM-DD>`, `u/<uid>/m/<YYYY-MM>` or `u/<uid>/a`,
//! with their limits and how long the store must keep them. Windows are UTC calendar periods taken at
//! the time of the reservation; the settlement goes to the same lines even if it lands in the next
//! period.

use crate::calendar::{day_label, month_label, next_day, next_month};
use crate::store::{keep_token_for, SpendLimit, SpendLine, MAX_TIME, RETAIN_AFTER_EXPIRY};
use crate::token::format::{Claims, Window};

/// The line key of a user's window at `now`.
pub fn user_key(uid: &str, w: Window, now: u64) -> String {
    match w {
        Window::Day => format!("u/{uid}/d/{}", day_label(now)),
        Window::Month => format!("u/{uid}/m/{}", month_label(now)),
        Window::All => format!("u/{uid}/a"),
    }
}

/// When a user's window line may be forgotten: a day after its period ends; `all` lines are kept as
/// long as the store keeps anything (2^32 seconds).
pub fn user_keep_until(w: Window, now: u64) -> u64 {
    match w {
        Window::Day => next_day(now) + RETAIN_AFTER_EXPIRY,
        Window::Month => next_month(now) + RETAIN_AFTER_EXPIRY,
        Window::All => now.saturating_add(1 << 32).min(MAX_TIME),
    }
}

/// When the window holding `now` ends (the `Retry-After` of a refused call): `None` for `all`.
pub fn window_end(w: Window, now: u64) -> Option<u64> {
    match w {
        Window::Day => Some(next_day(now)),
        Window::Month => Some(next_month(now)),
        Window::All => None,
    }
}

/// The token's own line key (built without `format!`: every call needs it).
pub fn token_key(jti: &str) -> String {
    let mut key = String::with_capacity(2 + jti.len());
    key.push_str("t/");
    key.push_str(jti);
    key
}

/// The token's own line at `now`, with its `bud` (unlimited when the token has none: it still records
/// usage for the usage document). All a call of a token without a budget is charged to.
pub fn token_line(claims: &Claims, now: u64) -> SpendLine {
    SpendLine {
        key: token_key(&claims.jti),
        limit: SpendLimit {
            calls: None,
            tokens: claims.bud.and_then(|b| b.tok),
            cost: claims.bud.and_then(|b| b.cost),
        },
        keep_until: now.saturating_add(keep_token_for(claims.exp, now)),
    }
}

/// Every line a call of `claims` is charged to at `now`, the token's own first ([`token_line`]), then
/// the user's quotas in the order the token lists them.
pub fn lines_for(claims: &Claims, now: u64) -> Vec<SpendLine> {
    let mut lines = Vec::with_capacity(1 + claims.uq.as_ref().map_or(0, Vec::len));
    lines.push(token_line(claims, now));
    if let (Some(uid), Some(quotas)) = (&claims.uid, &claims.uq) {
        for q in quotas {
            lines.push(SpendLine {
                key: user_key(uid, q.w, now),
                limit: SpendLimit {
                    calls: q.calls,
                    tokens: q.tok,
                    cost: q.cost,
                },
                keep_until: user_keep_until(q.w, now),
            });
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::{Budget, UserQuota};

    #[test]
    fn a_token_with_quotas_is_charged_to_its_line_and_its_users() {
        let now = 1_796_607_591; // 2026-12-07T01:39:51Z
        let mut c = Claims::new(
            "0".repeat(32),
            "acme".into(),
            now - 10,
            now + 3600,
            "openai".into(),
        );
        c.bud = Some(Budget {
            tok: Some(1000),
            cost: None,
        });
        c.uid = Some("user 7".into());
        c.uq = Some(vec![
            UserQuota {
                w: Window::Day,
                calls: Some(5),
                tok: None,
                cost: None,
            },
            UserQuota {
                w: Window::All,
                calls: None,
                tok: None,
                cost: Some(9),
            },
        ]);
        let lines = lines_for(&c, now);
        let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                &format!("t/{}", "0".repeat(32)),
                "u/user 7/d/2026-12-07",
                "u/user 7/a"
            ]
        );
        assert_eq!(lines[0].limit.tokens, Some(1000));
        assert_eq!(lines[1].limit.calls, Some(5));
        assert_eq!(lines[2].limit.cost, Some(9));
        assert!(lines[0].keep_until >= now + 3600 + RETAIN_AFTER_EXPIRY);
        assert_eq!(window_end(Window::Day, now), Some(next_day(now)));
        assert_eq!(user_key("u", Window::Month, now), "u/u/m/2026-12");
    }

    #[test]
    fn a_token_without_budget_still_has_its_line() {
        let c = Claims::new("a".repeat(32), "t".into(), 0, 10, "openai".into());
        let lines = lines_for(&c, 5);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].limit, SpendLimit::default());
        assert_eq!(lines[0], token_line(&c, 5));
        assert_eq!(token_key("ab"), "t/ab");
    }
}
