/**
 * Token format v1 (docs/token-format.md): sealing claims into `rt1.` tokens and opening them again.
 *
 * Pure functions over bytes with the time, token id and salt passed in, so the shared vectors can pin the
 * output byte for byte; drawing fresh randomness and reading the clock is generator.js's job. Every
 * verification failure before the claims are authentic throws the same {@link InvalidTokenError}.
 *
 * @module
 */

import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';

import { ClaimError, canonicalJson, checkClaims } from './claims.js';
import {
  InvalidTokenError,
  TokenExpiredError,
  TokenLifetimeTooLongError,
  TokenNotYetValidError,
} from './errors.js';
import { JsonSyntaxError, parseStrictJson } from './json.js';

export const TOKEN_PREFIX = 'rt1.';
/**
 * §3: longest token text in bytes (a token is ASCII, so also in characters). Verifiers refuse longer text
 * before any decoding work; minters refuse to produce it (§6 step 8).
 */
export const MAX_TOKEN_CHARS = 4096;
const VERSION = 0x01;
const MODE_SYMMETRIC = 0x01;
const SALT_BYTES = 16;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const HKDF_INFO = Buffer.from('relayapi token v1', 'ascii');
const KID = /^[A-Za-z0-9._-]{1,32}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;

/**
 * @typedef {object} KeyEntry
 * @property {string} tenant tenant id the key belongs to
 * @property {Buffer} key the 32-byte tenant key
 */
/** @typedef {Map<string, KeyEntry>} Keyring kid → key */

/**
 * Strict unpadded base64url (§3): rejects padding, foreign characters and non-zero unused bits.
 *
 * @param {string} text
 * @returns {Buffer | null} null when `text` is not canonical
 */
export function decodeBase64url(text) {
  if (!B64URL.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  // Node's decoder ignores unused low bits; re-encoding exposes a non-canonical final character.
  return bytes.toString('base64url') === text ? bytes : null;
}

/**
 * §4: per-token AES key and GCM nonce.
 *
 * @param {Uint8Array} key
 * @param {Uint8Array} salt
 */
function deriveKeyAndNonce(key, salt) {
  const okm = Buffer.from(hkdfSync('sha256', key, salt, HKDF_INFO, KEY_BYTES + 12));
  return { cek: okm.subarray(0, KEY_BYTES), nonce: okm.subarray(KEY_BYTES) };
}

/**
 * Seals already serialised claims (§6 steps 4-7). Exposed for tests that need tokens no honest minter
 * would produce; everything else goes through {@link mintFromParts}.
 *
 * @param {Uint8Array} key 32-byte tenant key
 * @param {string} kid
 * @param {Uint8Array} salt 16 bytes
 * @param {Uint8Array} plaintext
 * @returns {string}
 */
export function seal(key, kid, salt, plaintext) {
  if (key.length !== KEY_BYTES) throw new RangeError('tenant key must be 32 bytes');
  if (!KID.test(kid)) throw new RangeError('kid must be 1 to 32 characters from A-Z a-z 0-9 . _ -');
  if (salt.length !== SALT_BYTES) throw new RangeError('salt must be 16 bytes');
  const header = Buffer.concat([
    Buffer.from([VERSION, MODE_SYMMETRIC, kid.length]),
    Buffer.from(kid, 'ascii'),
    salt,
  ]);
  const { cek, nonce } = deriveKeyAndNonce(key, salt);
  const cipher = createCipheriv('aes-256-gcm', cek, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(header);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return TOKEN_PREFIX + Buffer.concat([header, ct, cipher.getAuthTag()]).toString('base64url');
}

/**
 * Length in bytes of a token with a `kidLen`-byte kid and `claimsLen` bytes of claims JSON (§6 step 8).
 *
 * @param {number} kidLen
 * @param {number} claimsLen
 */
export function tokenLength(kidLen, claimsLen) {
  const blob = 3 + kidLen + SALT_BYTES + claimsLen + TAG_BYTES;
  return TOKEN_PREFIX.length + Math.ceil((4 * blob) / 3);
}

/**
 * The "from parts" minter (§6 with injected time and randomness), used by the vector tests and by
 * generator.js, which supplies fresh values.
 *
 * @param {object} parts
 * @param {Record<string, unknown>} parts.claims complete claims including jti, tid, iat, exp
 * @param {string} parts.kid
 * @param {Uint8Array} parts.key 32-byte tenant key
 * @param {Uint8Array} parts.salt 16 bytes
 * @returns {{ token: string, claimsJson: string, claims: Record<string, unknown> }}
 * @throws {ClaimError} when the claims break §5, or (field `token`) the token would exceed 4096 bytes
 */
export function mintFromParts({ claims, kid, key, salt }) {
  const checked = checkClaims(claims);
  const claimsJson = canonicalJson(checked);
  const length = tokenLength(Buffer.byteLength(kid, 'latin1'), Buffer.byteLength(claimsJson, 'utf8'));
  if (length > MAX_TOKEN_CHARS) {
    // Every verifier refuses longer text unread, so such a token is never returned.
    throw new ClaimError('token', `the claims make the token ${length} bytes long, over ${MAX_TOKEN_CHARS}`);
  }
  return { token: seal(key, kid, salt, Buffer.from(claimsJson, 'utf8')), claimsJson, claims: checked };
}

// `fatal` refuses invalid UTF-8 (§7 step 6); `ignoreBOM` keeps a leading U+FEFF in the text so the JSON
// parser refuses it instead of the decoder silently dropping it.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * §7 steps 1-6: authenticates a token and returns its claims. Does not look at the clock.
 *
 * @param {unknown} text
 * @param {Keyring} keyring
 * @returns {{ kid: string, claims: Record<string, unknown> }}
 * @throws {InvalidTokenError} for every failure, without saying which
 */
export function openToken(text, keyring) {
  if (typeof text !== 'string' || text.length > MAX_TOKEN_CHARS || !text.startsWith(TOKEN_PREFIX)) {
    throw new InvalidTokenError();
  }
  const blob = decodeBase64url(text.slice(TOKEN_PREFIX.length));
  if (blob === null || blob.length < 3 + 1 + SALT_BYTES + TAG_BYTES) throw new InvalidTokenError();
  const kidLen = blob[2];
  if (blob[0] !== VERSION || blob[1] !== MODE_SYMMETRIC || kidLen < 1 || kidLen > 32) {
    throw new InvalidTokenError();
  }
  const headerLen = 3 + kidLen + SALT_BYTES;
  if (blob.length < headerLen + TAG_BYTES) throw new InvalidTokenError();
  const kid = blob.subarray(3, 3 + kidLen).toString('latin1');
  const entry = keyring.get(kid);
  if (entry === undefined) throw new InvalidTokenError();

  const header = blob.subarray(0, headerLen);
  const { cek, nonce } = deriveKeyAndNonce(entry.key, blob.subarray(3 + kidLen, headerLen));
  let plaintext;
  try {
    const decipher = createDecipheriv('aes-256-gcm', cek, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(header);
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
    plaintext = Buffer.concat([
      decipher.update(blob.subarray(headerLen, blob.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new InvalidTokenError();
  }

  try {
    return { kid, claims: checkClaims(parseStrictJson(UTF8.decode(plaintext)), entry.tenant) };
  } catch (err) {
    // The decoder signals invalid UTF-8 with a TypeError; nothing else in the block throws one.
    if (err instanceof JsonSyntaxError || err instanceof ClaimError || err instanceof TypeError) {
      throw new InvalidTokenError();
    }
    throw err;
  }
}

/**
 * §7 steps 7-9 with the relay's comparison rules, in the relay's order (the first failing check wins).
 *
 * @param {Record<string, unknown>} claims verified claims
 * @param {number} now UTC seconds
 * @param {number} leeway seconds of clock skew to tolerate
 * @param {number} [maxLifetime] when given, `exp - iat` above it is refused (step 9)
 * @throws {TokenNotYetValidError | TokenExpiredError | TokenLifetimeTooLongError}
 */
export function checkTime(claims, now, leeway, maxLifetime) {
  const iat = /** @type {number} */ (claims.iat);
  const exp = /** @type {number} */ (claims.exp);
  if (iat > now + leeway) throw new TokenNotYetValidError(claims);
  if (now >= exp + leeway) throw new TokenExpiredError(claims);
  if (maxLifetime !== undefined && exp - iat > maxLifetime) throw new TokenLifetimeTooLongError(claims);
}
