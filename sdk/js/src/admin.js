/**
 * Signing admin API requests (docs/admin-api.md). Pure: the timestamp is passed in, the HTTP call is
 * client.js's job.
 *
 * @module
 */

import { createHash, createHmac, hkdfSync } from 'node:crypto';

const ADMIN_INFO = Buffer.from('relayapi admin v1', 'ascii');
export const ADMIN_SCHEME = 'RelayAPI-HMAC-SHA256';

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
  const bodyHash = createHash('sha256').update(body).digest('hex');
  const mac = createHmac('sha256', adminKey(tenantKey))
    .update(`${method}\n${target}\n${ts}\n${bodyHash}`)
    .digest('base64url');
  return `${ADMIN_SCHEME} kid=${kid},ts=${ts},sig=${mac}`;
}
