/**
 * P-256 for the ecc token method (docs/token-format.md §10.1): key encodings, the range and curve checks
 * the `.rai` rules E3/E4 demand, and ECDSA-P256-SHA256 signatures in their one accepted spelling
 * (64 bytes `r ‖ s`, low S).
 *
 * The arithmetic is node:crypto's; this file only checks encodings (with BigInt, so the rules are written
 * out here rather than left to whatever a library happens to accept) and normalises signatures. HPKE
 * lives in hpke.js.
 *
 * @module
 */

import { createECDH, createPrivateKey, sign } from 'node:crypto';

/** The field prime p of P-256 (SEC 2 §2.4.2). */
export const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
/** The group order n of P-256. */
export const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
/** The curve coefficient b (a = -3). */
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const HALF_N = (N - 1n) / 2n;
/** Bytes of a scalar, a coordinate, and half a signature. */
export const SCALAR_BYTES = 32;
/** SEC1 uncompressed point: 0x04 ‖ X ‖ Y. */
export const POINT_BYTES = 65;
export const SIGNATURE_BYTES = 64;

/** @param {Uint8Array} bytes big-endian */
export const toBigInt = (bytes) =>
  bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);

/** @param {bigint} v */
const toBytes32 = (v) => Buffer.from(v.toString(16).padStart(64, '0'), 'hex');

/**
 * Whether `bytes` is a valid P-256 private key: 32 bytes, big-endian, `1 <= d < n` (rule E3).
 *
 * @param {Uint8Array} bytes
 */
export function isScalar(bytes) {
  if (bytes.length !== SCALAR_BYTES) return false;
  const d = toBigInt(bytes);
  return d >= 1n && d < N;
}

/**
 * Whether `bytes` is a SEC1 uncompressed point on P-256 with both coordinates below p (rule E4). The
 * point at infinity has no uncompressed encoding, so it can never pass.
 *
 * @param {Uint8Array} bytes
 */
export function isPoint(bytes) {
  if (bytes.length !== POINT_BYTES || bytes[0] !== 0x04) return false;
  const x = toBigInt(bytes.subarray(1, 33));
  const y = toBigInt(bytes.subarray(33));
  if (x >= P || y >= P) return false;
  return (y * y - (x * x * x - 3n * x + B)) % P === 0n;
}

/**
 * The public key `d·G` of a private scalar, as a SEC1 uncompressed point.
 *
 * @param {Uint8Array} scalar 32 bytes, checked by {@link isScalar}
 * @returns {Buffer}
 */
export function publicKeyOf(scalar) {
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(scalar);
  return ecdh.getPublicKey(null, 'uncompressed');
}

/**
 * @param {Uint8Array} scalar
 * @returns {import('node:crypto').KeyObject}
 */
export function privateKeyObject(scalar) {
  const pub = publicKeyOf(scalar);
  return createPrivateKey({
    format: 'jwk',
    key: {
      kty: 'EC',
      crv: 'P-256',
      d: Buffer.from(scalar).toString('base64url'),
      x: pub.subarray(1, 33).toString('base64url'),
      y: pub.subarray(33).toString('base64url'),
    },
  });
}

/**
 * The low-S spelling of a 64-byte `r ‖ s` signature: `s > (n-1)/2` becomes `n - s`, the same
 * signature in the one form verifiers accept (§10.1).
 *
 * @param {Uint8Array} sig
 * @returns {Buffer}
 */
export function lowS(sig) {
  const s = toBigInt(sig.subarray(SCALAR_BYTES));
  const out = Buffer.from(sig);
  if (s > HALF_N) toBytes32(N - s).copy(out, SCALAR_BYTES);
  return out;
}

/**
 * Whether a 64-byte signature is in the accepted spelling: `1 <= r < n`, `1 <= s <= (n-1)/2`.
 *
 * @param {Uint8Array} sig
 */
export function isLowSSignature(sig) {
  if (sig.length !== SIGNATURE_BYTES) return false;
  const r = toBigInt(sig.subarray(0, SCALAR_BYTES));
  const s = toBigInt(sig.subarray(SCALAR_BYTES));
  return r >= 1n && r < N && s >= 1n && s <= HALF_N;
}

/**
 * ECDSA-P256-SHA256 over `data`, 64 bytes `r ‖ s`, low S. node:crypto has no RFC 6979, so the nonce is
 * random (§10.1 allows it): two signatures over the same bytes differ, and both verify.
 *
 * @param {import('node:crypto').KeyObject} key
 * @param {Uint8Array} data
 * @returns {Buffer}
 */
export function signP1363(key, data) {
  return lowS(sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }));
}
