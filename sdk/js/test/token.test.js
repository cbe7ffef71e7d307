// Token sealing and opening beyond the shared vectors: tampering, encoding strictness, key selection,
// claims-level rejections that need a valid tag, and the time checks.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { MAX_TOKEN_CHARS, checkTime, decodeBase64url, mintFromParts, openToken, seal } from '../src/token.js';
import { vectorKeyring } from './helpers.js';

const ring = vectorKeyring();
const K1 = ring.get('k1').key;
const SALT = Buffer.alloc(16, 7);
const CLAIMS = Object.freeze({
  jti: '0123456789abcdef0123456789abcdef',
  tid: 'acme',
  iat: 1790000000,
  exp: 1790003600,
  prv: 'openai',
  key: 'test-key-123',
  max: 100,
});
const sealText = (/** @type {string} */ text, kid = 'k1', key = K1) =>
  seal(key, kid, SALT, Buffer.from(text));
const invalid = { name: 'InvalidTokenError', code: 'ERR_INVALID_TOKEN', message: 'invalid token' };

describe('mint and open', () => {
  it('round-trips claims under every key of the ring', () => {
    for (const [kid, { tenant, key }] of ring) {
      const claims = { ...CLAIMS, tid: tenant };
      const { token } = mintFromParts({ claims, kid, key, salt: randomBytes(16) });
      assert.deepEqual(openToken(token, ring), { kid, claims });
    }
  });

  it('detects a change to any single bit of the blob', () => {
    const { token } = mintFromParts({ claims: CLAIMS, kid: 'k1', key: K1, salt: SALT });
    const blob = /** @type {Buffer} */ (decodeBase64url(token.slice(4)));
    for (let i = 0; i < blob.length; i += 1) {
      for (const bit of [0x01, 0x80]) {
        const copy = Buffer.from(blob);
        copy[i] ^= bit;
        assert.throws(() => openToken(`rt1.${copy.toString('base64url')}`, ring), invalid, `byte ${i}`);
      }
    }
  });

  it('refuses a token whose kid is not in the ring, even with the right key bytes', () => {
    const token = sealText(JSON.stringify(CLAIMS), 'k9');
    assert.throws(() => openToken(token, ring), invalid);
    assert.throws(() => openToken(token, new Map()), invalid);
  });

  it("refuses a token whose tid is another tenant's, though the tag is valid", () => {
    assert.throws(
      () => openToken(sealText(JSON.stringify({ ...CLAIMS, tid: 'globex-corp' })), ring),
      invalid,
    );
    const globex = ring.get('globex');
    const ok = mintFromParts({
      claims: { ...CLAIMS, tid: 'globex-corp' },
      kid: 'globex',
      ...globex,
      salt: SALT,
    });
    assert.equal(openToken(ok.token, ring).claims.tid, 'globex-corp');
  });

  it('refuses claims that authenticate but break §5 (needs a valid tag to reach the parser)', () => {
    const good = JSON.stringify(CLAIMS);
    assert.doesNotThrow(() => openToken(sealText(good), ring));
    const bad = [
      good.replace('"max":100', '"max":100,"max":100'),
      good.replace('"max":100', '"max":100.0'),
      good.replace('"max":100', '"max":1e2'),
      good.replace('"iat":1790000000', '"iat":-0'),
      good.replace('}', ',"extra":1}'),
      `\ufeff${good}`,
      `${good}x`,
      good.replace('"test-key-123"', '"test-key-\\ud800"'),
      'null',
      '"string"',
    ];
    for (const text of bad) assert.throws(() => openToken(sealText(text), ring), invalid, text);
    // JSON whitespace is still JSON; §5 only asks minters to be compact.
    assert.doesNotThrow(() => openToken(sealText(` ${good}\n`), ring));
    // Invalid UTF-8: a lone continuation byte inside a string.
    const bytes = Buffer.concat([Buffer.from('{"jti":"'), Buffer.from([0x80]), Buffer.from('"}')]);
    assert.throws(() => openToken(seal(K1, 'k1', SALT, bytes), ring), invalid);
  });

  it('refuses non-strings and over-long text before decoding', () => {
    for (const v of [undefined, null, 42, {}, Buffer.from('rt1.AAAA')])
      assert.throws(() => openToken(v, ring), invalid);
    const { token } = mintFromParts({ claims: CLAIMS, kid: 'k1', key: K1, salt: SALT });
    assert.throws(() => openToken(token + 'A'.repeat(MAX_TOKEN_CHARS), ring), invalid);
  });

  it('refuses malformed inputs to seal loudly (programmer errors, not tokens)', () => {
    assert.throws(() => seal(Buffer.alloc(31), 'k1', SALT, Buffer.from('{}')), RangeError);
    assert.throws(() => seal(K1, 'bad kid', SALT, Buffer.from('{}')), RangeError);
    assert.throws(() => seal(K1, 'k1', Buffer.alloc(15), Buffer.from('{}')), RangeError);
  });
});

describe('decodeBase64url', () => {
  it('decodes canonical unpadded base64url', () => {
    assert.deepEqual(decodeBase64url(''), Buffer.alloc(0));
    assert.deepEqual(decodeBase64url('AQ'), Buffer.from([1]));
    assert.deepEqual(decodeBase64url('_-8'), Buffer.from([0xff, 0xef]));
  });

  it('refuses padding, foreign characters, impossible lengths and non-zero unused bits', () => {
    for (const text of ['AQ==', 'AQ=', 'A+8', 'A/8', 'A Q', 'AQ\n', 'A', 'AAAAA', 'AR', 'AB', '_-9']) {
      assert.equal(decodeBase64url(text), null, text);
    }
  });
});

describe('checkTime (§7 steps 7-8)', () => {
  const c = { iat: 1000, exp: 2000 };
  it('is valid from iat up to one second before exp', () => {
    assert.doesNotThrow(() => checkTime(c, 1000, 0));
    assert.doesNotThrow(() => checkTime(c, 1999, 0));
    assert.throws(() => checkTime(c, 2000, 0), { code: 'ERR_TOKEN_EXPIRED', claims: c });
    assert.throws(() => checkTime(c, 999, 0), { code: 'ERR_TOKEN_NOT_YET_VALID', claims: c });
  });

  it('widens both ends by the leeway', () => {
    assert.doesNotThrow(() => checkTime(c, 940, 60));
    assert.throws(() => checkTime(c, 939, 60), { name: 'TokenNotYetValidError' });
    assert.doesNotThrow(() => checkTime(c, 2059, 60));
    assert.throws(() => checkTime(c, 2060, 60), { name: 'TokenExpiredError' });
  });
});
