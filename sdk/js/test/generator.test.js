// createToken options → claims (the Python SDK's keyword names in camelCase), defaults, argument errors,
// and freshness of the public minting path.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { loadConfig } from '../src/config.js';
import { mintChecked, TokenGenerator } from '../src/generator.js';
import { claimsFromOptions } from '../src/options.js';
import { openToken } from '../src/token.js';
import { raiObject, readVector, vectorKeyring } from './helpers.js';

const PARTS = { tenant: 'acme', now: 1790000000, jti: '0123456789abcdef0123456789abcdef' };
const ring = vectorKeyring();

describe('claimsFromOptions', () => {
  it('applies the defaults: 100 calls, 3600 seconds, provider openai', () => {
    assert.deepEqual(claimsFromOptions({ apiKey: 'test-key-123' }, PARTS), {
      jti: PARTS.jti,
      tid: 'acme',
      iat: 1790000000,
      exp: 1790003600,
      prv: 'openai',
      key: 'test-key-123',
      max: 100,
    });
  });

  it('treats maxCalls: null as unlimited and null limits as absent', () => {
    const c = claimsFromOptions(
      { apiKey: 'k', maxCalls: null, rateLimit: null, userId: null, extInfo: null },
      PARTS,
    );
    assert.equal('max' in c, false);
    assert.equal('rate' in c, false);
    assert.equal('uid' in c, false);
    assert.equal('ext' in c, false);
  });

  it('reproduces the "every optional limit" vector byte for byte from options', () => {
    const v = readVector('generate.json').find((g) => g.desc === 'every optional limit');
    const claims = claimsFromOptions(
      {
        apiKey: v.claims.key,
        maxCalls: 5,
        expireSeconds: 3600,
        provider: 'openai',
        extInfo: '{"rep_m": "gpt-4o-mini"}',
        baseUrl: 'https://llm-proxy.example.com/v1',
        rateLimit: [10, 60],
        maxConcurrent: 2,
        allowedModels: ['gpt-4o-mini', 'gpt-4o'],
        allowedEndpoints: ['/chat/completions', '/embeddings'],
        allowedOrigins: ['https://app.example.com'],
        allowedIps: ['203.0.113.0/24', '2001:db8::/32'],
        maxTokens: 512,
        maxTokensMode: 'reject',
        userId: 'user-42',
      },
      { tenant: 'acme', now: v.claims.iat, jti: v.claims.jti },
    );
    const config = { ...loadConfig(raiObject()), keyId: v.kid, key: ring.get(v.kid).key };
    assert.equal(mintChecked(config, claims, Buffer.from(v.salt, 'hex')), v.token);
  });

  it('reproduces the realtime session cap vector from sessionSeconds', () => {
    const v = readVector('generate.json').find((g) => g.desc.startsWith('realtime session cap'));
    const claims = claimsFromOptions(
      {
        apiKey: v.claims.key,
        allowedModels: ['gpt-realtime'],
        userId: 'voice-7',
        userQuotas: [{ window: 'day', calls: 20 }],
        sessionSeconds: 900,
      },
      { tenant: 'acme', now: v.claims.iat, jti: v.claims.jti },
    );
    const config = { ...loadConfig(raiObject()), keyId: v.kid, key: ring.get(v.kid).key };
    assert.equal(mintChecked(config, claims, Buffer.from(v.salt, 'hex')), v.token);
  });

  it('reproduces the key reference vector from keyRef', () => {
    const v = readVector('generate.json').find((g) => g.desc.startsWith('server-side key reference'));
    const claims = claimsFromOptions(
      { keyRef: 'openai-main', provider: 'deepseek' },
      { tenant: 'acme', now: v.claims.iat, jti: v.claims.jti },
    );
    const config = { ...loadConfig(raiObject()), keyId: v.kid, key: ring.get(v.kid).key };
    assert.equal(mintChecked(config, claims, Buffer.from(v.salt, 'hex')), v.token);
  });

  it('takes extInfo as "", a JSON text, or an object with only rep_m', () => {
    const ext = (/** @type {unknown} */ extInfo) =>
      claimsFromOptions({ apiKey: 'k', extInfo: /** @type {any} */ (extInfo) }, PARTS).ext;
    assert.equal(ext(''), undefined);
    assert.equal(ext('{}'), undefined);
    assert.equal(ext({}), undefined);
    assert.deepEqual({ .../** @type {object} */ (ext('{"rep_m":"m"}')) }, { rep_m: 'm' });
    assert.deepEqual(ext({ rep_m: 'm' }), { rep_m: 'm' });
    assert.throws(() => ext('not json'), { code: 'ERR_INVALID_ARGUMENT', param: 'extInfo' });
    assert.throws(() => ext('{"rep_m":"a","rep_m":"b"}'), { param: 'extInfo' });
  });
});

describe('createToken argument errors name the option', () => {
  const gen = new TokenGenerator(raiObject());
  const cases = [
    [{}, 'apiKey'],
    [{ apiKey: 'k', keyRef: 'r' }, 'keyRef'],
    [{ apiKey: '' }, 'apiKey'],
    [{ apiKey: 'k\n' }, 'apiKey'],
    [{ apiKey: 'k', maxCalls: 0 }, 'maxCalls'],
    [{ apiKey: 'k', maxCalls: 1.5 }, 'maxCalls'],
    [{ apiKey: 'k', maxCalls: '100' }, 'maxCalls'],
    [{ apiKey: 'k', expireSeconds: 0 }, 'expireSeconds'],
    [{ apiKey: 'k', expireSeconds: null }, 'expireSeconds'],
    [{ apiKey: 'k', expireSeconds: Number.MAX_SAFE_INTEGER }, 'expireSeconds'],
    [{ apiKey: 'k', provider: 'OpenAI' }, 'provider'],
    [{ apiKey: 'k', provider: null }, 'provider'],
    [{ apiKey: 'k', extInfo: { other: 1 } }, 'extInfo.other'],
    [{ apiKey: 'k', extInfo: '"gpt-4o"' }, 'extInfo'],
    [{ apiKey: 'k', baseUrl: 'http://plain.example.com' }, 'baseUrl'],
    [{ apiKey: 'k', baseUrl: 'https://plain.example.com/v1?x=1' }, 'baseUrl'],
    [{ apiKey: 'k', baseUrl: 'https://user@plain.example.com/v1' }, 'baseUrl'],
    [{ keyRef: 'has space' }, 'keyRef'],
    [{ keyRef: '' }, 'keyRef'],
    [{ keyRef: 'k'.repeat(65) }, 'keyRef'],
    [{ keyRef: 5 }, 'keyRef'],
    [{ apiKey: 'k', rateLimit: [10] }, 'rateLimit'],
    [{ apiKey: 'k', rateLimit: { n: 1, s: 1 } }, 'rateLimit'],
    [{ apiKey: 'k', rateLimit: [0, 60] }, 'rateLimit[0]'],
    [{ apiKey: 'k', rateLimit: [10, 0] }, 'rateLimit[1]'],
    [{ apiKey: 'k', maxConcurrent: 10001 }, 'maxConcurrent'],
    [{ apiKey: 'k', allowedModels: 'gpt-4o' }, 'allowedModels'],
    [{ apiKey: 'k', allowedModels: [] }, 'allowedModels'],
    [{ apiKey: 'k', allowedModels: ['gpt-4o', ''] }, 'allowedModels[1]'],
    [{ apiKey: 'k', allowedModels: ['x'.repeat(257)] }, 'allowedModels[0]'],
    [{ apiKey: 'k', allowedModels: [1] }, 'allowedModels[0]'],
    [{ apiKey: 'k', allowedEndpoints: ['chat/completions'] }, 'allowedEndpoints[0]'],
    [{ apiKey: 'k', allowedEndpoints: ['/a', '/chat/completions?x=1'] }, 'allowedEndpoints[1]'],
    [{ apiKey: 'k', allowedEndpoints: ['/a b'] }, 'allowedEndpoints[0]'],
    [{ apiKey: 'k', allowedEndpoints: [] }, 'allowedEndpoints'],
    [{ apiKey: 'k', allowedOrigins: ['https://a.example.com/'] }, 'allowedOrigins[0]'],
    [{ apiKey: 'k', allowedOrigins: ['app.example.com'] }, 'allowedOrigins[0]'],
    [{ apiKey: 'k', allowedOrigins: ['ftp://x.com'] }, 'allowedOrigins[0]'],
    [{ apiKey: 'k', allowedOrigins: ['https://x.com:123456'] }, 'allowedOrigins[0]'],
    [{ apiKey: 'k', allowedIps: ['10.0.0.1', '10.0.0.0/8'] }, 'allowedIps[0]'],
    [{ apiKey: 'k', maxTokens: 0 }, 'maxTokens'],
    [{ apiKey: 'k', maxTokens: 10, maxTokensMode: 'ignore' }, 'maxTokensMode'],
    [{ apiKey: 'k', maxTokensMode: 'clamp' }, 'maxTokensMode'],
    [{ apiKey: 'k', userId: 'a\nb' }, 'userId'],
    [{ apiKey: 'k', userId: 'é' }, 'userId'],
    [{ apiKey: 'k', userId: '' }, 'userId'],
    [{ apiKey: 'k', userId: 'x'.repeat(129) }, 'userId'],
    [{ apiKey: 'k', sessionSeconds: 0 }, 'sessionSeconds'],
    [{ apiKey: 'k', sessionSeconds: 86401 }, 'sessionSeconds'],
    [{ apiKey: 'k', sessionSeconds: 1.5 }, 'sessionSeconds'],
    [{ apiKey: 'k', sessionSeconds: '600' }, 'sessionSeconds'],
    [{ apiKey: 'k', max_calls: 5 }, 'max_calls'],
    [{ apiKey: 'k', allowedModels: Array(64).fill('m'.repeat(200)) }, 'token'],
  ];
  for (const [options, param] of cases) {
    it(`${JSON.stringify(options).slice(0, 80)} → ${param}`, () => {
      assert.throws(() => gen.createToken(/** @type {any} */ (options)), {
        name: 'InvalidArgumentError',
        code: 'ERR_INVALID_ARGUMENT',
        param,
      });
    });
  }
  it('refuses a non-object', () => {
    assert.throws(() => gen.createToken(/** @type {any} */ ('k')), { param: 'options' });
  });
});

describe('TokenGenerator#createToken', () => {
  it('mints tokens the relay-side rules accept, with the current time and key', () => {
    const gen = new TokenGenerator(raiObject());
    const before = Math.floor(Date.now() / 1000);
    const { kid, claims } = openToken(gen.createToken({ apiKey: 'test-key-123', expireSeconds: 60 }), ring);
    const after = Math.floor(Date.now() / 1000);
    assert.equal(kid, 'k1');
    assert.ok(/** @type {number} */ (claims.iat) >= before && /** @type {number} */ (claims.iat) <= after);
    assert.equal(claims.exp, /** @type {number} */ (claims.iat) + 60);
    assert.equal(claims.tid, 'acme');
  });

  it('never repeats a token or a token id (10,000 draws with identical options)', () => {
    const gen = new TokenGenerator(raiObject());
    const tokens = new Set();
    const ids = new Set();
    for (let i = 0; i < 10000; i += 1) {
      const token = gen.createToken({ apiKey: 'test-key-123' });
      tokens.add(token);
      ids.add(openToken(token, ring).claims.jti);
    }
    assert.equal(tokens.size, 10000);
    assert.equal(ids.size, 10000);
  });
});

describe('a key mints only inside its validity window', () => {
  const SALT = new Uint8Array(16);
  const mintAt = (/** @type {object} */ crypto, /** @type {number} */ now) =>
    mintChecked(
      loadConfig(raiObject({ crypto })),
      claimsFromOptions({ apiKey: 'k' }, { ...PARTS, now }),
      SALT,
    );

  it('mints from not_before included to not_after excluded', () => {
    const window = { not_before: 1790000000, not_after: 1790000100 };
    for (const now of [1790000000, 1790000099]) {
      assert.equal(openToken(mintAt(window, now), ring).claims.iat, now);
    }
    assert.throws(() => mintAt(window, 1789999999), { name: 'ConfigError', field: 'crypto.not_before' });
    assert.throws(() => mintAt(window, 1790000100), {
      name: 'ConfigError',
      field: 'crypto.not_after',
      message: /retired/,
    });
  });

  it('refuses createToken and generateUrl with a retired key; a previous key window never matters', async () => {
    const { RelayAPIClient } = await import('../src/client.js');
    const retired = new RelayAPIClient(
      raiObject({ crypto: { not_after: Math.floor(Date.now() / 1000) - 1 } }),
    );
    assert.throws(() => retired.createToken({ apiKey: 'k' }), {
      name: 'ConfigError',
      field: 'crypto.not_after',
    });
    assert.throws(() => retired.generateUrl({ apiKey: 'k' }), { name: 'ConfigError' });
    const rai = raiObject();
    rai.crypto.previous_keys[0].not_after = 1;
    assert.ok(new RelayAPIClient(rai).createToken({ apiKey: 'k' }).startsWith('rt1.'));
  });
});

describe('createTokenWithClaims', () => {
  it('returns the token and exactly the claims it carries (symmetric method)', () => {
    const gen = new TokenGenerator(raiObject());
    const { token, claims } = gen.createTokenWithClaims({ apiKey: 'sk-x', maxCalls: 3, userId: 'u1' });
    assert.deepEqual(gen.decodeToken(token), claims);
    assert.match(/** @type {string} */ (claims.jti), /^[0-9a-f]{32}$/);
    assert.notEqual(gen.createTokenWithClaims({ apiKey: 'sk-x' }).claims.jti, claims.jti);
  });
});
