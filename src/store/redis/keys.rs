//! The key layout on Redis (`docs/redis.md`): every key one script touches carries the same hash tag
//! (the text between the first `{` and the next `}`), so on a Redis Cluster each script runs on one
//! slot; and the idempotency records that keep a retried script from counting twice.
//!
//! A key's slot is decided by its tag alone, and every key of one script starts with the same text up
//! to and including the closing brace written here. So even an id holding `}` (Redis then ends the tag
//! early) puts all of one script's keys in one slot: they share that prefix, hence that tag.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::redis::RedisStore;

/// Prefix of the idempotency record of operation `id` in a slot: `{slot key}:id:{id}`. Line keys
/// continue after the tag with `/` or nothing, so the record never names a line.
const IDEM_SUFFIX: &str = ":id:";

/// Per-store source of operation ids: a random instance part (so two relays never share an id) and
/// a counter (so one relay never reuses one while its record lives).
pub(super) struct OpIds {
    instance: String,
    next: AtomicU64,
}

impl OpIds {
    pub(super) fn new() -> OpIds {
        let mut seed = [0u8; 8];
        // Without randomness two relays could collide on ids: refuse to guess rather than risk a
        // retry of one relay being taken for another's operation.
        getrandom::getrandom(&mut seed)
            .expect("the operating system's random number generator failed");
        OpIds {
            instance: seed.iter().map(|b| format!("{b:02x}")).collect(),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh id for one operation, shared by every retry of that operation.
    pub(super) fn next(&self) -> String {
        format!(
            "{}.{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The hash tag of a spend line: `t/<jti>` keeps its whole key, `u/<uid>/...` keeps `u/<uid>`, so
/// every window of one end user shares one slot and one script reserves them together.
fn line_group(line: &str) -> (&str, &str) {
    let second = line
        .find('/')
        .and_then(|first| line[first + 1..].find('/').map(|i| first + 1 + i));
    match second {
        Some(i) => line.split_at(i),
        None => (line, ""),
    }
}

impl RedisStore {
    /// The token's counter hash: `{prefix}tok:{<tenant>:<jti>}`.
    pub(super) fn token_key(&self, tenant: &str, jti: &str) -> String {
        format!("{}tok:{{{tenant}:{jti}}}", self.prefix)
    }

    /// The tenant's revoke-before mark: `{prefix}rb:{<tenant>}`, a slot of its own, read apart from
    /// the token's (see `tokens.rs`).
    pub(super) fn mark_key(&self, tenant: &str) -> String {
        format!("{}rb:{{{tenant}}}", self.prefix)
    }

    /// A shared rate-limit scope: `{prefix}rl:ip:{<client>}` or `{prefix}rl:{global}`.
    pub(super) fn rate_key(&self, client: Option<std::net::IpAddr>) -> String {
        match client {
            Some(ip) => format!("{}rl:ip:{{{ip}}}", self.prefix),
            None => format!("{}rl:{{global}}", self.prefix),
        }
    }

    /// The slot key of a line group: `{prefix}sp:{<tenant>:<group>}`; a line is its group's slot
    /// key followed by the rest of the line key.
    fn group_key(&self, tenant: &str, group: &str) -> String {
        format!("{}sp:{{{tenant}:{group}}}", self.prefix)
    }

    pub(super) fn line_key(&self, tenant: &str, line: &str) -> String {
        let (group, rest) = line_group(line);
        format!("{}{rest}", self.group_key(tenant, group))
    }

    /// Lines grouped by slot, in a fixed order (the token's line `t/...` before the end user's
    /// `u/...`): for each group its slot key and the positions of its lines in `lines`.
    pub(super) fn line_groups<S: AsRef<str>>(
        &self,
        tenant: &str,
        lines: &[S],
    ) -> Vec<(String, Vec<usize>)> {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, l) in lines.iter().enumerate() {
            groups.entry(line_group(l.as_ref()).0).or_default().push(i);
        }
        groups
            .into_iter()
            .map(|(g, at)| (self.group_key(tenant, g), at))
            .collect()
    }

    /// The idempotency record of operation `id` in the slot of `slot_key`.
    pub(super) fn idem_key(slot_key: &str, id: &str) -> String {
        format!("{slot_key}{IDEM_SUFFIX}{id}")
    }
}

/// Wraps a script body so that it runs at most once per operation id. The last KEY is the
/// operation's record and the last ARGV its lifetime in seconds; both are removed before the body
/// runs. A retry (same keys, same arguments) finds the record and answers what the first run
/// answered, without running the body again. Answers are integers or flat lists of integers.
pub(super) fn once(body: &str) -> String {
    format!(
        r"
local IDEM = table.remove(KEYS)
local IDEM_TTL = table.remove(ARGV)
local done = redis.call('GET', IDEM)
if done then
  if string.sub(done, 1, 1) == 'n' then return tonumber(string.sub(done, 2)) end
  local out = {{}}
  for v in string.gmatch(string.sub(done, 2), '[^,]+') do out[#out + 1] = tonumber(v) end
  return out
end
local function body()
{body}
end
local r = body()
local enc
if type(r) == 'table' then
  local parts = {{}}
  for i = 1, #r do parts[i] = string.format('%.0f', r[i]) end
  enc = 't' .. table.concat(parts, ',')
else
  enc = 'n' .. string.format('%.0f', r)
end
redis.call('SET', IDEM, enc, 'EX', IDEM_TTL)
return r
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_end_user_shares_a_group_and_a_token_has_its_own() {
        assert_eq!(line_group("t/abc"), ("t/abc", ""));
        assert_eq!(line_group("u/ann/d/2026-12-07"), ("u/ann", "/d/2026-12-07"));
        assert_eq!(line_group("u/ann/a"), ("u/ann", "/a"));
        assert_eq!(line_group("u/ann"), ("u/ann", ""));
        assert_eq!(line_group("u//a"), ("u/", "/a"));
    }

    #[test]
    fn op_ids_are_unique() {
        let (a, b) = (OpIds::new(), OpIds::new());
        let ids = [a.next(), a.next(), b.next()];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2], "two relays never share an id");
    }
}
