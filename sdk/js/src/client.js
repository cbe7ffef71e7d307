/**
 * `RelayAPIClient`: everything a backend does with one `.rai` config — mint tokens, build relay URLs,
 * read its own tokens back, call the relay's helpers and admin API.
 *
 * Minting is delegated to generator.js, token opening to token.js, the wire to http.js; this file
 * decides which URL, headers and body each operation uses.
 *
 * @module
 */

import { signAdminRequest } from './admin.js';
import { keyringOf, loadConfig } from './config.js';
import { InvalidArgumentError } from './errors.js';
import { createToken } from './generator.js';
import { requestJson, requestStream } from './http.js';
import { MAX_TOKEN_CHARS, checkTime, openToken } from './token.js';

const USER_AGENT = 'relayapi-sdk-js/0.1.0';

/** Default deadline for an answer, and for each read of a stream: model calls can think for minutes. */
export const DEFAULT_TIMEOUT_SECONDS = 600;
/** Node's timers hold at most 2^31-1 ms and fire at once beyond that, so longer timeouts are refused. */
const MAX_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** `generateUrl` endpoint names (the original SDK's api types) → provider-relative paths. */
export const ENDPOINTS = Object.freeze({
  '': '',
  chat_completions: '/chat/completions',
  images_generations: '/images/generations',
  embeddings: '/embeddings',
});

const TOKEN_TEXT = /^rt1\.[A-Za-z0-9_-]+$/;
const TOKEN_ID = /^[0-9a-f]{32}$/;
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

export class RelayAPIClient {
  /** @type {import('./config.js').RaiConfig} */
  #config;
  /** @type {typeof fetch} */
  #fetch;
  /** @type {number} */
  #timeoutMs;
  /** @type {() => number} */
  #now;
  /** @type {import('./token.js').Keyring} */
  #keyring;

  /**
   * @param {unknown} config a `.rai` object or the path of a `.rai` file
   * @param {{ timeout?: number, fetch?: typeof fetch }} [options] `timeout` in seconds (default 600);
   *   `fetch` replaces the global fetch (e.g. for a proxy agent)
   * @throws {import('./errors.js').ConfigError}
   */
  constructor(config, options = {}) {
    this.#config = loadConfig(config);
    this.#keyring = keyringOf(this.#config);
    const { timeout = DEFAULT_TIMEOUT_SECONDS, fetch: fetchImpl = globalThis.fetch, ...rest } = options;
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
    this.#now = () => Math.floor(Date.now() / 1000);
  }

  /** `scheme://host[:port]` of the relay, from the `.rai`. */
  get origin() {
    return this.#config.origin;
  }

  /**
   * Header-form base URL (no token in it): give it to a provider SDK as `baseURL` and the token as its
   * API key; the relay reads it from `Authorization: Bearer`, `x-api-key` or `x-goog-api-key`.
   */
  get relayBaseUrl() {
    return this.#config.origin + this.#config.basePath;
  }

  /**
   * Mints a fresh token: new token id and salt from the CSPRNG, `iat` from the system clock. Same
   * options and defaults as `TokenGenerator#createToken`.
   *
   * @param {import('../types/index.js').CreateTokenOptions} options
   * @returns {string}
   */
  createToken(options) {
    return createToken(this.#config, options);
  }

  /**
   * A path-form relay URL carrying `token`: `{scheme}://{host}[:{port}]{base_path}{token}{endpoint}`.
   *
   * @param {string} token
   * @param {string} [endpoint] "" for the base URL (what a provider SDK takes as `baseURL`),
   *   "chat_completions", "images_generations", "embeddings", or a provider-relative path like "/v1/messages"
   * @returns {string}
   * @throws {InvalidArgumentError}
   */
  generateUrl(token, endpoint = '') {
    const t = checkTokenText(token);
    return `${this.#config.origin}${this.#config.basePath}${t}${endpointPath(endpoint)}`;
  }

  /**
   * A query-form endpoint URL, the original RelayAPI's shape: `{base_path}{endpoint}?token={token}`.
   *
   * @param {string} token
   * @param {string} [endpoint] as for {@link generateUrl}, default "chat_completions"; "" is refused
   *   because the query form has no base URL a provider SDK could extend
   * @returns {string}
   * @throws {InvalidArgumentError}
   */
  generateQueryUrl(token, endpoint = 'chat_completions') {
    const t = checkTokenText(token);
    const path = endpointPath(endpoint);
    if (path === '') throw new InvalidArgumentError('endpoint', 'the query form needs an endpoint');
    return `${this.#config.origin}${this.#config.basePath}${path.slice(1)}?token=${t}`;
  }

  /**
   * Mints a token and returns its base URL in one step, ready for a provider SDK's `baseURL`.
   *
   * @param {import('../types/index.js').CreateTokenOptions} options as for {@link createToken}
   * @returns {string}
   */
  generateBaseUrl(options) {
    return this.generateUrl(this.createToken(options), '');
  }

  /**
   * Authenticates a token of this config's tenant (minted with the current or a previous key) and
   * returns its claims (§7 steps 1-6). Expiry is deliberately not checked, so an expired token can still
   * be inspected or used for usage queries; see {@link verifyToken}.
   *
   * @param {string} token
   * @returns {Record<string, unknown>}
   * @throws {import('./errors.js').InvalidTokenError} for every failure, without saying which
   */
  decodeToken(token) {
    return openToken(token, this.#keyring).claims;
  }

  /**
   * {@link decodeToken}, then the time checks of §7 steps 7-8.
   *
   * @param {string} token
   * @param {{ now?: number, leeway?: number }} [options] `now` in UTC seconds (default: the system
   *   clock), `leeway` in seconds of tolerated clock skew (default 0; the relay's default is 60)
   * @returns {Record<string, unknown>}
   * @throws {import('./errors.js').InvalidTokenError} or its subclasses TokenExpiredError and
   *   TokenNotYetValidError for authentic tokens outside their lifetime
   */
  verifyToken(token, { now, leeway = 0 } = {}) {
    const at = now ?? this.#now();
    if (!Number.isSafeInteger(at) || at < 0) throw new InvalidArgumentError('now', 'must be UTC seconds');
    if (!Number.isSafeInteger(leeway) || leeway < 0) {
      throw new InvalidArgumentError('leeway', 'must be a non-negative integer number of seconds');
    }
    const claims = this.decodeToken(token);
    checkTime(claims, at, leeway);
    return claims;
  }

  /**
   * Chat completion through the relay (OpenAI-compatible providers).
   *
   * @param {{ token: string, messages: unknown[], model: string, stream?: boolean, signal?: AbortSignal,
   *           [param: string]: unknown }} request extra members go into the JSON body as they are
   * @returns {Promise<unknown>} the completion, or with `stream: true` an async iterator of chunks
   */
  async chat({ token, messages, model, stream = false, signal, ...params }) {
    if (!Array.isArray(messages)) throw new InvalidArgumentError('messages', 'must be an array');
    if (typeof model !== 'string' || model === '') throw new InvalidArgumentError('model', 'is required');
    if (typeof stream !== 'boolean') throw new InvalidArgumentError('stream', 'must be a boolean');
    const body = { ...params, model, messages, ...(stream ? { stream: true } : {}) };
    const spec = this.#post(token, 'chat_completions', body, signal);
    return stream ? requestStream(spec) : requestJson(spec);
  }

  /**
   * Image generation through the relay.
   *
   * @param {{ token: string, prompt: string, signal?: AbortSignal, [param: string]: unknown }} request
   * @returns {Promise<unknown>}
   */
  async generateImage({ token, prompt, signal, ...params }) {
    if (typeof prompt !== 'string' || prompt === '') throw new InvalidArgumentError('prompt', 'is required');
    return requestJson(this.#post(token, 'images_generations', { ...params, prompt }, signal));
  }

  /**
   * Embeddings through the relay.
   *
   * @param {{ token: string, input: unknown, model: string, signal?: AbortSignal,
   *           [param: string]: unknown }} request
   * @returns {Promise<unknown>}
   */
  async createEmbedding({ token, input, model, signal, ...params }) {
    if (input === undefined || input === null) throw new InvalidArgumentError('input', 'is required');
    if (typeof model !== 'string' || model === '') throw new InvalidArgumentError('model', 'is required');
    return requestJson(this.#post(token, 'embeddings', { ...params, model, input }, signal));
  }

  /**
   * `GET /health` of the relay.
   *
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {Promise<unknown>} e.g. `{ status: "ok", version, uptime_secs, requests }`
   */
  async healthCheck({ signal } = {}) {
    return requestJson({
      fetch: this.#fetch,
      method: 'GET',
      url: `${this.#config.origin}/health`,
      headers: { 'user-agent': USER_AGENT },
      timeoutMs: this.#timeoutMs,
      signal,
    });
  }

  /**
   * Usage of one token (docs/admin-api.md `GET /admin/v1/tokens/{id}`).
   *
   * @param {string} tokenOrId a token (opened locally to find its id) or a 32-hex token id
   * @returns {Promise<unknown>}
   */
  async getUsage(tokenOrId) {
    return this.#admin('GET', `/admin/v1/tokens/${this.#tokenId(tokenOrId)}`, '');
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
   * @param {number} ts UTC seconds
   * @returns {Promise<unknown>} `{ tenant_id, revoked_before }`
   */
  async revokeBefore(ts) {
    if (!Number.isSafeInteger(ts) || ts < 0) throw new InvalidArgumentError('ts', 'must be UTC seconds');
    return this.#admin('POST', '/admin/v1/revoke-before', JSON.stringify({ before: ts }));
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
    const authorization = signAdminRequest({
      kid: this.#config.keyId,
      tenantKey: this.#config.key,
      method,
      target,
      body,
      ts: this.#now(),
    });
    return requestJson({
      fetch: this.#fetch,
      method,
      url: this.#config.origin + target,
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
