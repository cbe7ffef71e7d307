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

/// Pending usage by (tenant, line key), with how long the store must keep the line.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<(String, String), (Spend, u64)>>,
}

impl UsageRecorder {
    /// Add a call's usage to `line` of `tenant`. `true` when the table is full and should be written
    /// out now.
    pub fn add(&self, tenant: &str, line: &SpendLine, used: &Spend) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let e = p
            .entry((tenant.to_string(), line.key.clone()))
            .or_insert((Spend::default(), 0));
        e.0 = e.0.adjusted(used, &Spend::default());
        e.1 = e.1.max(line.keep_until);
        p.len() >= MAX_PENDING
    }

    /// What is held for `key` of `tenant` and not yet written.
    pub fn pending(&self, tenant: &str, key: &str) -> Spend {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.get(&(tenant.to_string(), key.to_string()))
            .map(|(s, _)| *s)
            .unwrap_or_default()
    }

    fn take(&self) -> HashMap<(String, String), (Spend, u64)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Write everything held to `store`. A line the store refuses is put back, to be tried with the
    /// next batch.
    pub async fn flush(&self, store: &Store, log: &Logger) {
        let batch = self.take();
        let mut failed = 0usize;
        for ((tenant, key), (used, keep_until)) in batch {
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
