// Admin request signatures (docs/admin-api.md) against an HMAC computed by hand, step by step.
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';

import { adminKey, signAdminRequest } from '../src/admin.js';
import { vectorKeyring } from './helpers.js';

const TENANT_KEY = vectorKeyring().get('k1').key;

/** RFC 5869 with SHA-256 for L <= 32, written out: an empty salt means HashLen zero bytes. */
function handHkdf(/** @type {Buffer} */ ikm, /** @type {string} */ info) {
  const prk = createHmac('sha256', Buffer.alloc(32)).update(ikm).digest();
  return createHmac('sha256', prk)
    .update(Buffer.concat([Buffer.from(info), Buffer.from([1])]))
    .digest();
}

describe('admin signature', () => {
  it('derives the admin key as specified, distinct from the tenant key', () => {
    const key = adminKey(TENANT_KEY);
    assert.deepEqual(key, handHkdf(TENANT_KEY, 'relayapi admin v1'));
    assert.notDeepEqual(key, TENANT_KEY);
  });

  for (const [method, target, body] of [
    ['GET', '/admin/v1/tokens/74281f178e39643b62ddd692c98d6547', ''],
    ['POST', '/admin/v1/tokens/74281f178e39643b62ddd692c98d6547/revoke', ''],
    ['POST', '/admin/v1/revoke-before', '{"before":1790000000}'],
  ]) {
    it(`signs ${method} ${target}`, () => {
      const ts = 1790000123;
      const header = signAdminRequest({ kid: 'k1', tenantKey: TENANT_KEY, method, target, body, ts });
      const bodyHash = createHash('sha256').update(body).digest('hex');
      const mac = createHmac('sha256', handHkdf(TENANT_KEY, 'relayapi admin v1'))
        .update([method, target, String(ts), bodyHash].join('\n'))
        .digest();
      const sig = mac.toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      assert.equal(header, `RelayAPI-HMAC-SHA256 kid=k1,ts=${ts},sig=${sig}`);
    });
  }

  it('matches the values the Rust relay pins for the k1 vector key (src/admin.rs)', () => {
    assert.equal(
      adminKey(TENANT_KEY).toString('hex'),
      'b2a091b9062ac518a2398d9fae54ade0db8ec35cf61e48418900e701301fd841',
    );
    assert.equal(
      signAdminRequest({
        kid: 'k1',
        tenantKey: TENANT_KEY,
        method: 'POST',
        target: '/admin/v1/revoke-before',
        body: '{"before":1790000000}',
        ts: 1790000000,
      }),
      'RelayAPI-HMAC-SHA256 kid=k1,ts=1790000000,sig=mtr-gjK6MvHeYFtA9_A0NW9ENJ4Hrl_8cQhx_758fs0',
    );
  });

  it('changes with every signed input', () => {
    const base = { kid: 'k1', tenantKey: TENANT_KEY, method: 'POST', target: '/x', body: '{}', ts: 1 };
    const sig = (/** @type {object} */ over) => signAdminRequest({ ...base, ...over }).split('sig=')[1];
    const seen = new Set([sig({})]);
    for (const over of [
      { method: 'GET' },
      { target: '/y' },
      { body: '{ }' },
      { ts: 2 },
      { tenantKey: Buffer.alloc(32) },
    ]) {
      seen.add(sig(over));
    }
    assert.equal(seen.size, 6);
  });
});
