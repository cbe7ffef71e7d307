/**
 * The spend-limit options (docs/budgets.md §1) turned into the claims `bud` and `uq`.
 *
 * `budgetTokens` and `budgetCost` become `bud` (rule 5.1.20 of docs/token-format.md), `userQuotas`
 * becomes `uq` (rule 5.1.21). Every rule is checked here against the option names the caller wrote, so a
 * mistake reads `userQuotas: entry 1: ...` rather than in claim names; claims.js checks the result again.
 * The Python SDK's `budget_tokens`, `budget_cost` and `user_quotas` follow the same rules with the same
 * messages.
 *
 * @module
 */

import { MAX_QUOTAS, WINDOWS } from './claims.js';
import { InvalidArgumentError } from './errors.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** Keys of one `userQuotas` entry and the claim member each becomes. */
const QUOTA_KEYS = Object.freeze({ window: 'w', calls: 'calls', tokens: 'tok', cost: 'cost' });

/** @param {unknown} v */
const absent = (v) => v === undefined || v === null;
/** A value as the caller wrote it, for messages (never throws, unlike JSON.stringify on a BigInt). */
const show = (/** @type {unknown} */ v) => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/**
 * @param {string} param
 * @param {string} where
 * @param {unknown} value
 * @returns {number}
 */
function amount(param, where, value) {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(
      param,
      `${where}must be an integer from 1 to ${MAX_SAFE}, got ${show(value)}`,
    );
  }
  return value;
}

/**
 * `{tok, cost}` from the two budget options, or undefined when neither is given.
 *
 * @param {unknown} budgetTokens
 * @param {unknown} budgetCost
 * @returns {Record<string, number> | undefined}
 */
export function budgetClaim(budgetTokens, budgetCost) {
  /** @type {Record<string, number>} */
  const bud = {};
  if (!absent(budgetTokens)) bud.tok = amount('budgetTokens', '', budgetTokens);
  if (!absent(budgetCost)) bud.cost = amount('budgetCost', '', budgetCost);
  return Object.keys(bud).length === 0 ? undefined : bud;
}

/**
 * The `uq` claim from `userQuotas`: entries in the order given, members in claim order.
 *
 * @param {unknown} userQuotas
 * @param {unknown} userId
 * @returns {Record<string, unknown>[] | undefined}
 */
export function quotasClaim(userQuotas, userId) {
  if (absent(userQuotas)) return undefined;
  const param = 'userQuotas';
  if (!Array.isArray(userQuotas)) {
    throw new InvalidArgumentError(param, 'must be a list of quotas such as [{window: "day", calls: 50}]');
  }
  if (userQuotas.length < 1 || userQuotas.length > MAX_QUOTAS) {
    throw new InvalidArgumentError(param, `must hold 1 to ${MAX_QUOTAS} quotas, one per window`);
  }
  if (absent(userId)) {
    throw new InvalidArgumentError(param, 'needs userId: quotas are counted per end user');
  }
  const seen = new Set();
  return userQuotas.map((entry, i) => {
    const at = `entry ${i}: `;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new InvalidArgumentError(param, `${at}must be an object such as {window: "day", calls: 50}`);
    }
    for (const key of Object.keys(entry)) {
      if (!Object.hasOwn(QUOTA_KEYS, key)) {
        throw new InvalidArgumentError(
          param,
          `${at}unknown key "${key}"; the keys are window, calls, tokens and cost`,
        );
      }
    }
    const { window } = entry;
    if (typeof window !== 'string' || !WINDOWS.includes(window)) {
      throw new InvalidArgumentError(
        param,
        `${at}window must be "day", "month" or "all", got ${show(window)}`,
      );
    }
    if (seen.has(window)) throw new InvalidArgumentError(param, `${at}window "${window}" appears twice`);
    seen.add(window);
    /** @type {Record<string, unknown>} */
    const quota = { w: window };
    for (const key of /** @type {const} */ (['calls', 'tokens', 'cost'])) {
      if (!absent(entry[key])) quota[QUOTA_KEYS[key]] = amount(param, `${at}${key} `, entry[key]);
    }
    if (Object.keys(quota).length === 1) {
      throw new InvalidArgumentError(param, `${at}set at least one of calls, tokens and cost`);
    }
    return quota;
  });
}
