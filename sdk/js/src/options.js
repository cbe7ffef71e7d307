/**
 * The `createToken` options (sdk/api.json `token_options`) and their mapping to claims (§5).
 *
 * The option names mirror the Python SDK's keyword arguments in camelCase, with the same defaults and
 * units (seconds, UTC). The mapping is a pure function with the time and token id passed in, so tests can
 * pin it; a claim check failure is reported back in terms of the option the caller wrote. Minting is
 * generator.js's job.
 *
 * @module
 */

import { PRINTABLE, UID_MAX } from './claims.js';
import { InvalidArgumentError } from './errors.js';
import { JsonSyntaxError, parseStrictJson } from './json.js';
import { budgetClaim, quotasClaim } from './spend-options.js';

export const DEFAULT_MAX_CALLS = 100;
export const DEFAULT_EXPIRE_SECONDS = 3600;
export const DEFAULT_PROVIDER = 'openai';

/** Option name → claim name; also used to name the option when a claim check fails. */
const OPTION_CLAIM = Object.freeze({
  apiKey: 'key',
  keyRef: 'kref',
  baseUrl: 'url',
  maxCalls: 'max',
  provider: 'prv',
  extInfo: 'ext',
  rateLimit: 'rate',
  maxConcurrent: 'conc',
  allowedModels: 'models',
  allowedEndpoints: 'paths',
  allowedOrigins: 'origins',
  allowedIps: 'ips',
  maxTokens: 'mtok',
  maxTokensMode: 'mtok_mode',
  userId: 'uid',
  budgetTokens: 'bud',
  userQuotas: 'uq',
  sessionSeconds: 'ssec',
});
const CLAIM_OPTION = Object.fromEntries(Object.entries(OPTION_CLAIM).map(([o, c]) => [c, o]));
/** Every `createToken` option, in the order of sdk/api.json's `token_options`. */
export const TOKEN_OPTIONS = Object.freeze([
  'apiKey',
  'keyRef',
  'maxCalls',
  'expireSeconds',
  'provider',
  'extInfo',
  'baseUrl',
  'rateLimit',
  'maxConcurrent',
  'allowedModels',
  'allowedEndpoints',
  'allowedOrigins',
  'allowedIps',
  'maxTokens',
  'maxTokensMode',
  'userId',
  'budgetTokens',
  'budgetCost',
  'userQuotas',
  'sessionSeconds',
]);
const KNOWN_OPTIONS = new Set(TOKEN_OPTIONS);

// Minting hygiene beyond §5, which leaves these formats open (the verifier accepts any string). The
// Python SDK's create_token applies the same rules, so both SDKs mint the same tokens from the same input.
// config.json names server-side keys like key ids.
const KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/;
// A provider-relative path as the relay matches it: exact, query excluded.
const ENDPOINT = /^\/[\x21-\x7e]*$/;
// A browser origin is scheme://host[:port] with nothing after it; an entry with a path never matches
// the Origin header, so it is refused rather than silently useless.
const ORIGIN = /^https?:\/\/(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
const MODEL_MAX = 256; // characters of one allowedModels entry, the same bound as ext.rep_m

/** @type {[string, (s: string) => boolean, string][]} */
const LIST_RULES = [
  ['allowedModels', (s) => s.length > 0 && [...s].length <= MODEL_MAX, `1 to ${MODEL_MAX} characters`],
  [
    'allowedEndpoints',
    (s) => ENDPOINT.test(s) && !/[?#]/.test(s),
    'a path such as "/chat/completions" (no query)',
  ],
  ['allowedOrigins', (s) => ORIGIN.test(s), 'an origin such as "https://app.example.com" (no path)'],
];

/**
 * The hygiene checks above, on options whose types are right; wrong types are left to the claim checks,
 * which name them too.
 *
 * @param {Record<string, unknown>} o
 */
function checkMintHygiene(o) {
  if (typeof o.keyRef === 'string' && !KEY_NAME.test(o.keyRef)) {
    throw new InvalidArgumentError(
      'keyRef',
      'must be a key name of 1 to 64 characters from A-Z a-z 0-9 . _ -',
    );
  }
  if (typeof o.baseUrl === 'string' && /[?#]/.test(o.baseUrl)) {
    throw new InvalidArgumentError('baseUrl', 'must be a base URL without a query or fragment');
  }
  for (const [name, ok, what] of LIST_RULES) {
    const list = o[name];
    if (!Array.isArray(list)) continue;
    list.forEach((entry, i) => {
      if (typeof entry === 'string' && !ok(entry)) {
        throw new InvalidArgumentError(`${name}[${i}]`, `must be ${what}`);
      }
    });
  }
  // The uid ends up in access logs, where control characters could forge log lines; the verifier only
  // checks its length because the shared vectors carry such a uid.
  const uid = o.userId;
  if (
    uid !== undefined &&
    uid !== null &&
    !(typeof uid === 'string' && uid.length <= UID_MAX && PRINTABLE.test(uid))
  ) {
    throw new InvalidArgumentError('userId', `must be 1 to ${UID_MAX} printable ASCII characters`);
  }
}

/**
 * `extInfo` as the original SDK took it: "" (none), a JSON string, or an object with only `rep_m`.
 *
 * @param {unknown} extInfo
 * @returns {unknown} the `ext` claim, or undefined for none
 */
function extClaim(extInfo) {
  if (extInfo === undefined || extInfo === null || extInfo === '') return undefined;
  /** @type {unknown} */
  let ext = extInfo;
  if (typeof extInfo === 'string') {
    try {
      ext = parseStrictJson(extInfo);
    } catch (err) {
      if (err instanceof JsonSyntaxError) {
        throw new InvalidArgumentError('extInfo', 'must be "", a JSON object text or an object');
      }
      throw err;
    }
  }
  // An object without rep_m asks for nothing; writing `"ext":{}` would only lengthen the token.
  if (typeof ext === 'object' && ext !== null && Object.keys(ext).length === 0) return undefined;
  return ext;
}

/**
 * Builds the claims for one token from `createToken` options (§5 mapping), without checking them.
 *
 * @param {import('../types/index.js').CreateTokenOptions} options
 * @param {{ tenant: string, now: number, jti: string }} parts
 * @returns {Record<string, unknown>}
 * @throws {InvalidArgumentError} for unknown options and shapes the claim checks cannot name
 */
export function claimsFromOptions(options, { tenant, now, jti }) {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidArgumentError('options', 'must be an object');
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) throw new InvalidArgumentError(name, 'is not a createToken option');
  }
  const o = /** @type {Record<string, unknown>} */ (options);
  const expireSeconds = o.expireSeconds === undefined ? DEFAULT_EXPIRE_SECONDS : o.expireSeconds;
  if (
    typeof expireSeconds !== 'number' ||
    !Number.isSafeInteger(expireSeconds) ||
    expireSeconds < 1 ||
    now + expireSeconds > Number.MAX_SAFE_INTEGER
  ) {
    throw new InvalidArgumentError('expireSeconds', 'must be a positive integer number of seconds');
  }

  /** @type {Record<string, unknown>} */
  const claims = { jti, tid: tenant, iat: now, exp: now + expireSeconds };
  // Only a missing provider takes the default: `null` is refused (as None is in Python), not guessed.
  claims.prv = o.provider === undefined ? DEFAULT_PROVIDER : o.provider;
  // `null` means "absent" for every optional limit, as `None` does in Python; only maxCalls has a
  // default other than absent, so `maxCalls: null` is how a caller asks for unlimited calls.
  const maxCalls = o.maxCalls === undefined ? DEFAULT_MAX_CALLS : o.maxCalls;
  const rate = o.rateLimit;
  if (rate !== undefined && rate !== null && !(Array.isArray(rate) && rate.length === 2)) {
    throw new InvalidArgumentError('rateLimit', 'must be [calls, seconds]');
  }
  const values = {
    key: o.apiKey,
    kref: o.keyRef,
    url: o.baseUrl,
    max: maxCalls,
    ext: extClaim(o.extInfo),
    rate: Array.isArray(rate) ? { n: rate[0], s: rate[1] } : undefined,
    conc: o.maxConcurrent,
    models: o.allowedModels,
    paths: o.allowedEndpoints,
    origins: o.allowedOrigins,
    ips: o.allowedIps,
    mtok: o.maxTokens,
    mtok_mode: o.maxTokensMode,
    uid: o.userId,
    bud: budgetClaim(o.budgetTokens, o.budgetCost),
    uq: quotasClaim(o.userQuotas, o.userId),
    ssec: o.sessionSeconds,
  };
  for (const [claim, value] of Object.entries(values)) {
    if (value !== undefined && value !== null) claims[claim] = value;
  }
  if (claims.key === undefined && claims.kref === undefined) {
    throw new InvalidArgumentError('apiKey', 'give either apiKey or keyRef');
  }
  if (claims.key !== undefined && claims.kref !== undefined) {
    throw new InvalidArgumentError('keyRef', 'give either apiKey or keyRef, not both');
  }
  if (claims.mtok_mode !== undefined && claims.mtok === undefined) {
    throw new InvalidArgumentError('maxTokensMode', 'only makes sense together with maxTokens');
  }
  checkMintHygiene(o);
  return claims;
}

/**
 * Rewrites a claim check failure in terms of the option the caller wrote.
 *
 * @param {import('./claims.js').ClaimError} err
 * @returns {InvalidArgumentError}
 */
export function asArgumentError(err) {
  const [head, ...rest] = err.field.split(/(?=[.[])/);
  const option = CLAIM_OPTION[head];
  let field = option === undefined ? err.field : option + rest.join('');
  // bud is two options; the claim check names the member, so the option follows from it.
  if (field === 'budgetTokens.tok') field = 'budgetTokens';
  if (field === 'budgetTokens.cost') field = 'budgetCost';
  // rateLimit is a [calls, seconds] pair, so its members are positions rather than names.
  if (field === 'rateLimit.n') field = 'rateLimit[0]';
  if (field === 'rateLimit.s') field = 'rateLimit[1]';
  return new InvalidArgumentError(field, err.detail);
}
