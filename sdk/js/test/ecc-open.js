// A test-only opener for ecc tokens (docs/token-format.md §10.4 steps 1-5), written apart from src/hpke.js
// so a mistake there cannot cancel out here: RFC 9180 OpenBase from HMAC and ECDH directly, then the
// signature check with crypto.verify. The SDK itself never opens ecc tokens (it holds no relay key).
import { createDecipheriv, createECDH, createHmac, createPublicKey, verify } from 'node:crypto';

const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

const u16 = (/** @type {number} */ v) => Buffer.from([v >> 8, v & 0xff]);
const KEM = Buffer.concat([Buffer.from('KEM'), u16(0x10)]);
const HPKE_V1 = Buffer.from('HPKE-v1');

/** @param {Buffer} suite @param {Buffer} salt @param {string} label @param {Buffer} ikm */
function lExtract(suite, salt, label, ikm) {
  return createHmac('sha256', salt)
    .update(Buffer.concat([HPKE_V1, suite, Buffer.from(label), ikm]))
    .digest();
}

/** Expand for L <= 32: one HMAC block is enough for every length used here. */
function lExpand(
  /** @type {Buffer} */ suite,
  /** @type {Buffer} */ prk,
  /** @type {string} */ label,
  /** @type {Buffer} */ info,
  /** @type {number} */ len,
) {
  const labeled = Buffer.concat([u16(len), HPKE_V1, suite, Buffer.from(label), info]);
  return createHmac('sha256', prk)
    .update(Buffer.concat([labeled, Buffer.from([1])]))
    .digest()
    .subarray(0, len);
}

/**
 * RFC 9180 OpenBase for DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and the given AES-GCM, sequence `seq`.
 *
 * @param {{ skR: Buffer, enc: Buffer, info: Buffer, aad: Buffer, ct: Buffer, aeadId?: number, seq?: number }} a
 * @returns {Buffer} the plaintext; throws when the tag does not verify
 */
export function openBase({ skR, enc, info, aad, ct, aeadId = 2, seq = 0 }) {
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(skR);
  const pkR = ecdh.getPublicKey();
  const dh = ecdh.computeSecret(enc);
  const eae = lExtract(KEM, Buffer.alloc(0), 'eae_prk', dh);
  const shared = lExpand(KEM, eae, 'shared_secret', Buffer.concat([enc, pkR]), 32);
  const suite = Buffer.concat([Buffer.from('HPKE'), u16(0x10), u16(1), u16(aeadId)]);
  const ctx = Buffer.concat([
    Buffer.from([0]),
    lExtract(suite, Buffer.alloc(0), 'psk_id_hash', Buffer.alloc(0)),
    lExtract(suite, Buffer.alloc(0), 'info_hash', info),
  ]);
  const secret = lExtract(suite, shared, 'secret', Buffer.alloc(0));
  const nk = aeadId === 1 ? 16 : 32;
  const key = lExpand(suite, secret, 'key', ctx, nk);
  const nonce = lExpand(suite, secret, 'base_nonce', ctx, 12);
  nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ seq) >>> 0, 8);
  const d = createDecipheriv(nk === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, nonce);
  d.setAAD(aad);
  d.setAuthTag(ct.subarray(ct.length - 16));
  return Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
}

/**
 * Opens an ecc token with the relay's private scalar and checks the signer's signature (low S included).
 *
 * @param {string} token
 * @param {Buffer} relayPrivateKey 32-byte scalar
 * @param {Buffer} signerPublicKey SEC1 uncompressed point
 * @returns {{ header: Buffer, rkid: string, skid: string, enc: Buffer, sig: Buffer, claimsJson: string, claims: any }}
 */
export function openEccToken(token, relayPrivateKey, signerPublicKey) {
  if (!token.startsWith('rt1.')) throw new Error('no rt1. prefix');
  const blob = Buffer.from(token.slice(4), 'base64url');
  if (blob[0] !== 1 || blob[1] !== 2) throw new Error('not an ecc blob');
  const rkidLen = blob[2];
  const rkid = blob.subarray(3, 3 + rkidLen).toString('latin1');
  const skidLen = blob[3 + rkidLen];
  const headerLen = 4 + rkidLen + skidLen;
  const skid = blob.subarray(4 + rkidLen, headerLen).toString('latin1');
  const header = blob.subarray(0, headerLen);
  const enc = blob.subarray(headerLen, headerLen + 65);
  const pt = openBase({
    skR: relayPrivateKey,
    enc,
    info: header,
    aad: Buffer.alloc(0),
    ct: blob.subarray(headerLen + 65),
  });
  const sig = pt.subarray(0, 64);
  const claimsBytes = pt.subarray(64);
  const s = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  if (s > (N - 1n) / 2n) throw new Error('high S');
  const key = createPublicKey({
    format: 'jwk',
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: signerPublicKey.subarray(1, 33).toString('base64url'),
      y: signerPublicKey.subarray(33).toString('base64url'),
    },
  });
  const ok = verify('sha256', Buffer.concat([header, claimsBytes]), { key, dsaEncoding: 'ieee-p1363' }, sig);
  if (!ok) throw new Error('signature does not verify');
  const claimsJson = claimsBytes.toString('utf8');
  return { header, rkid, skid, enc, sig, claimsJson, claims: JSON.parse(claimsJson) };
}
