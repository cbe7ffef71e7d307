//! What tokens without a spend limit used, written to the store in batches: such usage is a record for
//! the usage document, not a limit, so nothing waits for it to be durable. Each call adds its usage to
//! an in-process table; the table is written out once a second (and when it holds
//! [`MAX_PENDING`] lines, and at shutdown) as one settlement per line. This keeps the unbudgeted hot
//! path free of a store operation per call. What the table holds is added to what the store reports,
//! so the usage document of this relay is never behind; a relay killed with `kill -9` loses at most the
//! last second of these records, never a limit (budgeted calls are reserved and settled in the store
//! itself, `budget/charge.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::log::Logger;
use crate::store::{Spend, SpendLine, Store};

/// Lines held before a batch is written at once, whatever the time.
pub const MAX_PENDING: usize = 10_000;
/// How often the table is written out.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Pending usage by tenant, then line key, with how long the store must keep the line. Keyed in two
/// levels so that a call on a line already held is added without allocating a key (`add` runs for
/// every unbudgeted call).
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<Pending>,
}

/// Keyed by tenants and line keys, which come from authenticated claims: the fast hasher (see
/// Cargo.toml).
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Pending {
    lines: Map<Map<(Spend, u64)>>,
    /// Lines held, over all tenants.
    count: usize,
}

impl UsageRecorder {
    /// Add a call's usage to `line` of `tenant`. `true` when the table is full and should be written
    /// out now.
    pub fn add(&self, tenant: &str, line: &SpendLine, used: &Spend) -> bool {
        let mut guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = &mut *guard;
        let merge = |e: &mut (Spend, u64)| {
            e.0 = e.0.adjusted(used, &Spend::default());
            e.1 = e.1.max(line.keep_until);
        };
        if let Some(e) = p.lines.get_mut(tenant).and_then(|t| t.get_mut(&line.key)) {
            merge(e);
        } else {
            p.count += 1;
            merge(
                (p.lines.entry(tenant.to_string()).or_default())
                    .entry(line.key.clone())
                    .or_insert((Spend::default(), 0)),
            );
        }
        p.count >= MAX_PENDING
    }

    /// What is held for `key` of `tenant` and not yet written.
    pub fn pending(&self, tenant: &str, key: &str) -> Spend {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        (p.lines.get(tenant).and_then(|t| t.get(key)))
            .map(|(s, _)| *s)
            .unwrap_or_default()
    }

    fn take(&self) -> Map<Map<(Spend, u64)>> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.count = 0;
        std::mem::take(&mut p.lines)
    }

    /// Write everything held to `store`. A line the store refuses is put back, to be tried with the
    /// next batch.
    pub async fn flush(&self, store: &Store, log: &Logger) {
        let batch = self.take();
        let mut failed = 0usize;
        let lines = (batch.into_iter()).flat_map(|(tenant, held)| {
            held.into_iter()
                .map(move |(key, v)| (tenant.clone(), key, v))
        });
        for (tenant, key, (used, keep_until)) in lines {
            let line = SpendLine {
                key,
                limit: Default::default(),
                keep_until,
            };
            if store
                .spend_settle(
                    &tenant,
                    std::slice::from_ref(&line),
                    &Spend::default(),
                    &used,
                )
                .await
                .is_err()
            {
                failed += 1;
                self.add(&tenant, &line, &used);
            }
        }
        if failed > 0 {
            log.warn(
                "usage records not written; kept for the next batch",
                json!({"lines": failed}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, keep: u64) -> SpendLine {
        SpendLine {
            key: key.into(),
            limit: Default::default(),
            keep_until: keep,
        }
    }

    #[tokio::test]
    async fn usage_is_summed_per_line_and_written_in_one_batch() {
        let rec = UsageRecorder::default();
        let one = Spend {
            calls: 1,
            input: 3,
            output: 2,
            cached_input: 0,
            cost: 7,
        };
        assert!(!rec.add("acme", &line("t/a", 10), &one));
        rec.add("acme", &line("t/a", 20), &one);
        rec.add("globex", &line("t/a", 10), &one);
        assert_eq!(rec.pending("acme", "t/a").input, 6);
        let store = Store::memory();
        let log = Logger::new(false, Default::default()).unwrap();
        rec.flush(&store, &log).await;
        assert_eq!(rec.pending("acme", "t/a"), Spend::default());
        let got = store.spend_get("acme", &["t/a"]).await.unwrap();
        assert_eq!((got[0].calls, got[0].input, got[0].cost), (2, 6, 14));
        let other = store.spend_get("globex", &["t/a"]).await.unwrap();
        assert_eq!(other[0].calls, 1);
    }
}
