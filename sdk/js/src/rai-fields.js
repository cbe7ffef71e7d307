/**
 * The field checks every `.rai` loader shares (docs/client-config.md rules 2, 6, 8 and 10): objects with
 * a closed set of fields, required and optional members, identifiers and key validity windows. Each
 * failure is a {@link ConfigError} naming the field; which fields a file has is config.js's and
 * ecc-config.js's business.
 *
 * @module
 */

import { ConfigError } from './errors.js';

const ID = /^[A-Za-z0-9._-]+$/;
// The largest `not_before` / `not_after` (rule 10): 2^53-1, exact in every JSON reader.
const MAX_WINDOW_SECONDS = Number.MAX_SAFE_INTEGER;

/** @param {unknown} v */
export const isObject = (v) =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(Symbol.iterator in v);

/**
 * @param {unknown} value
 * @param {string} field
 * @returns {Record<string, unknown>}
 */
export function object(value, field, /** @type {string[]} */ allowed) {
  if (!isObject(value)) throw new ConfigError(field || '<config>', 'expected a JSON object');
  const obj = /** @type {Record<string, unknown>} */ (value);
  for (const name of Object.keys(obj)) {
    if (!allowed.includes(name)) {
      const full = field ? `${field}.${name}` : name;
      throw new ConfigError(full, `unknown field (expected one of: ${allowed.join(', ')})`);
    }
  }
  return obj;
}

/**
 * @param {Record<string, unknown>} obj
 * @param {string} name
 * @param {string} field
 */
export function required(obj, name, field) {
  if (!Object.hasOwn(obj, name) || obj[name] === undefined) {
    throw new ConfigError(field, 'is required');
  }
  return obj[name];
}

/**
 * @param {Record<string, unknown>} obj
 * @param {string} name
 * @param {unknown} fallback
 */
export function optional(obj, name, fallback) {
  return Object.hasOwn(obj, name) && obj[name] !== undefined ? obj[name] : fallback;
}

/**
 * @param {unknown} v
 * @param {string} field
 * @param {number} maxLen
 */
export function identifier(v, field, maxLen) {
  if (typeof v !== 'string' || v.length < 1 || v.length > maxLen || !ID.test(v)) {
    throw new ConfigError(field, `expected 1 to ${maxLen} characters from A-Z a-z 0-9 . _ -`);
  }
  return v;
}

/**
 * A key's validity window (rule 10): `not_before` / `not_after` are Unix seconds from 0 to 2^53-1, and
 * `not_before` comes before `not_after` when both are given; an absent end is open (`null`).
 *
 * @param {Record<string, unknown>} obj
 * @param {string} field
 * @returns {{ notBefore: number | null, notAfter: number | null }}
 */
export function keyWindow(obj, field) {
  const end = (/** @type {string} */ name) => {
    if (!Object.hasOwn(obj, name)) return null;
    const v = obj[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_WINDOW_SECONDS) {
      throw new ConfigError(`${field}.${name}`, 'expected Unix seconds: an integer from 0 to 2^53-1');
    }
    return v;
  };
  const notBefore = end('not_before');
  const notAfter = end('not_after');
  if (notBefore !== null && notAfter !== null && notAfter <= notBefore) {
    throw new ConfigError(
      `${field}.not_after`,
      'expected a time after not_before (the key would never be valid)',
    );
  }
  return { notBefore, notAfter };
}
