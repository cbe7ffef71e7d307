//! Money in exact integers: a model's prices per million tokens in micro-units of a currency (one
//! millionth of a dollar, say), and the cost of a [`Usage`] at those prices. No floating point anywhere:
//! the products are taken in `u128` (a `u64` count times a `u64` price cannot overflow it), summed with
//! checked additions, and divided by a million once, **rounding up**, so a budget is never underpaid: the
//! charge exceeds the exact cost by less than one micro-unit per call. A cost that does not fit a `u64` is
//! an error, never a wrapped number.

use crate::meter::usage::Usage;

/// Tokens per priced unit: prices are per million tokens, as every provider publishes them.
pub const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

/// A model's prices, in micro-units of the currency per million tokens (`$2.50 / 1M` is `2_500_000`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Input tokens read fresh (neither from nor into a cache).
    pub input: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Input tokens read from a prompt cache.
    pub cached_input: u64,
    /// Input tokens written to a prompt cache (Anthropic charges these above `input`).
    pub cache_write: u64,
}

/// A cost too large for a `u64` of micro-units (more than 18 trillion currency units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostOverflow;

impl Price {
    /// What `usage` costs, in micro-units, rounded up. Cached and cache-written tokens are charged at
    /// their own prices and the rest of `usage.input` at the input price; if a report claims more
    /// cached tokens than input tokens, the claimed cached tokens are still charged (never less than
    /// the provider's own figures).
    pub fn cost(&self, usage: &Usage) -> Result<u64, CostOverflow> {
        let fresh = usage
            .input
            .saturating_sub(usage.cached_input)
            .saturating_sub(usage.cache_creation);
        let parts = [
            (fresh, self.input),
            (usage.cached_input, self.cached_input),
            (usage.cache_creation, self.cache_write),
            (usage.output, self.output),
        ];
        let mut total: u128 = 0;
        for (tokens, price) in parts {
            let part = u128::from(tokens) * u128::from(price);
            total = total.checked_add(part).ok_or(CostOverflow)?;
        }
        u64::try_from(total.div_ceil(TOKENS_PER_PRICE_UNIT)).map_err(|_| CostOverflow)
    }

    /// The most output tokens that `budget` micro-units can pay for once `input` fresh input tokens are
    /// paid (at the input price, the dearest way to read them): the largest `n` with
    /// `cost(input, n) <= budget`. `None` when even the input cannot be paid; `Some(u64::MAX)` when
    /// output is free.
    pub fn affordable_output(&self, budget: u64, input: u64) -> Option<u64> {
        let scaled_budget = u128::from(budget) * TOKENS_PER_PRICE_UNIT;
        let input_cost = u128::from(input) * u128::from(self.input.max(self.cache_write));
        let left = scaled_budget.checked_sub(input_cost)?;
        if self.output == 0 {
            return Some(u64::MAX);
        }
        let n = left / u128::from(self.output);
        Some(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gpt-4o at its list price: $2.50 in, $10 out, $1.25 cached, per million.
    const GPT_4O: Price = Price {
        input: 2_500_000,
        output: 10_000_000,
        cached_input: 1_250_000,
        cache_write: 2_500_000,
    };

    /// claude-sonnet-4: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
    const SONNET: Price = Price {
        input: 3_000_000,
        output: 15_000_000,
        cached_input: 300_000,
        cache_write: 3_750_000,
    };

    #[test]
    fn exact_costs_and_rounding_up() {
        let u = Usage {
            input: 1_000_000,
            output: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(GPT_4O.cost(&u), Ok(12_500_000));
        // 1117 in (1024 cached), 46 out: 93 * 2.5 + 1024 * 1.25 + 46 * 10 = 1972.5 micro-units exactly.
        let u = Usage {
            input: 1117,
            output: 46,
            cached_input: 1024,
            ..Usage::default()
        };
        assert_eq!(GPT_4O.cost(&u), Ok(1973));
        // One token at $2.50/M is 2.5 micro-units: charged 3, never 2.
        let one = Usage {
            input: 1,
            ..Usage::default()
        };
        assert_eq!(GPT_4O.cost(&one), Ok(3));
        assert_eq!(GPT_4O.cost(&Usage::default()), Ok(0));
        // Anthropic: 25 fresh + 100 written + 1000 read in, 15 out.
        let u = Usage {
            input: 1125,
            output: 15,
            cached_input: 1000,
            cache_creation: 100,
            reasoning: 0,
        };
        // 25*3 + 1000*0.3 + 100*3.75 + 15*15 = 75 + 300 + 375 + 225 = 975.
        assert_eq!(SONNET.cost(&u), Ok(975));
    }

    #[test]
    fn never_below_the_exact_cost_and_less_than_one_unit_above() {
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..10_000 {
            let u = Usage {
                input: next() % 10_000_000,
                output: next() % 1_000_000,
                cached_input: next() % 5_000_000,
                cache_creation: next() % 1_000_000,
                reasoning: 0,
            };
            let p = Price {
                input: next() % 100_000_000,
                output: next() % 100_000_000,
                cached_input: next() % 10_000_000,
                cache_write: next() % 100_000_000,
            };
            let exact = u128::from(
                u.input
                    .saturating_sub(u.cached_input)
                    .saturating_sub(u.cache_creation),
            ) * u128::from(p.input)
                + u128::from(u.cached_input) * u128::from(p.cached_input)
                + u128::from(u.cache_creation) * u128::from(p.cache_write)
                + u128::from(u.output) * u128::from(p.output);
            let c = u128::from(p.cost(&u).unwrap());
            assert!(c * 1_000_000 >= exact && (c * 1_000_000) - exact < 1_000_000);
        }
    }

    #[test]
    fn overflow_is_an_error() {
        let max = Usage {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: 0,
            cache_creation: 0,
            reasoning: 0,
        };
        let dear = Price {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: u64::MAX,
            cache_write: u64::MAX,
        };
        assert_eq!(dear.cost(&max), Err(CostOverflow));
        // A sum that fits u128 but not u64 after the division.
        let big = Usage {
            output: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(GPT_4O.cost(&big), Err(CostOverflow));
        // The largest cost that fits.
        let p = Price {
            output: 1_000_000,
            ..Price::default()
        };
        assert_eq!(p.cost(&big), Ok(u64::MAX));
    }

    #[test]
    fn affordable_output_is_the_largest_that_fits() {
        // $0.01 budget, 1000 input tokens at $2.50/M = 2500 micro-units; 7500 left at $10/M = 750.
        assert_eq!(GPT_4O.affordable_output(10_000, 1000), Some(750));
        let paid = |n: u64| {
            GPT_4O.cost(&Usage {
                input: 1000,
                output: n,
                ..Usage::default()
            })
        };
        assert_eq!(paid(750), Ok(10_000));
        assert_eq!(paid(751), Ok(10_010));
        assert_eq!(GPT_4O.affordable_output(2_499, 1000), None);
        assert_eq!(GPT_4O.affordable_output(2_500, 1000), Some(0));
        let free_output = Price {
            output: 0,
            ..GPT_4O
        };
        assert_eq!(free_output.affordable_output(2_500, 1000), Some(u64::MAX));
        // Odd prices: the bound is exact, one more token is over budget.
        let p = Price {
            input: 7,
            output: 333_333,
            cached_input: 0,
            cache_write: 0,
        };
        let n = p.affordable_output(1_000, 10).unwrap();
        let cost = |n| {
            p.cost(&Usage {
                input: 10,
                output: n,
                ..Usage::default()
            })
            .unwrap()
        };
        assert!(cost(n) <= 1_000 && cost(n + 1) > 1_000, "{n}");
    }
}
