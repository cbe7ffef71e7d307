/**
 * `TokenGenerator`: mints tokens for one `.rai` config with fresh randomness, by the method the file
 * names (symmetric or ecc), and reads them back where the file allows it.
 *
 * {@link createTokenWithClaims} is the only place that reads the clock and the CSPRNG, so the public path
 * always mints with fresh values; {@link mintWithParts} takes them injected, for the vectors. Options are
 * turned into claims by options.js.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';

import { ClaimError } from './claims.js';
import { keyInForce, keyringOf, loadConfig } from './config.js';
import { IKM_E_BYTES, mintEccFromParts } from './ecc-token.js';
import { ConfigError, InvalidArgumentError } from './errors.js';
import { asArgumentError, claimsFromOptions } from './options.js';
import { MAX_TOKEN_CHARS, checkTime, mintFromParts, openToken } from './token.js';

/**
 * Mints a fresh token for a loaded config: new token id and salt (symmetric) or `ikm_e` (ecc) from the
 * CSPRNG, `iat` from the system clock, and for ecc a signature with a fresh random nonce. Shared by
 * {@link TokenGenerator} and the client, which already hold a loaded config.
 *
 * @param {import('./config.js').RaiConfig} config
 * @param {import('../types/index.js').CreateTokenOptions} options
 * @returns {{ token: string, claims: Record<string, unknown> }} the token and the claims it carries
 * @throws {InvalidArgumentError} naming the option that breaks docs/token-format.md §5
 */
export function createTokenWithClaims(config, options) {
  const claims = claimsFromOptions(options, {
    tenant: config.tenantId,
    now: Math.floor(Date.now() / 1000),
    jti: randomBytes(16).toString('hex'),
  });
  const parts = config.ecc === null ? { salt: randomBytes(16) } : { ikmE: randomBytes(IKM_E_BYTES) };
  return mintWithParts(config, claims, parts);
}

/**
 * {@link createTokenWithClaims} without the claims.
 *
 * @param {import('./config.js').RaiConfig} config
 * @param {import('../types/index.js').CreateTokenOptions} options
 * @returns {string}
 */
export function createToken(config, options) {
  return createTokenWithClaims(config, options).token;
}

/**
 * Mints claims built by {@link claimsFromOptions} with injected randomness, reporting problems in terms
 * of the options: the symmetric method takes `salt`, ecc takes `ikmE` (and, in tests only, `sig`).
 *
 * @param {import('./config.js').RaiConfig} config
 * @param {Record<string, unknown>} claims
 * @param {{ salt?: Uint8Array, ikmE?: Uint8Array, sig?: Uint8Array }} parts
 * @returns {{ token: string, claims: Record<string, unknown> }}
 * @throws {ConfigError} when the config's current key is outside its validity window at `claims.iat`
 */
export function mintWithParts(config, claims, { salt, ikmE, sig }) {
  // A key outside its validity window mints nothing: the relay would refuse every token it made.
  const now = /** @type {number} */ (claims.iat);
  if (!keyInForce(config, now)) {
    if (config.notBefore !== null && now < config.notBefore) {
      throw new ConfigError(
        'crypto.not_before',
        `key "${config.keyId}" is not valid before ${config.notBefore}; now is ${now}`,
      );
    }
    throw new ConfigError(
      'crypto.not_after',
      `key "${config.keyId}" was retired at ${config.notAfter}; now is ${now}`,
    );
  }
  let minted;
  try {
    const { ecc } = config;
    minted =
      ecc === null
        ? mintFromParts({
            claims,
            kid: config.keyId,
            key: /** @type {Buffer} */ (config.key),
            salt: /** @type {Uint8Array} */ (salt),
          })
        : mintEccFromParts({
            claims,
            rkid: ecc.relayKeyId,
            skid: ecc.signerId,
            relayPublicKey: ecc.relayPublicKey,
            signingKey: ecc.signingKey,
            ikmE: /** @type {Uint8Array} */ (ikmE),
            sig,
          });
  } catch (err) {
    if (err instanceof ClaimError) throw asArgumentError(err);
    throw err;
  }
  if (minted.token.length > MAX_TOKEN_CHARS) {
    // Every verifier refuses longer text unread, so such a token could never be used.
    throw new InvalidArgumentError(
      'token',
      `the options make the token ${minted.token.length} characters long, over ${MAX_TOKEN_CHARS}`,
    );
  }
  return { token: minted.token, claims: minted.claims };
}

/**
 * {@link mintWithParts} for the symmetric method, returning the token only.
 *
 * @param {import('./config.js').RaiConfig} config
 * @param {Record<string, unknown>} claims
 * @param {Uint8Array} salt
 * @returns {string}
 */
export function mintChecked(config, claims, salt) {
  return mintWithParts(config, claims, { salt }).token;
}

/**
 * The error for reading a token with an ecc backend-side file: its tokens are sealed to the relay key,
 * which the backend does not hold.
 *
 * @returns {InvalidArgumentError}
 */
export function eccCannotOpen() {
  return new InvalidArgumentError(
    'token',
    'an ecc backend-side .rai cannot open tokens (they are sealed to the relay key); keep the token id ' +
      'from createTokenWithClaims(options).claims.jti for getUsage and revoke',
  );
}

/** The loaded config of each generator, for the client subclass; private to the package. */
const CONFIGS = new WeakMap();

/**
 * The loaded config of a {@link TokenGenerator} (or client); internal to the package.
 *
 * @param {TokenGenerator} generator
 * @returns {import('./config.js').RaiConfig}
 */
export function configOf(generator) {
  return CONFIGS.get(generator);
}

/**
 * Mints and reads tokens for one `.rai` config.
 *
 * Tokens are always minted with the config's current key (`crypto.key_id`, or the ecc file's
 * `crypto.signer_id`); previous keys are only ever used to read tokens. The method (symmetric or ecc)
 * follows from the file.
 */
export class TokenGenerator {
  /** @type {import('./token.js').Keyring} */
  #keyring;

  /**
   * @param {unknown} config a `.rai` object or the path of a `.rai` file
   * @throws {import('./errors.js').ConfigError}
   */
  constructor(config) {
    const loaded = loadConfig(config);
    CONFIGS.set(this, loaded);
    this.#keyring = keyringOf(loaded);
  }

  /**
   * Mints a fresh token: new token id and salt from the CSPRNG, `iat` from the system clock.
   *
   * @param {import('../types/index.js').CreateTokenOptions} options
   * @returns {string}
   * @throws {InvalidArgumentError} naming the option that breaks docs/token-format.md §5, or an
   *   unknown option
   * @throws {import('./errors.js').ConfigError} when the current key is outside its validity window
   */
  createToken(options) {
    return createToken(configOf(this), options);
  }

  /**
   * {@link createToken}, also returning the claims the token carries: `claims.jti` is the token id the
   * admin calls take. With an ecc backend-side file this is the only way to learn it, since that file
   * cannot open tokens (docs/client-config.md, "What a backend-side file cannot do").
   *
   * @param {import('../types/index.js').CreateTokenOptions} options
   * @returns {{ token: string, claims: Record<string, unknown> }}
   * @throws {InvalidArgumentError} as {@link createToken}
   * @throws {import('./errors.js').ConfigError} as {@link createToken}
   */
  createTokenWithClaims(options) {
    return createTokenWithClaims(configOf(this), options);
  }

  /**
   * Authenticates a token of this config's tenant (minted with the current or a previous key) and
   * returns its claims (§7 steps 1-6). Expiry is deliberately not checked, so an expired token can still
   * be inspected or used for usage queries; see {@link verifyToken}.
   *
   * @param {string} token
   * @returns {Record<string, unknown>}
   * @throws {import('./errors.js').InvalidTokenError} for every failure, without saying which
   * @throws {InvalidArgumentError} with an ecc backend-side file, which cannot open tokens
   */
  decodeToken(token) {
    if (configOf(this).ecc !== null) throw eccCannotOpen();
    return openToken(token, this.#keyring).claims;
  }

  /**
   * {@link decodeToken}, then the time checks of §7 steps 7-8.
   *
   * @param {string} token
   * @param {{ now?: number | null, leeway?: number }} [options] `now` in UTC seconds (default: the
   *   system clock), `leeway` in seconds of tolerated clock skew (default 0; the relay's default is 60)
   * @returns {Record<string, unknown>}
   * @throws {import('./errors.js').InvalidTokenError} or its subclasses TokenExpiredError and
   *   TokenNotYetValidError for authentic tokens outside their lifetime
   */
  verifyToken(token, { now = null, leeway = 0 } = {}) {
    const at = now ?? Math.floor(Date.now() / 1000);
    if (!Number.isSafeInteger(at) || at < 0) throw new InvalidArgumentError('now', 'must be UTC seconds');
    if (!Number.isSafeInteger(leeway) || leeway < 0) {
      throw new InvalidArgumentError('leeway', 'must be a non-negative integer number of seconds');
    }
    const claims = this.decodeToken(token);
    checkTime(claims, at, leeway);
    return claims;
  }
}
