/**
 * Token claims: the §5 table of docs/token-format.md as code.
 *
 * One checker serves both directions. Minting runs it on the claims built from `createToken` options so
 * the SDK never mints a token the relay would refuse; verification runs it on the decrypted JSON. It
 * applies the rules of §5.1 exactly as the relay and the Python SDK do (minters refuse non-canonical
 * input, verifiers refuse non-canonical tokens; nothing is normalised), and conformance.json pins every
 * verdict in all three. Serialisation writes the members in table order, which is what makes minters in
 * different languages agree byte for byte. Encryption lives in token.js.
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
  'bud',
  'uq',
  'ssec',
]);
/** Members of `bud` (§5.1.20) and of each `uq` entry (§5.1.21), in canonical order. */
export const BUDGET_ORDER = Object.freeze(['tok', 'cost']);
export const QUOTA_ORDER = Object.freeze(['w', 'calls', 'tok', 'cost']);
/** Windows of an end-user quota: UTC calendar day, UTC calendar month, all time. */
export const WINDOWS = Object.freeze(['day', 'month', 'all']);
/** Most `uq` entries: one per window. */
export const MAX_QUOTAS = 3;

// §5 ranges, each named once so minting and verification cannot drift apart.
const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2^53-1: every integer claim stays exact in a double
const RATE_MAX = 86400 * 365; // seconds and calls of a rate window: at most one year
const CONC_MAX = 10000; // concurrent requests per token
// §5.1.22: one day of seconds; the providers end their realtime sessions long before.
export const SESSION_SECONDS_MAX = 86400;
export const MODELS_MAX = 64; // entries of `models`
const TEXT_MAX = 256; // Unicode scalar values of `ext.rep_m` and of each `models` entry (§5.1.3)
export const UID_MAX = 128; // bytes of printable ASCII in `uid` (§5.1.18)
const KEY_MAX = 1024; // characters of an inline provider key
const URL_MAX = 2048; // characters of `url`

const HEX32 = /^[0-9a-f]{32}$/;
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
const PROVIDER = /^[a-z0-9_-]{1,32}$/;
// Printable ASCII (§5): a control character could split the HTTP header the key goes into.
export const PRINTABLE = /^[\x20-\x7e]+$/;
const PREFIX = /^(?:0|[1-9][0-9]{0,2})$/;
const KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/; // §5.1.9, the config.json api_keys naming rule
// eslint-disable-next-line no-control-regex -- C0, DEL and C1 controls are exactly what §5.1.3 refuses
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const PATH = /^\/[\x21\x22\x24-\x3e\x40-\x7e]*$/; // §5.1.14: visible ASCII except '#' and '?'
const ORIGIN =
  /^(https?):\/\/(?:([a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*)|\[([0-9a-f:]+)\])(?::([1-9][0-9]{0,4}))?$/;
const DEFAULT_PORTS = { http: 80, https: 443 };

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

/**
 * The eight 16-bit groups of an IPv6 address written in lower-case hex with at most one `::`, or null.
 * Only the spellings rule 5.1.16.2 can produce get this far, so no dotted quad, zone or upper case.
 *
 * @param {string} s
 * @returns {number[] | null}
 */
function ipv6Groups(s) {
  if (!/^[0-9a-f:]+$/.test(s)) return null;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const part = (/** @type {string} */ h) => (h === '' ? [] : h.split(':'));
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  if (![...head, ...tail].every((g) => /^[0-9a-f]{1,4}$/.test(g))) return null;
  const hex = (/** @type {string[]} */ gs) => gs.map((g) => Number.parseInt(g, 16));
  if (halves.length === 1) return head.length === 8 ? hex(head) : null;
  if (head.length + tail.length > 7) return null;
  return [...hex(head), ...new Array(8 - head.length - tail.length).fill(0), ...hex(tail)];
}

/**
 * RFC 5952 §4 text of eight groups (rule 5.1.16.2): no leading zeros, the first longest run of two or
 * more zero groups as `::`, never a dotted quad.
 *
 * @param {number[]} groups
 */
function ipv6Text(groups) {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (/** @type {number[]} */ gs) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** @param {string} s canonical IPv6 text, or null */
function canonicalIpv6(s) {
  const groups = ipv6Groups(s);
  return groups !== null && ipv6Text(groups) === s ? groups : null;
}

/**
 * Rule 5.1.16: `address/prefix` in its one canonical spelling, without host bits or IPv4-mapped address.
 *
 * @param {string} s
 */
export function isCanonicalCidr(s) {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const addr = s.slice(0, slash);
  const prefixText = s.slice(slash + 1);
  if (!PREFIX.test(prefixText)) return false;
  const prefix = Number(prefixText);
  if (addr.includes(':')) {
    const groups = canonicalIpv6(addr);
    if (groups === null || prefix > 128) return false;
    const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
    if (mapped) return false;
    const value = groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
    return prefix === 128 || (value & ((1n << BigInt(128 - prefix)) - 1n)) === 0n;
  }
  if (!isIPv4(addr) || prefix > 32) return false;
  const octets = addr.split('.');
  // node:net accepts exactly the dotted quads without leading zeros; the check keeps that explicit.
  if (octets.some((o) => o.length > 1 && o.startsWith('0'))) return false;
  const value = octets.reduce((acc, o) => acc * 256 + Number(o), 0);
  return prefix === 32 || value % 2 ** (32 - prefix) === 0;
}

/**
 * Rule 5.1.15: an origin exactly as a browser serialises it (lower case, no default port, no path).
 *
 * @param {string} s
 */
export function isOrigin(s) {
  const m = ORIGIN.exec(s);
  if (m === null) return false;
  const [, scheme, , v6, port] = m;
  if (v6 !== undefined && canonicalIpv6(v6) === null) return false;
  if (port === undefined) return true;
  const n = Number(port);
  return n <= 65535 && n !== DEFAULT_PORTS[/** @type {'http' | 'https'} */ (scheme)];
}

/** Rule 5.1.3: text of 1 to 256 Unicode scalar values without control characters. */
const isText = (/** @type {string} */ s) =>
  !CONTROL.test(s) && codePoints(s) >= 1 && codePoints(s) <= TEXT_MAX;

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

/**
 * §5.1.20: `{"tok": n, "cost": n}`, at least one, nothing else; rebuilt with `tok` first.
 *
 * @param {unknown} v
 */
function checkBud(v) {
  if (!isPlainObject(v))
    throw new ClaimError('bud', 'must be an object {"tok": tokens, "cost": micro-units}');
  const bud = /** @type {Record<string, unknown>} */ (v);
  for (const name of Object.keys(bud)) {
    if (!BUDGET_ORDER.includes(name))
      throw new ClaimError(`bud.${name}`, 'is not a known member (tok, cost)');
  }
  /** @type {Record<string, number>} */
  const out = {};
  for (const name of BUDGET_ORDER) {
    if (Object.hasOwn(bud, name)) out[name] = int(`bud.${name}`, bud[name], 1, MAX_SAFE);
  }
  // `"bud":{}` would be a second spelling of "no budget".
  if (Object.keys(out).length === 0) throw new ClaimError('bud', 'must hold tok and/or cost');
  return out;
}

/**
 * §5.1.21: 1 to 3 quotas on distinct windows, each rebuilt in `w, calls, tok, cost` order; the entries
 * keep their order. That `uq` needs `uid` is checked with the other cross-member rules.
 *
 * @param {unknown} v
 */
function checkUq(v) {
  if (!Array.isArray(v)) throw new ClaimError('uq', 'must be an array');
  if (v.length < 1 || v.length > MAX_QUOTAS) {
    throw new ClaimError('uq', `must have between 1 and ${MAX_QUOTAS} entries`);
  }
  const seen = new Set();
  return v.map((entry, i) => {
    const at = `uq[${i}]`;
    if (!isPlainObject(entry)) {
      throw new ClaimError(at, 'must be an object {"w": window, "calls": n, "tok": n, "cost": n}');
    }
    const q = /** @type {Record<string, unknown>} */ (entry);
    for (const name of Object.keys(q)) {
      if (!QUOTA_ORDER.includes(name)) throw new ClaimError(`${at}.${name}`, 'is not a known member');
    }
    const w = q.w;
    if (typeof w !== 'string' || !WINDOWS.includes(w)) {
      throw new ClaimError(`${at}.w`, 'is required and must be "day", "month" or "all"');
    }
    if (seen.has(w)) throw new ClaimError(`${at}.w`, `window "${w}" appears twice`);
    seen.add(w);
    /** @type {Record<string, unknown>} */
    const out = { w };
    for (const name of QUOTA_ORDER.slice(1)) {
      if (Object.hasOwn(q, name)) out[name] = int(`${at}.${name}`, q[name], 1, MAX_SAFE);
    }
    if (Object.keys(out).length === 1) {
      throw new ClaimError(at, 'must set at least one of calls, tok and cost');
    }
    return out;
  });
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
  kref: (/** @type {unknown} */ v) =>
    str('kref', v, (s) => KEY_NAME.test(s), 'a key name of 1 to 64 characters from A-Z a-z 0-9 . _ -'),
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
    // `"ext":{}` would be a second spelling of "no extension" (§5.1.11).
    if (!Object.hasOwn(ext, 'rep_m')) throw new ClaimError('ext.rep_m', 'is required inside ext');
    out.rep_m = str('ext.rep_m', ext.rep_m, isText, `1 to ${TEXT_MAX} characters without control characters`);
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
  // §5.1.13-16: one format per entry, for minters and verifiers alike.
  models: (/** @type {unknown} */ v) =>
    list('models', v, MODELS_MAX, (x, f) =>
      str(f, x, isText, `1 to ${TEXT_MAX} characters without controls`),
    ),
  paths: (/** @type {unknown} */ v) =>
    list('paths', v, MAX_SAFE, (x, f) =>
      str(f, x, (s) => PATH.test(s), 'a path such as "/chat/completions" (no query or fragment)'),
    ),
  origins: (/** @type {unknown} */ v) =>
    list('origins', v, MAX_SAFE, (x, f) =>
      str(
        f,
        x,
        isOrigin,
        'an origin such as "https://app.example.com" (lower case, no default port, no path)',
      ),
    ),
  ips: (/** @type {unknown} */ v) =>
    list('ips', v, MAX_SAFE, (x, f) =>
      str(
        f,
        x,
        isCanonicalCidr,
        'a canonical CIDR range without host bits, like 203.0.113.0/24 or 2001:db8::/32',
      ),
    ),
  mtok: (/** @type {unknown} */ v) => int('mtok', v, 1, MAX_SAFE),
  mtok_mode: (/** @type {unknown} */ v) =>
    str('mtok_mode', v, (s) => s === 'clamp' || s === 'reject', '"clamp" or "reject"'),
  // §5.1.18: printable ASCII, because the uid is written into access logs.
  uid: (/** @type {unknown} */ v) =>
    str(
      'uid',
      v,
      (s) => s.length <= UID_MAX && PRINTABLE.test(s),
      `1 to ${UID_MAX} printable ASCII characters`,
    ),
  bud: checkBud,
  uq: checkUq,
  ssec: (/** @type {unknown} */ v) => int('ssec', v, 1, SESSION_SECONDS_MAX),
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
  if (Object.hasOwn(out, 'mtok_mode') && !Object.hasOwn(out, 'mtok')) {
    throw new ClaimError('mtok_mode', 'is only allowed together with mtok');
  }
  // Quotas are counted per (tenant, uid, window): without a uid there is nobody to count them against.
  if (Object.hasOwn(out, 'uq') && !Object.hasOwn(out, 'uid')) {
    throw new ClaimError('uq', 'is only allowed together with uid');
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
 * rebuilt the object in table order, and from `rate`, `bud` and the `uq` entries being rebuilt in their
 * members' order.
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
