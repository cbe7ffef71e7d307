/**
 * Signing admin API requests (docs/admin-api.md): HMAC with a key derived from the tenant key, or, for
 * ecc tenants, ECDSA with the backend's signing key. Pure: the timestamp is passed in, the HTTP call is
 * client.js's job.
 *
 * @module
 */

import { createHash, createHmac, hkdfSync } from 'node:crypto';

import { signP1363 } from './p256.js';

const ADMIN_INFO = Buffer.from('relayapi admin v1', 'ascii');
export const ADMIN_SCHEME = 'RelayAPI-HMAC-SHA256';
export const ADMIN_SCHEME_ECC = 'RelayAPI-ECDSA-P256-SHA256';

/**
 * The admin signing key. A separate HKDF output, so an admin signature can never double as a token.
 *
 * @param {Uint8Array} tenantKey 32 bytes
 * @returns {Buffer}
 */
export function adminKey(tenantKey) {
  return Buffer.from(hkdfSync('sha256', tenantKey, Buffer.alloc(0), ADMIN_INFO, 32));
}

/**
 * The `Authorization` header value for one admin request.
 *
 * @param {object} req
 * @param {string} req.kid key id of `tenantKey`
 * @param {Uint8Array} req.tenantKey 32 bytes
 * @param {string} req.method upper-case HTTP method
 * @param {string} req.target path and query exactly as sent
 * @param {Uint8Array | string} req.body request body ("" for none)
 * @param {number} req.ts UTC seconds; the relay accepts ±300 s around its clock
 * @returns {string}
 */
export function signAdminRequest({ kid, tenantKey, method, target, body, ts }) {
  const mac = createHmac('sha256', adminKey(tenantKey))
    .update(signedString(method, target, body, ts))
    .digest('base64url');
  return `${ADMIN_SCHEME} kid=${kid},ts=${ts},sig=${mac}`;
}

/**
 * The `Authorization` header value for one admin request of an ecc tenant ("ecc tenants"): an
 * ECDSA-P256-SHA256 signature (64 bytes, low S, random nonce) over the same string the HMAC covers.
 *
 * @param {object} req
 * @param {string} req.kid the signer id
 * @param {import('node:crypto').KeyObject} req.signingKey the signer's P-256 private key
 * @param {string} req.method upper-case HTTP method
 * @param {string} req.target path and query exactly as sent
 * @param {Uint8Array | string} req.body request body ("" for none)
 * @param {number} req.ts UTC seconds; the relay accepts ±300 s around its clock
 * @returns {string}
 */
export function signAdminRequestEcc({ kid, signingKey, method, target, body, ts }) {
  const sig = signP1363(signingKey, Buffer.from(signedString(method, target, body, ts), 'utf8'));
  return `${ADMIN_SCHEME_ECC} kid=${kid},ts=${ts},sig=${sig.toString('base64url')}`;
}

/**
 * `METHOD "\n" PATH "\n" TS "\n" hex(SHA-256(body))`, the bytes both schemes sign.
 *
 * @param {string} method
 * @param {string} target
 * @param {Uint8Array | string} body
 * @param {number} ts
 */
function signedString(method, target, body, ts) {
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return `${method}\n${target}\n${ts}\n${bodyHash}`;
}
