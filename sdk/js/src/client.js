/**
 * `RelayAPIClient`: everything a backend does with one `.rai` config — mint tokens, build relay URLs,
 * read its own tokens back, call the relay's helpers and admin API.
 *
 * Minting and reading tokens are inherited from generator.js's `TokenGenerator` (as in the Python SDK),
 * the wire is http.js; this file decides which URL, headers and body each operation uses. Names,
 * arguments and defaults mirror the Python SDK's through sdk/api.json.
 *
 * @module
 */

import { signAdminRequest, signAdminRequestEcc } from './admin.js';
import { PRINTABLE, UID_MAX } from './claims.js';
import { InvalidArgumentError } from './errors.js';
import { TokenGenerator, configOf } from './generator.js';
import { requestJson, requestStream } from './http.js';
import { MAX_TOKEN_CHARS } from './token.js';

const USER_AGENT = 'relayapi-tokens-js/2.0.0';

/**
 * Seconds of silence accepted: for the answer's head and for each read of its body. A long answer
 * that keeps arriving is never cut (model calls stream for minutes); the same in the Python SDK.
 */
export const DEFAULT_TIMEOUT_SECONDS = 600;
/** Node's timers hold at most 2^31-1 ms and fire at once beyond that, so longer timeouts are refused. */
const MAX_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
/**
 * How far past this machine's clock `revokeBefore` may reach, in seconds: the relay's default
 * `token.clock_skew`. A later time would refuse every token minted until then, so it is a mistake
 * (often `Date.now()`, which is milliseconds).
 */
export const MAX_CLOCK_SKEW_SECONDS = 60;

/** Endpoint names (the original SDK's api types) → provider-relative paths. */
export const ENDPOINTS = Object.freeze({
  '': '',
  chat_completions: '/chat/completions',
  images_generations: '/images/generations',
  embeddings: '/embeddings',
});

const TOKEN_TEXT = /^rt1\.[A-Za-z0-9_-]+$/;
const TOKEN_ID = /^[0-9a-f]{32}$/;
/** RFC 3986 unreserved: the only bytes a user id keeps unescaped in its admin path segment. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
// A provider-relative path as it may appear in a URL: no query, fragment, spaces or dot segments.
const ENDPOINT_PATH = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/;

/**
 * @param {unknown} token
 * @returns {string}
 */
function checkTokenText(token) {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS || !TOKEN_TEXT.test(token)) {
    throw new InvalidArgumentError('token', 'must be a token string starting with "rt1."');
  }
  return token;
}

/**
 * @param {unknown} endpoint
 * @returns {string} provider-relative path, "" for the base URL
 */
function endpointPath(endpoint) {
  if (typeof endpoint === 'string') {
    if (Object.hasOwn(ENDPOINTS, endpoint)) {
      return ENDPOINTS[/** @type {keyof typeof ENDPOINTS} */ (endpoint)];
    }
    if (ENDPOINT_PATH.test(endpoint)) return endpoint;
  }
  throw new InvalidArgumentError(
    'endpoint',
    `must be one of ${Object.keys(ENDPOINTS)
      .map((e) => JSON.stringify(e))
      .join(', ')} or a path such as "/v1/messages"`,
  );
}

/**
 * A user id as one path segment: the uid rule of the token format (§5.1.18), then every byte outside
 * RFC 3986 unreserved as %XX (upper-case hex), the same bytes the Python SDK sends. `.` and `..` are
 * refused: `fetch` resolves them as dot segments (even escaped), so they could never reach the relay.
 *
 * @param {unknown} userId
 * @returns {string}
 */
function userSegment(userId) {
  if (typeof userId !== 'string' || userId.length > UID_MAX || !PRINTABLE.test(userId)) {
    throw new InvalidArgumentError('userId', `must be 1 to ${UID_MAX} printable ASCII characters`);
  }
  if (userId === '.' || userId === '..') {
    throw new InvalidArgumentError('userId', 'cannot be "." or "..", which URLs treat as dot segments');
  }
  return [...userId]
    .map((c) => (UNRESERVED.test(c) ? c : `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

/**
 * Checks a `revokeBefore` time against the clock: UTC seconds, at most {@link MAX_CLOCK_SKEW_SECONDS}
 * after `now`. Pure, for tests.
 *
 * @param {unknown} ts
 * @param {number} now UTC seconds
 * @throws {InvalidArgumentError}
 */
export function checkRevokeBefore(ts, now) {
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) {
    throw new InvalidArgumentError('ts', 'must be UTC seconds as a non-negative integer');
  }
  if (ts > now + MAX_CLOCK_SKEW_SECONDS) {
    const seconds = Math.floor(ts / 1000);
    const hint =
      seconds >= 1e9 && seconds <= now + MAX_CLOCK_SKEW_SECONDS
        ? '; it looks like milliseconds (Date.now()): pass Math.floor(Date.now() / 1000)'
        : '';
    throw new InvalidArgumentError(
      'ts',
      `${ts} is more than ${MAX_CLOCK_SKEW_SECONDS} s after now (${now}): revoking up to a future time ` +
        `would also refuse every token minted until then${hint}`,
    );
  }
}

/**
 * Everything a backend does with one `.rai` config: mint tokens and URLs (inherited from
 * {@link TokenGenerator}), call the relay's helpers and its admin API.
 */
export class RelayAPIClient extends TokenGenerator {
  /** @type {typeof fetch} */
  #fetch;
  /** @type {number} */
  #timeoutMs;

  /**
   * @param {unknown} config a `.rai` object or the path of a `.rai` file
   * @param {{ timeout?: number, fetch?: typeof fetch }} [options] `timeout` in seconds of silence per
   *   wait (default 600); `fetch` replaces the global fetch (e.g. for a proxy agent)
   * @throws {import('./errors.js').ConfigError}
   */
  constructor(
    config,
    { timeout = DEFAULT_TIMEOUT_SECONDS, fetch: fetchImpl = globalThis.fetch, ...rest } = {},
  ) {
    super(config);
    const unknown = Object.keys(rest);
    if (unknown.length > 0) throw new InvalidArgumentError(unknown[0], 'is not a client option');
    if (typeof timeout !== 'number' || !(timeout > 0) || timeout > MAX_TIMEOUT_SECONDS) {
      throw new InvalidArgumentError(
        'timeout',
        `must be a positive number of seconds up to ${MAX_TIMEOUT_SECONDS}`,
      );
    }
    if (typeof fetchImpl !== 'function') throw new InvalidArgumentError('fetch', 'must be a function');
    this.#fetch = fetchImpl;
    this.#timeoutMs = timeout * 1000;
  }

  /** `scheme://host[:port]` of the relay, from the `.rai`. */
  get origin() {
    return configOf(this).origin;
  }

  /**
   * Header-form base URL (no token in it): give it to a provider SDK as `baseURL` and the token as its
   * API key; the relay reads it from `Authorization: Bearer`, `x-api-key` or `x-goog-api-key`.
   */
  get relayBaseUrl() {
    return configOf(this).origin + configOf(this).basePath;
  }

  /**
   * Mints a token (options as for {@link createToken}) and returns the path-form URL carrying it: with
   * the default `endpoint: ""` the base URL a provider SDK takes as `baseURL`.
   *
   * @param {import('../types/index.js').GenerateUrlOptions} options
   * @returns {string}
   * @throws {InvalidArgumentError}
   */
  generateUrl(options) {
    if (typeof options === 'string') {
      // 1.x took an existing token here; say where that went instead of "must be an object".
      throw new InvalidArgumentError(
        'options',
        'generateUrl mints a token from options since 2.0; use urlForToken(token, endpoint) for an existing token',
      );
    }
    const { endpoint = '', ...tokenOptions } = options ?? {};
    endpointPath(endpoint); // fail on a bad endpoint before minting anything
    return this.urlForToken(this.createToken(tokenOptions), endpoint);
  }

  /**
   * A path-form relay URL carrying an existing token:
   * `{scheme}://{host}[:{port}]{base_path}{token}{endpoint}`.
   *
   * @param {string} token
   * @param {string} [endpoint] "" for the base URL (what a provider SDK takes as `baseURL`),
   *   "chat_completions", "images_generations", "embeddings", or a provider-relative path like "/v1/messages"
   * @returns {string}
   * @throws {InvalidArgumentError}
   */
  urlForToken(token, endpoint = '') {
    const t = checkTokenText(token);
    return `${this.relayBaseUrl}${t}${endpointPath(endpoint)}`;
  }

  /**
   * A query-form endpoint URL, the original RelayAPI's shape: `{base_path}{endpoint}?token={token}`.
   *
   * @param {string} token
   * @param {string} [endpoint] as for {@link urlForToken}, default "chat_completions"; "" is refused
   *   because the query form has no base URL a provider SDK could extend
   * @returns {string}
   * @throws {InvalidArgumentError}
   */
  queryUrlForToken(token, endpoint = 'chat_completions') {
    const t = checkTokenText(token);
    const path = endpointPath(endpoint);
    if (path === '') throw new InvalidArgumentError('endpoint', 'the query form needs an endpoint');
    return `${this.relayBaseUrl}${path.slice(1)}?token=${t}`;
  }

  /**
   * Chat completion through the relay (OpenAI-compatible providers).
   *
   * @param {string} token
   * @param {{ model: string, messages: unknown[], stream?: boolean, signal?: AbortSignal,
   *           [param: string]: unknown }} request further members go into the JSON body as they are
   * @returns {Promise<unknown>} the completion, or with `stream: true` an async iterator of chunks
   */
  async chatCompletions(token, { model, messages, stream = false, signal, ...body }) {
    if (typeof model !== 'string' || model === '') throw new InvalidArgumentError('model', 'is required');
    if (!Array.isArray(messages)) throw new InvalidArgumentError('messages', 'must be an array');
    if (typeof stream !== 'boolean') throw new InvalidArgumentError('stream', 'must be a boolean');
    const payload = { ...body, model, messages, ...(stream ? { stream: true } : {}) };
    const spec = this.#post(token, 'chat_completions', payload, signal);
    return stream ? requestStream(spec) : requestJson(spec);
  }

  /**
   * Image generation through the relay.
   *
   * @param {string} token
   * @param {{ prompt: string, signal?: AbortSignal, [param: string]: unknown }} request
   * @returns {Promise<unknown>}
   */
  async imagesGenerations(token, { prompt, signal, ...body }) {
    if (typeof prompt !== 'string' || prompt === '') throw new InvalidArgumentError('prompt', 'is required');
    return requestJson(this.#post(token, 'images_generations', { ...body, prompt }, signal));
  }

  /**
   * Embeddings through the relay.
   *
   * @param {string} token
   * @param {{ model: string, input: unknown, signal?: AbortSignal, [param: string]: unknown }} request
   * @returns {Promise<unknown>}
   */
  async embeddings(token, { model, input, signal, ...body }) {
    if (typeof model !== 'string' || model === '') throw new InvalidArgumentError('model', 'is required');
    if (input === undefined || input === null) throw new InvalidArgumentError('input', 'is required');
    return requestJson(this.#post(token, 'embeddings', { ...body, model, input }, signal));
  }

  /**
   * `GET /health` of the relay.
   *
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {Promise<unknown>} e.g. `{ status: "ok", version }`
   */
  async healthCheck({ signal } = {}) {
    return requestJson({
      fetch: this.#fetch,
      method: 'GET',
      url: `${this.origin}/health`,
      headers: { 'user-agent': USER_AGENT },
      timeoutMs: this.#timeoutMs,
      signal,
    });
  }

  /**
   * Usage of one token (docs/admin-api.md `GET /admin/v1/tokens/{id}`): calls, and the `tokens` and
   * `cost` its calls used. The budget is not in it (the relay only gets the id): it is the token's `bud`.
   *
   * @param {string} tokenOrId a token (opened locally to find its id) or a 32-hex token id
   * @returns {Promise<unknown>}
   */
  async getUsage(tokenOrId) {
    return this.#admin('GET', `/admin/v1/tokens/${this.#tokenId(tokenOrId)}`, '');
  }

  /**
   * Usage of one end user of this tenant (docs/admin-api.md `GET /admin/v1/users/{uid}/usage`): what
   * the user's tokens used in the current UTC day and month and in all time.
   *
   * @param {string} userId the `userId` the tokens were minted with
   * @returns {Promise<unknown>} `{ tenant_id, user_id, windows: { day, month, all } }`
   * @throws {InvalidArgumentError} for a user id no token can carry, before sending
   */
  async getUserUsage(userId) {
    return this.#admin('GET', `/admin/v1/users/${userSegment(userId)}/usage`, '');
  }

  /**
   * Revokes one token on every relay sharing the store. Idempotent.
   *
   * @param {string} tokenOrId
   * @returns {Promise<unknown>} the usage document with `revoked: true`
   */
  async revoke(tokenOrId) {
    return this.#admin('POST', `/admin/v1/tokens/${this.#tokenId(tokenOrId)}/revoke`, '');
  }

  /**
   * Revokes every token of this tenant issued strictly before `ts`.
   *
   * @param {number} ts UTC seconds, at most {@link MAX_CLOCK_SKEW_SECONDS} after this machine's clock
   *   (`Date.now()` is milliseconds: pass `Math.floor(Date.now() / 1000)`)
   * @returns {Promise<unknown>} `{ tenant_id, revoked_before }`
   * @throws {InvalidArgumentError} for anything else, before sending
   */
  async revokeBefore(ts) {
    checkRevokeBefore(ts, Math.floor(Date.now() / 1000));
    return this.#admin('POST', '/admin/v1/revoke-before', JSON.stringify({ before: ts }));
  }

  // -- deprecated names (1.x), kept as thin wrappers ----------------------------------------------

  /**
   * @deprecated since 2.0: use {@link generateUrl}.
   * @param {import('../types/index.js').CreateTokenOptions} options
   */
  generateBaseUrl(options) {
    return this.generateUrl({ ...options, endpoint: '' });
  }

  /**
   * @deprecated since 2.0: use {@link queryUrlForToken}.
   * @param {string} token
   * @param {string} [endpoint]
   */
  generateQueryUrl(token, endpoint = 'chat_completions') {
    return this.queryUrlForToken(token, endpoint);
  }

  /**
   * @deprecated since 2.0: use {@link chatCompletions}`(token, request)`.
   * @param {{ token: string, model: string, messages: unknown[], stream?: boolean, signal?: AbortSignal,
   *           [param: string]: unknown }} request
   */
  async chat({ token, ...request }) {
    return this.chatCompletions(token, request);
  }

  /**
   * @deprecated since 2.0: use {@link imagesGenerations}`(token, request)`.
   * @param {{ token: string, prompt: string, signal?: AbortSignal, [param: string]: unknown }} request
   */
  async generateImage({ token, ...request }) {
    return this.imagesGenerations(token, request);
  }

  /**
   * @deprecated since 2.0: use {@link embeddings}`(token, request)`.
   * @param {{ token: string, model: string, input: unknown, signal?: AbortSignal,
   *           [param: string]: unknown }} request
   */
  async createEmbedding({ token, ...request }) {
    return this.embeddings(token, request);
  }

  /**
   * @param {unknown} tokenOrId
   * @returns {string}
   */
  #tokenId(tokenOrId) {
    if (typeof tokenOrId === 'string' && TOKEN_ID.test(tokenOrId)) return tokenOrId;
    if (typeof tokenOrId === 'string' && tokenOrId.startsWith('rt1.')) {
      // Expired tokens are exactly the ones whose usage one wants to look at, so time is not checked.
      return /** @type {string} */ (this.decodeToken(tokenOrId).jti);
    }
    throw new InvalidArgumentError('tokenOrId', 'must be a token ("rt1....") or a 32-hex token id');
  }

  /**
   * @param {string} method
   * @param {string} target
   * @param {string} body
   */
  async #admin(method, target, body) {
    const config = configOf(this);
    const ts = Math.floor(Date.now() / 1000);
    const authorization =
      config.ecc === null
        ? signAdminRequest({
            kid: config.keyId,
            tenantKey: /** @type {Buffer} */ (config.key),
            method,
            target,
            body,
            ts,
          })
        : signAdminRequestEcc({
            kid: config.ecc.signerId,
            signingKey: config.ecc.signingKey,
            method,
            target,
            body,
            ts,
          });
    return requestJson({
      fetch: this.#fetch,
      method,
      url: this.origin + target,
      headers: {
        authorization,
        'user-agent': USER_AGENT,
        ...(body === '' ? {} : { 'content-type': 'application/json' }),
      },
      body: method === 'GET' ? undefined : body,
      timeoutMs: this.#timeoutMs,
    });
  }

  /**
   * A provider call in the header form: the token travels in `Authorization`, never in the URL, so it
   * cannot end up in an access log on the way.
   *
   * @param {unknown} token
   * @param {keyof typeof ENDPOINTS} endpoint
   * @param {unknown} body
   * @param {AbortSignal | undefined} signal
   * @returns {import('./http.js').RequestSpec}
   */
  #post(token, endpoint, body, signal) {
    return {
      fetch: this.#fetch,
      method: 'POST',
      url: this.relayBaseUrl + ENDPOINTS[endpoint].slice(1),
      headers: {
        authorization: `Bearer ${checkTokenText(token)}`,
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
      },
      body: JSON.stringify(body),
      timeoutMs: this.#timeoutMs,
      signal,
    };
  }
}
