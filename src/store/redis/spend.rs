//! Spend lines on Redis (`docs/budgets.md` §4): reservation, settlement and reading, one Lua script
//! each. A reservation is decided and written atomically per slot (the token's line; an end user's
//! lines), so relays sharing Redis share one user's quota exactly, and on a Cluster no script crosses
//! slots.
//!
//! Each line is a hash (its key in `keys.rs`: one slot per token line, one per end user) with `calls`, `input`, `output`,
//! `cached_input`, `cost` and `keep` (the largest `keep_until` seen); the key expires at `keep`
//! (`EXPIREAT`, on the server's clock). Lua numbers are doubles, exact only up to 2^53, so the
//! scripts never form a sum they must compare above that: every stored member is at most 2^53 - 1,
//! amounts are sent clamped to 2^53 - 1 (a sum at or past 2^53 is capped to 2^53 - 1 anyway), and a
//! limit is sent as the room it leaves once the amount is taken, split in two halves of at most 2^53
//! each, so the check `x + y <= room` runs as `x - half1 <= half2 - y`, whose two sides are exact.

use crate::store::redis::keys::once;
use crate::store::redis::RedisStore;
use crate::store::{Spend, SpendLimit, SpendLine, SpendReservation, StoreError, MAX_TIME};

/// The helpers every spend script starts with. `used` reads a line's members (zero when missing);
/// `fits` is the exact limit check described above (`''` = unlimited); `keep` raises the line's
/// `keep` to `k` if higher and sets the key's expiry to it.
const PRELUDE: &str = r"
local M = 9007199254740991
local function used(key)
  local h = redis.call('HMGET', key, 'calls', 'input', 'output', 'cached_input', 'cost')
  for j = 1, 5 do h[j] = tonumber(h[j] or '0') end
  return h
end
local function fits(x, y, half1, half2)
  return half1 == '' or x - tonumber(half1) <= tonumber(half2) - y
end
local function store(key, v)
  redis.call('HSET', key, 'calls', string.format('%.0f', v[1]), 'input', string.format('%.0f', v[2]),
    'output', string.format('%.0f', v[3]), 'cached_input', string.format('%.0f', v[4]),
    'cost', string.format('%.0f', v[5]))
end
local function keep(key, k)
  local cur = tonumber(redis.call('HGET', key, 'keep') or '0')
  if tonumber(k) > cur then
    redis.call('HSET', key, 'keep', k)
    cur = tonumber(k)
  end
  redis.call('EXPIREAT', key, string.format('%.0f', cur))
end
";

/// KEYS: the lines. ARGV: the amount's five members, then for each line seven values: the calls,
/// tokens and cost room halves, and `keep_until`. Answers `{1}` when granted, or `{0}` followed by
/// every line's five members when a line has no room (nothing written).
const RESERVE: &str = r"
local out = {0}
local room = true
for i = 1, #KEYS do
  local u = used(KEYS[i])
  local b = 5 + (i - 1) * 7
  if not (fits(u[1], 0, ARGV[b + 1], ARGV[b + 2]) and fits(u[2], u[3], ARGV[b + 3], ARGV[b + 4])
      and fits(u[5], 0, ARGV[b + 5], ARGV[b + 6])) then
    room = false
  end
  for j = 1, 5 do out[#out + 1] = u[j] end
end
if not room then return out end
for i = 1, #KEYS do
  -- Read again: a line named twice takes the amount twice, as in every backend.
  local u = used(KEYS[i])
  for j = 1, 5 do u[j] = math.min(M, u[j] + tonumber(ARGV[j])) end
  store(KEYS[i], u)
  keep(KEYS[i], ARGV[5 + i * 7])
end
return {1}
";

/// KEYS: the lines. ARGV: the five signed changes (each within ±(2^53 - 1)), then each line's
/// `keep_until`. Every member becomes `max(0, min(2^53 - 1, used + change))`.
const SETTLE: &str = r"
for i = 1, #KEYS do
  local u = used(KEYS[i])
  for j = 1, 5 do u[j] = math.max(0, math.min(M, u[j] + tonumber(ARGV[j]))) end
  store(KEYS[i], u)
  keep(KEYS[i], ARGV[5 + i])
end
return 0
";

/// KEYS: the lines. Answers their five members each, in order.
const GET: &str = r"
local out = {}
for i = 1, #KEYS do
  local u = used(KEYS[i])
  for j = 1, 5 do out[#out + 1] = u[j] end
end
return out
";

/// The scripts' full texts, each with the prelude; the two that count run once per operation.
pub(super) fn scripts() -> [String; 3] {
    [
        once(&format!("{PRELUDE}{RESERVE}")),
        once(&format!("{PRELUDE}{SETTLE}")),
        format!("{PRELUDE}{GET}"),
    ]
}

/// The room a limit leaves once `amount` is taken, as the two halves the scripts compare with:
/// `["", ""]` when unlimited, `["-1", "0"]` when the amount alone exceeds the limit (no line fits
/// it), otherwise `room` capped at 2^54 (above any `x + y` the store holds) and split so that
/// `half1 + half2 = room` with each half at most 2^53.
fn room(limit: Option<u64>, amount: u128) -> [String; 2] {
    let Some(limit) = limit else {
        return [String::new(), String::new()];
    };
    let Some(room) = u128::from(limit).checked_sub(amount) else {
        return ["-1".into(), "0".into()];
    };
    let room = room.min(1 << 54);
    let half1 = room.min(1 << 53);
    [half1.to_string(), (room - half1).to_string()]
}

/// The three units' room halves for one line: calls, tokens (input plus output), cost.
fn rooms(limit: &SpendLimit, amount: &Spend) -> [String; 6] {
    let [c1, c2] = room(limit.calls, amount.calls.into());
    let tokens = u128::from(amount.input) + u128::from(amount.output);
    let [t1, t2] = room(limit.tokens, tokens);
    let [m1, m2] = room(limit.cost, amount.cost.into());
    [c1, c2, t1, t2, m1, m2]
}

fn members(s: &Spend) -> [u64; 5] {
    [s.calls, s.input, s.output, s.cached_input, s.cost]
}

/// `actual - reserved` per member, clamped to ±(2^53 - 1): stored members are within 0..=2^53-1,
/// so the clamp changes no result, and every value is exact in a double.
fn changes(actual: &Spend, reserved: &Spend) -> [String; 5] {
    let m = i128::from(MAX_TIME);
    let (a, r) = (members(actual), members(reserved));
    std::array::from_fn(|j| {
        (i128::from(a[j]) - i128::from(r[j]))
            .clamp(-m, m)
            .to_string()
    })
}

/// The flat list of members the scripts answer, five per line.
fn spends(flat: &[i64], lines: usize) -> Result<Vec<Spend>, StoreError> {
    if flat.len() != lines * 5 {
        return Err(StoreError(format!(
            "Redis: {} spend values for {lines} lines",
            flat.len()
        )));
    }
    flat.chunks_exact(5)
        .map(|c| {
            let v = |i: usize| {
                u64::try_from(c[i]).map_err(|_| StoreError(format!("Redis: spend value {}", c[i])))
            };
            Ok(Spend {
                calls: v(0)?,
                input: v(1)?,
                output: v(2)?,
                cached_input: v(3)?,
                cost: v(4)?,
            })
        })
        .collect()
}

impl RedisStore {
    /// Reserves `amount` on every line, one slot group at a time in a fixed order (the token's line,
    /// then the end user's lines): each group all or nothing in one script, and when a group has no
    /// room, the groups already reserved are given back. Between a group's grant and its give-back a
    /// concurrent reservation can find that group fuller than it ends: it may be refused, never
    /// granted beyond a limit (`docs/redis.md`).
    pub(crate) async fn spend_reserve(
        &self,
        tenant: &str,
        lines: &[SpendLine],
        amount: &Spend,
    ) -> Result<SpendReservation, StoreError> {
        let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
        let mut granted: Vec<Vec<&SpendLine>> = Vec::new();
        for (slot, at) in self.line_groups(tenant, &keys) {
            let group: Vec<&SpendLine> = at.iter().map(|&i| &lines[i]).collect();
            match self.reserve_group(tenant, &slot, &group, amount).await {
                Ok(true) => granted.push(group),
                Ok(false) => {
                    self.give_back(tenant, &granted, amount).await?;
                    return self
                        .spend_get(tenant, &keys)
                        .await
                        .map(SpendReservation::NoRoom);
                }
                Err(e) => {
                    // The failed group may hold the amount; the others need not: an error only
                    // ever over-charges, and less so.
                    let _ = self.give_back(tenant, &granted, amount).await;
                    return Err(e);
                }
            }
        }
        Ok(SpendReservation::Granted)
    }

    /// One group's reservation: whether every line had room (and took the amount).
    async fn reserve_group(
        &self,
        tenant: &str,
        slot: &str,
        group: &[&SpendLine],
        amount: &Spend,
    ) -> Result<bool, StoreError> {
        let keys: Vec<String> = group
            .iter()
            .map(|l| self.line_key(tenant, &l.key))
            .collect();
        let mut args: Vec<String> = members(amount)
            .map(|a| a.min(MAX_TIME).to_string())
            .to_vec();
        for l in group {
            args.extend(rooms(&l.limit, amount));
            args.push(l.keep_until.min(MAX_TIME).to_string());
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let answer: Vec<i64> = self
            .eval_once(&self.scripts.spend_reserve, &keys, slot, &args)
            .await?;
        match answer.split_first() {
            Some((1, [])) => Ok(true),
            Some((0, used)) if used.len() == group.len() * 5 => Ok(false),
            _ => Err(StoreError(format!(
                "Redis: unexpected spend reservation answer {answer:?}"
            ))),
        }
    }

    /// Takes `amount` back from groups reserved by a reservation that was then refused.
    async fn give_back(
        &self,
        tenant: &str,
        groups: &[Vec<&SpendLine>],
        amount: &Spend,
    ) -> Result<(), StoreError> {
        for group in groups {
            let lines: Vec<SpendLine> = group.iter().map(|l| (*l).clone()).collect();
            self.spend_settle(tenant, &lines, amount, &Spend::default())
                .await?;
        }
        Ok(())
    }

    /// Settles every line, one script per slot group; tries every group and answers the first error.
    pub(crate) async fn spend_settle(
        &self,
        tenant: &str,
        lines: &[SpendLine],
        reserved: &Spend,
        actual: &Spend,
    ) -> Result<(), StoreError> {
        let mut result = Ok(());
        let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
        for (slot, at) in self.line_groups(tenant, &keys) {
            let keys: Vec<String> = at.iter().map(|&i| self.line_key(tenant, keys[i])).collect();
            let mut args = changes(actual, reserved).to_vec();
            args.extend(
                at.iter()
                    .map(|&i| lines[i].keep_until.min(MAX_TIME).to_string()),
            );
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = self
                .eval_once::<i64>(&self.scripts.spend_settle, &keys, &slot, &args)
                .await;
            if let (Ok(()), Err(e)) = (&result, r) {
                result = Err(e);
            }
        }
        result
    }

    /// Reads every line, one script per slot group, answered in the order of `keys`.
    pub(crate) async fn spend_get(
        &self,
        tenant: &str,
        keys: &[&str],
    ) -> Result<Vec<Spend>, StoreError> {
        let mut out = vec![Spend::default(); keys.len()];
        for (_, at) in self.line_groups(tenant, keys) {
            let lines: Vec<String> = at.iter().map(|&i| self.line_key(tenant, keys[i])).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let flat: Vec<i64> = self.eval(&self.scripts.spend_get, &lines, &[]).await?;
            for (&i, s) in at.iter().zip(spends(&flat, lines.len())?) {
                out[i] = s;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts' `fits`, computed with doubles as Lua does.
    fn lua_fits(x: u64, y: u64, halves: &[String; 2]) -> bool {
        if halves[0].is_empty() {
            return true;
        }
        let num = |s: &str| s.parse::<f64>().unwrap();
        x as f64 - num(&halves[0]) <= num(&halves[1]) - y as f64
    }

    #[test]
    fn the_scripts_limit_check_is_exact_around_2_pow_53() {
        let m = MAX_TIME;
        let values = [
            0,
            1,
            2,
            m / 2,
            m - 2,
            m - 1,
            m,
            m + 1,
            m + 2,
            (1 << 54) - 3,
            1 << 54,
            u64::MAX - 1,
            u64::MAX,
        ];
        let stored = [0, 1, 2, m / 2, m / 2 + 1, m - 2, m - 1, m];
        for &limit in &values {
            for &a_in in &values {
                for &a_out in &[0, 1, m] {
                    for &x in &stored {
                        for &y in &stored {
                            let used = Spend {
                                input: x,
                                output: y,
                                ..Spend::default()
                            };
                            let amount = Spend {
                                input: a_in,
                                output: a_out,
                                ..Spend::default()
                            };
                            let l = SpendLimit {
                                tokens: Some(limit),
                                ..SpendLimit::default()
                            };
                            let r = rooms(&l, &amount);
                            let halves = [r[2].clone(), r[3].clone()];
                            assert_eq!(
                                lua_fits(x, y, &halves),
                                l.fits(&used, &amount),
                                "limit {limit}, amount {a_in}+{a_out}, used {x}+{y}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn changes_and_amounts_are_exact_doubles() {
        let big = Spend {
            calls: u64::MAX,
            input: MAX_TIME,
            output: 0,
            cached_input: 5,
            cost: 1 << 60,
        };
        let small = Spend {
            calls: 0,
            input: 0,
            output: u64::MAX,
            cached_input: 7,
            cost: 1,
        };
        let c = changes(&big, &small);
        let m = MAX_TIME as i64;
        assert_eq!(
            c,
            [m, m, -m, -2, m].map(|v| v.to_string()),
            "clamped to what a double holds"
        );
        for v in c {
            let f: f64 = v.parse().unwrap();
            assert_eq!(f as i64, v.parse::<i64>().unwrap());
        }
        assert_eq!(room(Some(5), 6), ["-1".to_string(), "0".to_string()]);
        assert_eq!(room(None, 6), [String::new(), String::new()]);
        assert_eq!(
            room(Some(u64::MAX), 0),
            [(1u64 << 53).to_string(), (1u64 << 53).to_string()]
        );
        assert!(spends(&[1, 2, 3, 4], 1).is_err());
        assert!(spends(&[1, 2, 3, 4, -5], 1).is_err());
    }
}
