/**
 * Error classes of relayapi-tokens.
 *
 * Every error the SDK throws on purpose is a `RelayAPIError` with a stable string `code`, so callers can
 * branch on `err.code` without depending on class identity (which breaks when two copies of the package
 * end up in one bundle) or on message wording (which may improve between releases). The Python SDK's
 * exceptions carry the same classes and codes; sdk/api.json lists them and both test suites check it.
 *
 * @module
 */

/** Base class of every error thrown by relayapi-tokens. */
export class RelayAPIError extends Error {
  /** @type {string} */
  static code = 'ERR_RELAYAPI';

  /**
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(message, options) {
    super(message, options);
    this.name = this.constructor.name;
    /** Stable machine-readable code; see the class list in the README. */
    this.code = /** @type {typeof RelayAPIError} */ (this.constructor).code;
  }
}

/** The `.rai` client config is missing, unreadable or has a field that breaks docs/client-config.md. */
export class ConfigError extends RelayAPIError {
  static code = 'ERR_CONFIG';

  /**
   * @param {string} field dotted path of the offending field, e.g. `crypto.key`; `<file>` when the file
   *   cannot be read or parsed, `<config>` when the argument is neither a path nor an object
   * @param {string} message what a valid value looks like
   * @param {ErrorOptions} [options]
   */
  constructor(field, message, options) {
    super(`invalid .rai config: ${field}: ${message}`, options);
    this.field = field;
  }
}

/** An argument of an SDK call is out of range or of the wrong type. */
export class InvalidArgumentError extends RelayAPIError {
  static code = 'ERR_INVALID_ARGUMENT';

  /**
   * @param {string} param name of the option or argument as the caller spelled it, e.g. `maxCalls`
   * @param {string} message what a valid value looks like
   */
  constructor(param, message) {
    super(`${param}: ${message}`);
    this.param = param;
  }
}

/**
 * A token failed verification (docs/token-format.md §7 steps 1-6). Deliberately carries no detail:
 * telling apart "bad base64" from "bad tag" from "bad claims" would only help somebody forging tokens.
 */
export class InvalidTokenError extends RelayAPIError {
  static code = 'ERR_INVALID_TOKEN';

  constructor() {
    super('invalid token');
  }
}

/**
 * The token is authentic but `now >= exp + leeway` (§7 step 8); `claims` holds the verified claims.
 * A subclass of InvalidTokenError, as in the Python SDK, so one catch covers "this token cannot be used".
 */
export class TokenExpiredError extends InvalidTokenError {
  static code = 'ERR_TOKEN_EXPIRED';

  /** @param {Record<string, unknown>} claims */
  constructor(claims) {
    super();
    this.message = 'token expired';
    this.claims = claims;
  }
}

/** The token is authentic but `iat > now + leeway` (§7 step 7): the minter's clock is ahead. */
export class TokenNotYetValidError extends InvalidTokenError {
  static code = 'ERR_TOKEN_NOT_YET_VALID';

  /** @param {Record<string, unknown>} claims */
  constructor(claims) {
    super();
    this.message = 'token not yet valid';
    this.claims = claims;
  }
}

/**
 * The token is authentic but `exp - iat` exceeds the verifier's `maxLifetime` (§7 step 9, the relay's
 * `token_lifetime_too_long`).
 */
export class TokenLifetimeTooLongError extends InvalidTokenError {
  static code = 'ERR_TOKEN_LIFETIME_TOO_LONG';

  /** @param {Record<string, unknown>} claims */
  constructor(claims) {
    super();
    this.message = 'token lifetime too long';
    this.claims = claims;
  }
}

/** The relay answered with a non-2xx status. */
export class APIError extends RelayAPIError {
  static code = 'ERR_API';

  /**
   * @param {number} status HTTP status code
   * @param {{ message?: string, type?: string | null, code?: string | null, body?: unknown,
   *           headers?: Headers }} details parsed from the relay's OpenAI-style error body
   */
  constructor(status, details = {}) {
    const errorCode = details.code ?? null;
    super(`relay answered ${status}${errorCode ? ` ${errorCode}` : ''}: ${details.message ?? 'no message'}`);
    this.status = status;
    /** The relay's own error code, e.g. `token_expired` (its `type` when it has no code), or null. */
    this.errorCode = errorCode;
    this.errorType = details.type ?? null;
    this.body = details.body ?? null;
    this.headers = details.headers ?? new Headers();
    /** False when the relay says a retry cannot succeed (`x-should-retry: false`). */
    this.shouldRetry = this.headers.get('x-should-retry') !== 'false';
  }
}

/** The relay could not be reached, or did not answer before the timeout. */
export class RelayConnectionError extends RelayAPIError {
  static code = 'ERR_CONNECTION';
}

/**
 * The relay answered 2xx with a body the SDK cannot read: not JSON, or not the event stream asked for.
 * `status` is the HTTP status and `body` the start of what arrived.
 */
export class BadResponseError extends RelayAPIError {
  static code = 'ERR_BAD_RESPONSE';

  /**
   * @param {string} message
   * @param {{ status?: number, body?: unknown, cause?: unknown }} [details]
   */
  constructor(message, { status = 0, body = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.status = status;
    this.body = body;
  }
}
