/**
 * Token claims: the §5 table of docs/token-format.md as code.
 *
 * One checker serves both directions. Minting runs it on the claims built from `createToken` options so
 * the SDK never mints a token the relay would refuse; verification runs it on the decrypted JSON. It
 * applies what §5 defines and no more, exactly as the relay and the Python SDK do, so a token from any
 * conforming minter decodes the same everywhere; the extra hygiene the SDK applies to what *it* mints
 * (formats of paths, origins, key names) lives in generator.js. Serialisation writes the members in
 * table order, which is what makes minters in different languages agree byte for byte. Encryption lives
 * in token.js.
 *
 * @module
 */

import { isIPv4, isIPv6 } from 'node:net';

/** Member order of §5; canonical JSON writes present members in exactly this order. */
export const CLAIM_ORDER = Object.freeze([
  'jti',
  'tid',
  'iat',
  'exp',
  'prv',
  'key',
  'kref',
  'url',
  'max',
  'ext',
  'rate',
  'conc',
  'models',
  'paths',
  'origins',
  'ips',
  'mtok',
  'mtok_mode',
  'uid',
]);

// §5 ranges, each named once so minting and verification cannot drift apart.
const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2^53-1: every integer claim stays exact in a double
const RATE_MAX = 86400 * 365; // seconds and calls of a rate window: at most one year
const CONC_MAX = 10000; // concurrent requests per token
export const MODELS_MAX = 64; // entries of `models`
const REP_M_MAX = 256; // characters of `ext.rep_m`
export const UID_MAX = 128; // characters of `uid`
const KEY_MAX = 1024; // characters of an inline provider key
const URL_MAX = 2048; // characters of `url`

const HEX32 = /^[0-9a-f]{32}$/;
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
const PROVIDER = /^[a-z0-9_-]{1,32}$/;
// Printable ASCII (§5): a control character could split the HTTP header the key goes into.
export const PRINTABLE = /^[\x20-\x7e]+$/;
const PREFIX = /^(?:0|[1-9][0-9]{0,2})$/;

/** Thrown by {@link checkClaims}; `field` names the claim (minting maps it back to the option name). */
export class ClaimError extends Error {
  /**
   * @param {string} field
   * @param {string} message
   */
  constructor(field, message) {
    super(`${field}: ${message}`);
    this.field = field;
    this.detail = message;
  }
}

/** @param {unknown} v */
const isPlainObject = (v) =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/** Length in Unicode code points, which is what every other language's "characters" means. */
const codePoints = (/** @type {string} */ s) => {
  let n = 0;
  for (const _ of s) n += 1;
  return n;
};

/**
 * @param {string} field
 * @param {unknown} v
 * @param {number} min
 * @param {number} max
 * @returns {number}
 */
function int(field, v, min, max) {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || Object.is(v, -0)) {
    throw new ClaimError(field, 'must be an integer');
  }
  if (v < min || v > max) throw new ClaimError(field, `must be between ${min} and ${max}`);
  return v;
}

/**
 * @param {string} field
 * @param {unknown} v
 * @param {(s: string) => boolean} ok
 * @param {string} what
 * @returns {string}
 */
function str(field, v, ok, what) {
  // A lone surrogate cannot be written as UTF-8, so no other implementation could read it back.
  if (typeof v !== 'string' || !v.isWellFormed()) throw new ClaimError(field, 'must be a string');
  if (!ok(v)) throw new ClaimError(field, `must be ${what}`);
  return v;
}

/**
 * @param {string} field
 * @param {unknown} v
 * @param {number} maxItems
 * @param {(item: unknown, field: string) => string} item
 * @returns {string[]}
 */
function list(field, v, maxItems, item) {
  if (!Array.isArray(v)) throw new ClaimError(field, 'must be an array');
  if (v.length < 1 || v.length > maxItems) {
    throw new ClaimError(field, `must have between 1 and ${maxItems} entries`);
  }
  return v.map((x, i) => item(x, `${field}[${i}]`));
}

/** @param {string} s */
function isCidr(s) {
  const slash = s.indexOf('/');
  if (slash < 0 || s.includes('%')) return false;
  const addr = s.slice(0, slash);
  const prefix = s.slice(slash + 1);
  if (!PREFIX.test(prefix)) return false;
  if (isIPv4(addr)) return Number(prefix) <= 32;
  if (isIPv6(addr)) return Number(prefix) <= 128;
  return false;
}

// RFC 3986 unreserved and reserved characters plus "%", without "#" (an absolute-URI has no fragment).
const URL_CHARS = /^[A-Za-z0-9\-._~:/?[\]@!$&'()*+,;=%]*$/;
const HOST_LABEL = /^[A-Za-z0-9_-]{1,63}$/;
const PORT = /^[0-9]{1,5}$/;

/**
 * The relay's rule for `url` (src/token.rs `is_https_base_url`, also the Python SDK's), written out
 * rather than left to WHATWG `URL`, which repairs input ("https:///host", backslashes) into hosts other
 * parsers do not see: an RFC 3986 absolute-URI (so no fragment) with scheme `https`, a host name, IPv4
 * or bracketed IPv6 host, an optional port 1-65535, no user info (credentials belong in `key`, and an
 * "@" is the classic way to disguise a host), and complete %-escapes.
 *
 * @param {string} s
 */
function isHttpsUrl(s) {
  if (s.length > URL_MAX || !s.startsWith('https://')) return false;
  const rest = s.slice('https://'.length);
  if (!URL_CHARS.test(rest)) return false;
  const end = rest.search(/[/?]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  const tail = end < 0 ? '' : rest.slice(end);
  if (authority.includes('@')) return false;
  let port;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) return false;
    const inside = authority.slice(1, close);
    const after = authority.slice(close + 1);
    if (inside.includes('%') || !isIPv6(inside)) return false;
    if (after !== '' && !after.startsWith(':')) return false;
    port = after === '' ? undefined : after.slice(1);
  } else {
    const colon = authority.indexOf(':');
    const host = colon < 0 ? authority : authority.slice(0, colon);
    port = colon < 0 ? undefined : authority.slice(colon + 1);
    // Dotted-quad IPv4 addresses are host names by this rule too.
    if (!(host.length > 0 && host.length <= 253 && host.split('.').every((l) => HOST_LABEL.test(l)))) {
      return false;
    }
  }
  if (port !== undefined && !(PORT.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return false;
  return !/%(?![0-9A-Fa-f]{2})/.test(tail);
}

const CHECKS = {
  jti: (/** @type {unknown} */ v) => str('jti', v, (s) => HEX32.test(s), '32 lowercase hex characters'),
  tid: (/** @type {unknown} */ v) =>
    str('tid', v, (s) => TENANT.test(s), '1 to 64 characters from A-Z a-z 0-9 . _ -'),
  iat: (/** @type {unknown} */ v) => int('iat', v, 0, MAX_SAFE),
  exp: (/** @type {unknown} */ v) => int('exp', v, 1, MAX_SAFE),
  prv: (/** @type {unknown} */ v) =>
    str('prv', v, (s) => PROVIDER.test(s), '1 to 32 characters from a-z 0-9 _ -'),
  key: (/** @type {unknown} */ v) =>
    str(
      'key',
      v,
      (s) => s.length <= KEY_MAX && PRINTABLE.test(s),
      `1 to ${KEY_MAX} printable ASCII characters`,
    ),
  // §5 gives kref no format; an empty name can never name a configured key.
  kref: (/** @type {unknown} */ v) => str('kref', v, (s) => s.length > 0, 'a non-empty key name'),
  url: (/** @type {unknown} */ v) =>
    str('url', v, isHttpsUrl, 'an absolute https:// URL with a host, without credentials or fragment'),
  max: (/** @type {unknown} */ v) => int('max', v, 1, MAX_SAFE),
  ext: (/** @type {unknown} */ v) => {
    if (!isPlainObject(v)) throw new ClaimError('ext', 'must be an object');
    const ext = /** @type {Record<string, unknown>} */ (v);
    /** @type {{ rep_m?: string }} */
    const out = {};
    for (const name of Object.keys(ext)) {
      if (name !== 'rep_m') throw new ClaimError(`ext.${name}`, 'is not a known member (only rep_m)');
    }
    if (Object.hasOwn(ext, 'rep_m')) {
      out.rep_m = str(
        'ext.rep_m',
        ext.rep_m,
        (s) => codePoints(s) >= 1 && codePoints(s) <= REP_M_MAX,
        `1 to ${REP_M_MAX} characters`,
      );
    }
    return out;
  },
  rate: (/** @type {unknown} */ v) => {
    if (!isPlainObject(v)) throw new ClaimError('rate', 'must be an object {"n": calls, "s": seconds}');
    const rate = /** @type {Record<string, unknown>} */ (v);
    for (const name of Object.keys(rate)) {
      if (name !== 'n' && name !== 's') throw new ClaimError(`rate.${name}`, 'is not a known member');
    }
    if (!Object.hasOwn(rate, 'n') || !Object.hasOwn(rate, 's')) {
      throw new ClaimError('rate', 'needs both n and s');
    }
    return { n: int('rate.n', rate.n, 1, RATE_MAX), s: int('rate.s', rate.s, 1, RATE_MAX) };
  },
  conc: (/** @type {unknown} */ v) => int('conc', v, 1, CONC_MAX),
  // §5 fixes the number of entries but no format for them: an entry that matches nothing only makes
  // the relay refuse requests. The minter checks the formats of what it writes (generator.js).
  models: (/** @type {unknown} */ v) => list('models', v, MODELS_MAX, (x, f) => str(f, x, () => true, '')),
  paths: (/** @type {unknown} */ v) => list('paths', v, MAX_SAFE, (x, f) => str(f, x, () => true, '')),
  origins: (/** @type {unknown} */ v) => list('origins', v, MAX_SAFE, (x, f) => str(f, x, () => true, '')),
  ips: (/** @type {unknown} */ v) =>
    list('ips', v, MAX_SAFE, (x, f) =>
      str(f, x, isCidr, 'an IP range in CIDR form like 203.0.113.0/24 or 2001:db8::/32'),
    ),
  mtok: (/** @type {unknown} */ v) => int('mtok', v, 1, MAX_SAFE),
  mtok_mode: (/** @type {unknown} */ v) =>
    str('mtok_mode', v, (s) => s === 'clamp' || s === 'reject', '"clamp" or "reject"'),
  // §5 says printable ASCII, but the shared vectors carry a uid with control characters and non-ASCII
  // text that every verifier must accept, so only the length is enforced (see the README).
  uid: (/** @type {unknown} */ v) =>
    str('uid', v, (s) => codePoints(s) >= 1 && codePoints(s) <= UID_MAX, `1 to ${UID_MAX} characters`),
};

/**
 * Checks a claims object against §5 and returns a fresh copy holding only plain values.
 *
 * @param {unknown} input claims as parsed from JSON or built by the minter
 * @param {string} [tenant] when given, `tid` must equal it
 * @returns {Record<string, unknown>}
 * @throws {ClaimError} naming the first offending member
 */
export function checkClaims(input, tenant) {
  if (!isPlainObject(input)) throw new ClaimError('claims', 'must be a JSON object');
  const claims = /** @type {Record<string, unknown>} */ (input);
  for (const name of Object.keys(claims)) {
    if (!Object.hasOwn(CHECKS, name)) throw new ClaimError(name, 'is not a known claim');
  }
  for (const name of ['jti', 'tid', 'iat', 'exp', 'prv']) {
    if (!Object.hasOwn(claims, name)) throw new ClaimError(name, 'is required');
  }
  const hasKey = Object.hasOwn(claims, 'key');
  if (hasKey === Object.hasOwn(claims, 'kref')) {
    throw new ClaimError(hasKey ? 'kref' : 'key', 'exactly one of key and kref must be present');
  }
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const name of CLAIM_ORDER) {
    if (Object.hasOwn(claims, name)) {
      out[name] = CHECKS[/** @type {keyof typeof CHECKS} */ (name)](claims[name]);
    }
  }
  if (/** @type {number} */ (out.exp) <= /** @type {number} */ (out.iat)) {
    throw new ClaimError('exp', 'must be after iat');
  }
  if (tenant !== undefined && out.tid !== tenant) {
    throw new ClaimError('tid', "must equal the key's tenant");
  }
  return out;
}

/**
 * Serialises claims that passed {@link checkClaims} as §5 canonical JSON.
 *
 * `JSON.stringify` already escapes exactly as §5 requires (short forms for \b \f \n \r \t, lowercase
 * `\u00xx` for other controls, everything else literal); the order comes from {@link checkClaims}, which
 * rebuilt the object in table order, and from `rate` being rebuilt as {n, s}.
 *
 * @param {Record<string, unknown>} checked
 * @returns {string}
 */
export function canonicalJson(checked) {
  /** @type {Record<string, unknown>} */
  const ordered = {};
  for (const name of CLAIM_ORDER) {
    if (Object.hasOwn(checked, name)) ordered[name] = checked[name];
  }
  return JSON.stringify(ordered);
}
