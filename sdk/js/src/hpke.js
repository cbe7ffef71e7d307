/**
 * HPKE (RFC 9180) base mode, single-shot seal, for DHKEM(P-256, HKDF-SHA256) with HKDF-SHA256 and
 * AES-GCM, on node:crypto primitives (ECDH, HMAC, AES-GCM). Node has no HPKE of its own, so it is
 * written here from the RFC's pseudocode and pinned by the RFC's test vectors
 * (tests/vectors/hpke-rfc9180.json).
 *
 * The token format uses AES-256-GCM only (docs/token-format.md §10.1); AES-128-GCM is accepted as well
 * because RFC 9180's own appendix A.3.1 vector uses it, and passing that vector is the proof. Opening is
 * the relay's job: the SDK only seals (the tests open with their own code).
 *
 * @module
 */

import { createCipheriv, createECDH, createHmac } from 'node:crypto';

import { N, SCALAR_BYTES, toBigInt } from './p256.js';

/** RFC 9180 §7.1: KEM 0x0010 DHKEM(P-256, HKDF-SHA256). */
const KEM_ID = 0x0010;
/** RFC 9180 §7.2: KDF 0x0001 HKDF-SHA256. */
const KDF_ID = 0x0001;
/** RFC 9180 §7.3: AEAD ids and key lengths (Nk). The nonce (Nn) is 12 bytes and the tag (Nt) 16 for both. */
export const AEADS = Object.freeze({
  'aes-128-gcm': { id: 0x0001, nk: 16 },
  'aes-256-gcm': { id: 0x0002, nk: 32 },
});
const NN = 12;
const NT = 16;
/** Nsecret of DHKEM(P-256, HKDF-SHA256): the KEM's shared secret is 32 bytes. */
const N_SECRET = 32;
const MODE_BASE = 0x00;
/**
 * RFC 9180 §7.1.3: DeriveKeyPair gives up after 256 candidates. A candidate is out of range (>= n) with a
 * chance of about 2^-32 for P-256, so running out happens with a chance of about 2^-8192.
 */
const MAX_CANDIDATES = 256;

const HPKE_V1 = Buffer.from('HPKE-v1', 'ascii');
const KEM_SUITE = Buffer.concat([Buffer.from('KEM', 'ascii'), i2osp(KEM_ID, 2)]);
const EMPTY = Buffer.alloc(0);

/**
 * I2OSP: `value` as `length` big-endian bytes.
 *
 * @param {number} value
 * @param {number} length
 */
function i2osp(value, length) {
  const out = Buffer.alloc(length);
  out.writeUIntBE(value, 0, length);
  return out;
}

/**
 * The HPKE suite id of §5.1: "HPKE" ‖ kem_id ‖ kdf_id ‖ aead_id.
 *
 * @param {number} aeadId
 */
function hpkeSuite(aeadId) {
  return Buffer.concat([Buffer.from('HPKE', 'ascii'), i2osp(KEM_ID, 2), i2osp(KDF_ID, 2), i2osp(aeadId, 2)]);
}

/**
 * RFC 5869 Extract: HMAC-SHA256 keyed with the salt (an empty salt is HMAC's zero key, as the RFC says).
 *
 * @param {Uint8Array} salt
 * @param {Uint8Array} ikm
 */
function extract(salt, ikm) {
  return createHmac('sha256', salt).update(ikm).digest();
}

/**
 * RFC 5869 Expand.
 *
 * @param {Uint8Array} prk
 * @param {Uint8Array} info
 * @param {number} length at most 255 · 32
 */
function expand(prk, info, length) {
  const blocks = [];
  let t = EMPTY;
  for (let i = 1; blocks.length * 32 < length; i += 1) {
    t = createHmac('sha256', prk)
      .update(Buffer.concat([t, info, Buffer.from([i])]))
      .digest();
    blocks.push(t);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/**
 * §4 LabeledExtract.
 *
 * @param {Buffer} suite
 * @param {Uint8Array} salt
 * @param {string} label
 * @param {Uint8Array} ikm
 */
function labeledExtract(suite, salt, label, ikm) {
  return extract(salt, Buffer.concat([HPKE_V1, suite, Buffer.from(label, 'ascii'), ikm]));
}

/**
 * §4 LabeledExpand.
 *
 * @param {Buffer} suite
 * @param {Uint8Array} prk
 * @param {string} label
 * @param {Uint8Array} info
 * @param {number} length
 */
function labeledExpand(suite, prk, label, info, length) {
  const labeled = Buffer.concat([i2osp(length, 2), HPKE_V1, suite, Buffer.from(label, 'ascii'), info]);
  return expand(prk, labeled, length);
}

/**
 * §7.1.3 DeriveKeyPair for P-256: the first `candidate` below the order (bitmask 0xff, so every bit
 * counts), and its public key.
 *
 * @param {Uint8Array} ikm at least 32 bytes of input keying material (§7.1.3: Nsk)
 * @returns {{ privateKey: Buffer, publicKey: Buffer }} 32-byte scalar and SEC1 uncompressed point
 */
export function deriveKeyPair(ikm) {
  if (ikm.length < SCALAR_BYTES) throw new RangeError('DeriveKeyPair needs at least 32 bytes of ikm');
  const dkpPrk = labeledExtract(KEM_SUITE, EMPTY, 'dkp_prk', ikm);
  for (let counter = 0; counter < MAX_CANDIDATES; counter += 1) {
    const bytes = labeledExpand(KEM_SUITE, dkpPrk, 'candidate', i2osp(counter, 1), SCALAR_BYTES);
    // bytes[0] &= 0xff is a no-op for P-256; the loop is what rejects values >= n (and 0).
    const sk = toBigInt(bytes);
    if (sk !== 0n && sk < N) {
      const ecdh = createECDH('prime256v1');
      ecdh.setPrivateKey(bytes);
      return { privateKey: bytes, publicKey: ecdh.getPublicKey(null, 'uncompressed') };
    }
  }
  throw new RangeError('DeriveKeyPair: no candidate below the group order (RFC 9180 DeriveKeyPairError)');
}

/**
 * §4.1 ExtractAndExpand of DHKEM.
 *
 * @param {Uint8Array} dh
 * @param {Uint8Array} kemContext
 */
function extractAndExpand(dh, kemContext) {
  const eaePrk = labeledExtract(KEM_SUITE, EMPTY, 'eae_prk', dh);
  return labeledExpand(KEM_SUITE, eaePrk, 'shared_secret', kemContext, N_SECRET);
}

/**
 * §4.1 Encap with the ephemeral key pair derived from `ikmE` (DeriveKeyPair instead of GenerateKeyPair,
 * as the RFC's test vectors do it). Throws when `pkR` is not a point on P-256.
 *
 * @param {Uint8Array} pkR SEC1 uncompressed recipient public key
 * @param {Uint8Array} ikmE
 * @returns {{ sharedSecret: Buffer, enc: Buffer }}
 */
export function encap(pkR, ikmE) {
  const { privateKey, publicKey: enc } = deriveKeyPair(ikmE);
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(privateKey);
  // The x-coordinate of skE·pkR (32 bytes); node:crypto refuses a point off the curve here.
  const dh = ecdh.computeSecret(pkR);
  return { sharedSecret: extractAndExpand(dh, Buffer.concat([enc, pkR])), enc };
}

/**
 * §5.1 KeySchedule in base mode (no PSK): the AEAD key and base nonce. The exporter secret is not
 * needed by anything here, so it is not derived.
 *
 * @param {keyof typeof AEADS} aead
 * @param {Uint8Array} sharedSecret
 * @param {Uint8Array} info
 * @returns {{ key: Buffer, baseNonce: Buffer }}
 */
export function keySchedule(aead, sharedSecret, info) {
  const { id, nk } = AEADS[aead];
  const suite = hpkeSuite(id);
  const pskIdHash = labeledExtract(suite, EMPTY, 'psk_id_hash', EMPTY);
  const infoHash = labeledExtract(suite, EMPTY, 'info_hash', info);
  const context = Buffer.concat([Buffer.from([MODE_BASE]), pskIdHash, infoHash]);
  const secret = labeledExtract(suite, sharedSecret, 'secret', EMPTY);
  return {
    key: labeledExpand(suite, secret, 'key', context, nk),
    baseNonce: labeledExpand(suite, secret, 'base_nonce', context, NN),
  };
}

/**
 * §6.1 SealBase: one message to `pkR`, the first (and only) one of its context, so its nonce is
 * `base_nonce` itself (sequence number 0).
 *
 * @param {object} args
 * @param {Uint8Array} args.pkR SEC1 uncompressed recipient public key
 * @param {Uint8Array} args.ikmE fresh random bytes (32); a repeated ikmE under one pkR repeats key and nonce
 * @param {Uint8Array} args.info
 * @param {Uint8Array} args.aad
 * @param {Uint8Array} args.pt
 * @param {keyof typeof AEADS} [args.aead] default AES-256-GCM, the token format's AEAD
 * @returns {{ enc: Buffer, ct: Buffer }} `ct` is the ciphertext followed by the 16-byte tag
 */
export function sealBase({ pkR, ikmE, info, aad, pt, aead = 'aes-256-gcm' }) {
  const { sharedSecret, enc } = encap(pkR, ikmE);
  const { key, baseNonce } = keySchedule(aead, sharedSecret, info);
  const cipher = createCipheriv(aead, key, baseNonce, { authTagLength: NT });
  cipher.setAAD(aad);
  const ct = Buffer.concat([cipher.update(pt), cipher.final(), cipher.getAuthTag()]);
  return { enc, ct };
}
