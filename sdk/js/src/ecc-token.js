/**
 * Token format v1, method ecc (docs/token-format.md §10): claims signed with the backend's P-256 key,
 * then sealed to the relay's P-256 public key with HPKE.
 *
 * Pure functions with the time, token id, `ikm_e` and (for the vectors only) the signature passed in;
 * drawing fresh randomness is generator.js's job. The SDK only mints ecc tokens: it holds no key that
 * opens them (the relay does).
 *
 * @module
 */

import { canonicalJson, checkClaims, ClaimError } from './claims.js';
import { sealBase } from './hpke.js';
import { POINT_BYTES, SIGNATURE_BYTES, isLowSSignature, signP1363 } from './p256.js';
import { MAX_TOKEN_CHARS, TOKEN_PREFIX } from './token.js';

const VERSION = 0x01;
export const MODE_ECC = 0x02;
const TAG_BYTES = 16;
/** §10.3 step 2: 32 bytes of input keying material for the ephemeral key. */
export const IKM_E_BYTES = 32;
const ID = /^[A-Za-z0-9._-]{1,32}$/;
const EMPTY = Buffer.alloc(0);

/**
 * §10.2: `version ‖ mode ‖ rkid_len ‖ rkid ‖ skid_len ‖ skid`, both signed and used as the HPKE info.
 *
 * @param {string} rkid
 * @param {string} skid
 * @returns {Buffer}
 */
export function eccHeader(rkid, skid) {
  if (!ID.test(rkid)) throw new RangeError('rkid must be 1 to 32 characters from A-Z a-z 0-9 . _ -');
  if (!ID.test(skid)) throw new RangeError('skid must be 1 to 32 characters from A-Z a-z 0-9 . _ -');
  return Buffer.concat([
    Buffer.from([VERSION, MODE_ECC, rkid.length]),
    Buffer.from(rkid, 'ascii'),
    Buffer.from([skid.length]),
    Buffer.from(skid, 'ascii'),
  ]);
}

/**
 * Length in bytes of an ecc token (§10.2), known before any signing or sealing.
 *
 * @param {number} rkidLen
 * @param {number} skidLen
 * @param {number} claimsLen
 */
export function eccTokenLength(rkidLen, skidLen, claimsLen) {
  const blob = 2 + 1 + rkidLen + 1 + skidLen + POINT_BYTES + SIGNATURE_BYTES + claimsLen + TAG_BYTES;
  return TOKEN_PREFIX.length + Math.ceil((4 * blob) / 3);
}

/**
 * The "from parts" ecc minter (§10.3 steps 3-7 with injected randomness), used by the vector tests and
 * by generator.js, which supplies fresh values.
 *
 * @param {object} parts
 * @param {Record<string, unknown>} parts.claims complete claims including jti, tid, iat, exp
 * @param {string} parts.rkid relay key id
 * @param {string} parts.skid signer id
 * @param {Uint8Array} parts.relayPublicKey SEC1 uncompressed point, checked at load time
 * @param {import('node:crypto').KeyObject} parts.signingKey the signer's P-256 private key
 * @param {Uint8Array} parts.ikmE 32 bytes, never repeated
 * @param {Uint8Array} [parts.sig] tests only: a 64-byte low-S signature used instead of signing, so a
 *   vector made with a deterministic nonce can be reproduced byte for byte
 * @returns {{ token: string, claimsJson: string, claims: Record<string, unknown>, header: Buffer, sig: Buffer }}
 * @throws {ClaimError} when the claims break §5, or (field `token`) the token would exceed 4096 bytes
 */
export function mintEccFromParts({ claims, rkid, skid, relayPublicKey, signingKey, ikmE, sig }) {
  if (ikmE.length !== IKM_E_BYTES) throw new RangeError('ikm_e must be 32 bytes');
  const checked = checkClaims(claims);
  const claimsJson = canonicalJson(checked);
  const claimsBytes = Buffer.from(claimsJson, 'utf8');
  const length = eccTokenLength(rkid.length, skid.length, claimsBytes.length);
  if (length > MAX_TOKEN_CHARS) {
    // Every verifier refuses longer text unread, so such a token is never returned.
    throw new ClaimError('token', `the claims make the token ${length} bytes long, over ${MAX_TOKEN_CHARS}`);
  }
  const header = eccHeader(rkid, skid);
  const signed = Buffer.concat([header, claimsBytes]);
  let signature;
  if (sig === undefined) {
    signature = signP1363(signingKey, signed);
  } else {
    if (!isLowSSignature(sig)) throw new RangeError('an injected signature must be 64 bytes r ‖ s, low S');
    signature = Buffer.from(sig);
  }
  const { enc, ct } = sealBase({
    pkR: relayPublicKey,
    ikmE,
    info: header,
    aad: EMPTY,
    pt: Buffer.concat([signature, claimsBytes]),
  });
  const token = TOKEN_PREFIX + Buffer.concat([header, enc, ct]).toString('base64url');
  return { token, claimsJson, claims: checked, header, sig: signature };
}
