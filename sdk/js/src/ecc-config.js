/**
 * The `crypto` object of an ecc `.rai` (docs/client-config.md "ecc files", rules E1-E7), as the SDK
 * reads it: only a backend-side file mints, so a relay-side file is refused with a message that says
 * which file to use instead.
 *
 * Key material is checked here, once, at load time (a malformed key is a programmer error and fails
 * loudly); error messages name the field and never echo a key.
 *
 * @module
 */

import { ConfigError } from './errors.js';
import { POINT_BYTES, SCALAR_BYTES, isPoint, isScalar, privateKeyObject, publicKeyOf } from './p256.js';
import { identifier, keyWindow, object, required } from './rai-fields.js';
import { decodeBase64url } from './token.js';

export const ECC_METHOD = 'ecc-p256';
/** Rule E1: the fields of a backend-side `crypto` object; anything else is refused. */
const BACKEND_FIELDS = [
  'method',
  'tenant_id',
  'signer_id',
  'signing_key',
  'relay_key_id',
  'relay_public_key',
  'not_before',
  'not_after',
];

/**
 * @typedef {object} EccBackendKeys
 * @property {string} signerId the signer id (`skid` of every token, `kid` of admin signatures)
 * @property {import('node:crypto').KeyObject} signingKey the signer's P-256 private key
 * @property {string} relayKeyId the relay key id (`rkid` of every token)
 * @property {Buffer} relayPublicKey the relay key's public half, SEC1 uncompressed (65 bytes)
 */

/**
 * Rule E3: a private key, canonical unpadded base64url of a scalar `1 <= d < n`.
 *
 * @param {unknown} v
 * @param {string} field
 * @returns {Buffer}
 */
function privateScalar(v, field) {
  const bytes = typeof v === 'string' && v.length === 43 ? decodeBase64url(v) : null;
  if (bytes === null || bytes.length !== SCALAR_BYTES || !isScalar(bytes)) {
    // Deliberately silent about the value: it is a secret.
    throw new ConfigError(
      field,
      'expected a P-256 private key: 32 bytes as unpadded base64url (43 characters), a scalar from 1 to n-1',
    );
  }
  return bytes;
}

/**
 * Rule E4: a public key, canonical unpadded base64url of a SEC1 uncompressed point on P-256.
 *
 * @param {unknown} v
 * @param {string} field
 * @returns {Buffer}
 */
function publicPoint(v, field) {
  const bytes = typeof v === 'string' && v.length === 87 ? decodeBase64url(v) : null;
  if (bytes === null || bytes.length !== POINT_BYTES || !isPoint(bytes)) {
    throw new ConfigError(
      field,
      'expected a P-256 public key: an uncompressed point (65 bytes, 0x04 ‖ X ‖ Y, on the curve) as ' +
        'unpadded base64url (87 characters)',
    );
  }
  return bytes;
}

/**
 * Checks an ecc `crypto` object and returns what minting needs.
 *
 * @param {Record<string, unknown>} crypto the `crypto` member, already known to be an object
 * @param {string} source the file path, or a description of where the object came from, for messages
 * @returns {{ tenantId: string, notBefore: number | null, notAfter: number | null, ecc: EccBackendKeys }}
 * @throws {ConfigError}
 */
export function parseEccCrypto(crypto, source) {
  const relaySide = Object.hasOwn(crypto, 'relay_private_key');
  const backendSide = Object.hasOwn(crypto, 'signing_key');
  // E1: a file is one side or the other; the SDK mints, so it needs the backend side.
  if (relaySide && backendSide) {
    throw new ConfigError(
      'crypto.relay_private_key',
      `${source} holds both relay_private_key and signing_key; an ecc file is either relay-side or ` +
        'backend-side, never both',
    );
  }
  if (relaySide) {
    throw new ConfigError(
      'crypto.relay_private_key',
      `${source} is the relay-side ecc file (it holds relay_private_key, which only the relay may hold); ` +
        'give the SDK the backend-side file instead (the one with signing_key and relay_public_key, ' +
        'written by `relayapi gen-rai --method ecc --backend-out backend.rai`)',
    );
  }
  const c = object(crypto, 'crypto', BACKEND_FIELDS);
  const tenantId = identifier(required(c, 'tenant_id', 'crypto.tenant_id'), 'crypto.tenant_id', 64);
  const signerId = identifier(required(c, 'signer_id', 'crypto.signer_id'), 'crypto.signer_id', 32);
  const relayKeyId = identifier(
    required(c, 'relay_key_id', 'crypto.relay_key_id'),
    'crypto.relay_key_id',
    32,
  );
  // E2: ids in one file are distinct, so no id in a token's header can name two keys.
  if (relayKeyId === signerId) {
    throw new ConfigError(
      'crypto.relay_key_id',
      `id "${relayKeyId}" is also the signer_id; use distinct ids`,
    );
  }
  const scalar = privateScalar(required(c, 'signing_key', 'crypto.signing_key'), 'crypto.signing_key');
  const relayPublicKey = publicPoint(
    required(c, 'relay_public_key', 'crypto.relay_public_key'),
    'crypto.relay_public_key',
  );
  // E7: a signing key must never double as the decryption key (its holder could then open tokens).
  if (publicKeyOf(scalar).equals(relayPublicKey)) {
    throw new ConfigError(
      'crypto.relay_public_key',
      'is the public half of signing_key; the relay key and the signing key must be different keys',
    );
  }
  const { notBefore, notAfter } = keyWindow(c, 'crypto');
  return {
    tenantId,
    notBefore,
    notAfter,
    ecc: { signerId, signingKey: privateKeyObject(scalar), relayKeyId, relayPublicKey },
  };
}
