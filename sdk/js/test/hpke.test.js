// src/hpke.js against the RFC 9180 test vectors for DHKEM(P-256, HKDF-SHA256) / HKDF-SHA256 with
// AES-128-GCM (RFC 9180 A.3.1) and AES-256-GCM (tests/vectors/hpke-rfc9180.json, shared with the relay and
// the Python SDK): every intermediate value the file pins, the first three encryptions, and the test-only
// opener (test/ecc-open.js) reading the sealed messages back.
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { describe, it } from 'node:test';

import { deriveKeyPair, encap, keySchedule, sealBase } from '../src/hpke.js';
import { openBase } from './ecc-open.js';
import { readVector } from './helpers.js';

const { vectors } = readVector('hpke-rfc9180.json');
const hex = (/** @type {string} */ s) => Buffer.from(s, 'hex');
/** @type {Record<number, 'aes-128-gcm' | 'aes-256-gcm'>} */
const AEAD = { 1: 'aes-128-gcm', 2: 'aes-256-gcm' };

it('hpke-rfc9180.json holds the base-mode P-256 suites with AES-128-GCM and AES-256-GCM', () => {
  assert.deepEqual(vectors.map((/** @type {any} */ v) => v.aead_id).sort(), [1, 2]);
  for (const v of vectors) {
    assert.deepEqual([v.mode, v.kem_id, v.kdf_id], [0, 16, 1]);
    assert.ok(v.encryptions.length >= 1);
  }
});

for (const v of vectors) {
  const aead = AEAD[v.aead_id];
  describe(v.name, () => {
    it('DeriveKeyPair gives the ephemeral and the recipient key pairs', () => {
      const e = deriveKeyPair(hex(v.ikmE));
      assert.equal(e.privateKey.toString('hex'), v.skEm);
      assert.equal(e.publicKey.toString('hex'), v.pkEm);
      const r = deriveKeyPair(hex(v.ikmR));
      assert.equal(r.privateKey.toString('hex'), v.skRm);
      assert.equal(r.publicKey.toString('hex'), v.pkRm);
    });

    it('Encap gives enc and the shared secret; KeySchedule the key and base nonce', () => {
      const { sharedSecret, enc } = encap(hex(v.pkRm), hex(v.ikmE));
      assert.equal(enc.toString('hex'), v.enc);
      assert.equal(sharedSecret.toString('hex'), v.shared_secret);
      const { key, baseNonce } = keySchedule(aead, sharedSecret, hex(v.info));
      assert.equal(key.toString('hex'), v.key);
      assert.equal(baseNonce.toString('hex'), v.base_nonce);
    });

    it('SealBase gives the first encryption byte for byte, and it opens again', () => {
      const [first] = v.encryptions;
      assert.equal(first.sequence_number, 0);
      const { enc, ct } = sealBase({
        pkR: hex(v.pkRm),
        ikmE: hex(v.ikmE),
        info: hex(v.info),
        aad: hex(first.aad),
        pt: hex(first.pt),
        aead,
      });
      assert.equal(enc.toString('hex'), v.enc);
      assert.equal(ct.toString('hex'), first.ct);
      const pt = openBase({
        skR: hex(v.skRm),
        enc,
        info: hex(v.info),
        aad: hex(first.aad),
        ct,
        aeadId: v.aead_id,
      });
      assert.equal(pt.toString('hex'), first.pt);
    });

    it('the key schedule also gives the later encryptions (nonce = base_nonce xor sequence number)', () => {
      const { key, baseNonce } = keySchedule(aead, hex(v.shared_secret), hex(v.info));
      for (const e of v.encryptions) {
        const nonce = Buffer.from(baseNonce);
        nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ e.sequence_number) >>> 0, 8);
        assert.equal(nonce.toString('hex'), e.nonce);
        const c = createCipheriv(aead, key, nonce);
        c.setAAD(hex(e.aad));
        const ct = Buffer.concat([c.update(hex(e.pt)), c.final(), c.getAuthTag()]);
        assert.equal(ct.toString('hex'), e.ct);
        const opened = openBase({
          skR: hex(v.skRm),
          enc: hex(v.enc),
          info: hex(v.info),
          aad: hex(e.aad),
          ct,
          aeadId: v.aead_id,
          seq: e.sequence_number,
        });
        assert.equal(opened.toString('hex'), e.pt);
      }
    });
  });
}

describe('HPKE refusals', () => {
  const v = vectors[0];
  it('a recipient key off the curve is refused, not used', () => {
    const bad = hex(v.pkRm);
    bad[64] ^= 1;
    assert.throws(() =>
      sealBase({
        pkR: bad,
        ikmE: hex(v.ikmE),
        info: Buffer.alloc(0),
        aad: Buffer.alloc(0),
        pt: Buffer.alloc(1),
      }),
    );
  });

  it('DeriveKeyPair refuses less than 32 bytes of ikm', () => {
    assert.throws(() => deriveKeyPair(Buffer.alloc(31)), RangeError);
  });

  it('a changed info or aad does not open', () => {
    const { enc, ct } = sealBase({
      pkR: hex(v.pkRm),
      ikmE: hex(v.ikmE),
      info: Buffer.from('a'),
      aad: Buffer.from('b'),
      pt: Buffer.from('x'),
    });
    const open = (/** @type {string} */ info, /** @type {string} */ aad) =>
      openBase({ skR: hex(v.skRm), enc, info: Buffer.from(info), aad: Buffer.from(aad), ct });
    assert.equal(open('a', 'b').toString(), 'x');
    assert.throws(() => open('c', 'b'));
    assert.throws(() => open('a', 'c'));
  });
});
