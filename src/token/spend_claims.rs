//! The spend-limit claims `bud` and `uq` (`docs/token-format.md` §5.1.20-21, `docs/budgets.md` §1):
//! their types and the rules the types do not already enforce. The other claims are
//! `token/claims.rs`'s (which calls [`validate_spend`] and turns its answer into a `ClaimError`);
//! reading these from JSON is `token/claims_json.rs`'s, writing them `token/canonical.rs`'s.

/// Largest spend amount: below 2^53 like every integer claim, so JavaScript holds it exactly (§5.1.4).
const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// Most entries of `uq`: one per window (§5.1.21).
pub const MAX_QUOTAS: usize = 3;

/// The token's own spend budget over its life (§5.1.20, `docs/budgets.md`): input plus output tokens,
/// and money in micro-units of the price table's currency. At least one is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub tok: Option<u64>,
    pub cost: Option<u64>,
}

/// A window of an end user's quota: UTC calendar day, UTC calendar month, or all time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Day,
    Month,
    All,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
            Window::All => "all",
        }
    }

    /// The window a claim names: exactly `"day"`, `"month"` or `"all"` (no other case or spelling).
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "day" => Some(Window::Day),
            "month" => Some(Window::Month),
            "all" => Some(Window::All),
            _ => None,
        }
    }
}

/// One quota of the end user named by `uid`, shared by all of that user's tokens in the tenant
/// (§5.1.21): at most `calls` calls, `tok` tokens and `cost` micro-units per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserQuota {
    pub w: Window,
    pub calls: Option<u64>,
    pub tok: Option<u64>,
    pub cost: Option<u64>,
}

/// §5.1.4: every spend amount is 1..=2^53-1 (a zero limit would be a token that can do nothing, and a
/// minter that means "unlimited" leaves the member out).
fn amount_ok(v: Option<u64>) -> bool {
    v.is_none_or(|n| (1..=MAX_AMOUNT).contains(&n))
}

/// A broken rule: the member and what a valid value looks like.
pub type SpendRuleError = (&'static str, &'static str);

fn broken(member: &'static str, expected: &'static str) -> SpendRuleError {
    (member, expected)
}

/// §5.1.20 and §5.1.21 for the claims `bud` and `uq` of a token whose `uid` is `uid`.
pub fn validate_spend(
    bud: Option<&Budget>,
    uq: Option<&[UserQuota]>,
    uid: Option<&str>,
) -> Result<(), SpendRuleError> {
    if let Some(b) = bud {
        // `"bud":{}` would be a second spelling of "no budget".
        if (b.tok.is_none() && b.cost.is_none()) || !amount_ok(b.tok) || !amount_ok(b.cost) {
            return Err(broken(
                "bud",
                "an object with `tok` and/or `cost`, each an integer from 1 to 2^53-1",
            ));
        }
    }
    let Some(quotas) = uq else {
        return Ok(());
    };
    if !(1..=MAX_QUOTAS).contains(&quotas.len()) {
        return Err(broken(
            "uq",
            "an array of 1 to 3 quotas, at most one per window",
        ));
    }
    for (i, q) in quotas.iter().enumerate() {
        if q.calls.is_none() && q.tok.is_none() && q.cost.is_none() {
            return Err(broken(
                "uq",
                "quotas that each set at least one of `calls`, `tok`, `cost`",
            ));
        }
        if !(amount_ok(q.calls) && amount_ok(q.tok) && amount_ok(q.cost)) {
            return Err(broken(
                "uq",
                "`calls`, `tok` and `cost` each an integer from 1 to 2^53-1",
            ));
        }
        // Two quotas on one window would be two limits on one counter: say it once.
        if quotas[..i].iter().any(|p| p.w == q.w) {
            return Err(broken("uq", "no window (`w`) twice"));
        }
    }
    // A user quota is keyed by the user: without `uid` there is nobody to count it against.
    if uid.is_none() {
        return Err(broken("uq", "only together with `uid`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::{canonical_json, ClaimError, Claims};

    const JTI: &str = "0123456789abcdef0123456789abcdef";

    fn base() -> String {
        format!(r#"{{"jti":"{JTI}","tid":"acme","iat":10,"exp":20,"prv":"openai","kref":"main""#)
    }

    fn parse(extra: &str) -> Result<Claims, ClaimError> {
        Claims::from_json(&format!("{},{extra}}}", base()))
    }

    fn quota(w: Window, calls: Option<u64>, tok: Option<u64>, cost: Option<u64>) -> UserQuota {
        UserQuota {
            w,
            calls,
            tok,
            cost,
        }
    }

    #[test]
    fn budgets_parse_in_any_order_and_write_tok_first() {
        let c = parse(r#""bud":{"cost":5,"tok":7}"#).unwrap();
        assert_eq!(
            c.bud,
            Some(Budget {
                tok: Some(7),
                cost: Some(5)
            })
        );
        assert!(canonical_json(&c).ends_with(r#""kref":"main","bud":{"tok":7,"cost":5}}"#));
        let c = parse(r#""bud":{"cost":9007199254740991}"#).unwrap();
        assert_eq!(c.bud.unwrap().tok, None);
        assert!(canonical_json(&c).ends_with(r#""bud":{"cost":9007199254740991}}"#));
    }

    #[test]
    fn bad_budgets_are_refused() {
        for bad in [
            r#""bud":{}"#,
            r#""bud":{"tok":0}"#,
            r#""bud":{"cost":9007199254740992}"#,
            r#""bud":{"tok":1,"calls":1}"#,
            r#""bud":{"tok":1,"tok":2}"#,
            r#""bud":{"tok":null}"#,
            r#""bud":{"tok":"1"}"#,
            r#""bud":{"tok":1.0}"#,
            r#""bud":[1,2]"#,
            r#""bud":null"#,
            r#""bud":5"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quotas_keep_their_order_and_write_w_calls_tok_cost() {
        let c = parse(
            r#""uid":"u1","uq":[{"cost":3,"w":"month"},{"tok":2,"calls":1,"w":"all","cost":4},{"w":"day","calls":9}]"#,
        )
        .unwrap();
        let uq = c.uq.as_deref().unwrap();
        assert_eq!(
            uq,
            [
                quota(Window::Month, None, None, Some(3)),
                quota(Window::All, Some(1), Some(2), Some(4)),
                quota(Window::Day, Some(9), None, None),
            ]
        );
        assert!(canonical_json(&c).ends_with(
            r#""uid":"u1","uq":[{"w":"month","cost":3},{"w":"all","calls":1,"tok":2,"cost":4},{"w":"day","calls":9}]}"#
        ));
        assert_eq!(Claims::from_json(&canonical_json(&c)), Ok(c));
    }

    #[test]
    fn bad_quotas_are_refused() {
        for bad in [
            r#""uid":"u","uq":[]"#,
            r#""uid":"u","uq":[{"w":"day"}]"#,
            r#""uid":"u","uq":[{"calls":1}]"#,
            r#""uid":"u","uq":[{"w":"week","calls":1}]"#,
            r#""uid":"u","uq":[{"w":"Day","calls":1}]"#,
            r#""uid":"u","uq":[{"w":1,"calls":1}]"#,
            r#""uid":"u","uq":[{"w":"day","calls":0}]"#,
            r#""uid":"u","uq":[{"w":"day","tok":9007199254740992}]"#,
            r#""uid":"u","uq":[{"w":"day","calls":1,"max":1}]"#,
            r#""uid":"u","uq":[{"w":"day","calls":1,"w":"all"}]"#,
            r#""uid":"u","uq":[{"w":"day","calls":null}]"#,
            r#""uid":"u","uq":[{"w":"day","calls":1},{"w":"day","tok":1}]"#,
            r#""uid":"u","uq":[{"w":"day","calls":1},{"w":"month","calls":1},{"w":"all","calls":1},{"w":"day","calls":2}]"#,
            r#""uid":"u","uq":[["day",1]]"#,
            r#""uid":"u","uq":{"w":"day","calls":1}"#,
            r#""uid":"u","uq":null"#,
            r#""uq":[{"w":"day","calls":1}]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rules_name_the_member() {
        let q = [quota(Window::Day, Some(1), None, None)];
        assert_eq!(validate_spend(None, Some(&q), Some("u")), Ok(()));
        assert_eq!(
            validate_spend(None, Some(&q), None),
            Err(("uq", "only together with `uid`"))
        );
        let e = validate_spend(Some(&Budget::default()), None, None).unwrap_err();
        assert_eq!(e.0, "bud");
        let three = [
            quota(Window::All, None, Some(1), None),
            quota(Window::Day, None, None, Some(1)),
            quota(Window::Month, Some(MAX_AMOUNT), None, None),
        ];
        assert_eq!(validate_spend(None, Some(&three), Some("u")), Ok(()));
    }
}
