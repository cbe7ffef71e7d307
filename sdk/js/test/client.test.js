// RelayAPIClient without the network: URL building (docs/client-config.md "Relay URLs"), one-step base
// URLs, decoding and verifying tokens with current and previous keys, constructor options.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { RelayAPIClient } from '../src/index.js';
import { mintFromParts } from '../src/token.js';
import { raiObject, readVector, vectorKeyring } from './helpers.js';

const TOKEN = readVector('generate.json')[0].token;
const client = new RelayAPIClient(raiObject());

describe('generateUrl (path form)', () => {
  it('builds the base URL and the endpoint URLs', () => {
    const base = `http://127.0.0.1:8080/relayapi/${TOKEN}`;
    assert.equal(client.urlForToken(TOKEN), base);
    assert.equal(client.urlForToken(TOKEN, ''), base);
    assert.equal(client.urlForToken(TOKEN, 'chat_completions'), `${base}/chat/completions`);
    assert.equal(client.urlForToken(TOKEN, 'images_generations'), `${base}/images/generations`);
    assert.equal(client.urlForToken(TOKEN, 'embeddings'), `${base}/embeddings`);
    assert.equal(client.urlForToken(TOKEN, '/v1/messages'), `${base}/v1/messages`);
  });

  it('follows the .rai scheme, host, port and base_path', () => {
    const c = (/** @type {object} */ server) => new RelayAPIClient(raiObject({ server })).urlForToken(TOKEN);
    assert.equal(
      c({ scheme: 'https', host: 'relay.example.com', port: 443 }),
      `https://relay.example.com/relayapi/${TOKEN}`,
    );
    assert.equal(
      c({ scheme: 'http', host: 'relay.example.com', port: 80 }),
      `http://relay.example.com/relayapi/${TOKEN}`,
    );
    assert.equal(c({ scheme: 'https', port: 8443 }), `https://127.0.0.1:8443/relayapi/${TOKEN}`);
    assert.equal(c({ host: '::1', base_path: '/' }), `http://[::1]:8080/${TOKEN}`);
    assert.equal(c({ base_path: '/ai/relay/' }), `http://127.0.0.1:8080/ai/relay/${TOKEN}`);
  });

  it('refuses text that is not a token, so nothing can be injected into the URL', () => {
    for (const bad of [
      '',
      'abc',
      'rt1.',
      'rt1.a/b',
      'rt1.a?x',
      'rt1.a#f',
      'rt1.a b',
      `rt1.${'A'.repeat(4093)}`,
      42,
    ]) {
      assert.throws(() => client.urlForToken(/** @type {any} */ (bad)), {
        code: 'ERR_INVALID_ARGUMENT',
        param: 'token',
      });
    }
  });

  it('refuses unknown endpoint names and unsafe paths', () => {
    for (const bad of [
      'chat',
      'completions',
      'v1/messages',
      '/a?b',
      '/a#b',
      '/../admin',
      '/a/./b',
      '/a b',
      '//x',
      7,
    ]) {
      assert.throws(
        () => client.urlForToken(TOKEN, /** @type {any} */ (bad)),
        { param: 'endpoint' },
        String(bad),
      );
    }
  });
});

describe('generateQueryUrl and relayBaseUrl', () => {
  it('builds the original query form', () => {
    assert.equal(
      client.queryUrlForToken(TOKEN),
      `http://127.0.0.1:8080/relayapi/chat/completions?token=${TOKEN}`,
    );
    assert.equal(
      client.queryUrlForToken(TOKEN, 'embeddings'),
      `http://127.0.0.1:8080/relayapi/embeddings?token=${TOKEN}`,
    );
    assert.throws(() => client.queryUrlForToken(TOKEN, ''), { param: 'endpoint' });
  });

  it('gives the header-form base URL without a token', () => {
    assert.equal(client.relayBaseUrl, 'http://127.0.0.1:8080/relayapi/');
    assert.equal(client.origin, 'http://127.0.0.1:8080');
  });
});

describe('generateBaseUrl', () => {
  it('mints a token and returns its base URL in one step', () => {
    const url = client.generateUrl({ apiKey: 'test-key-123', maxCalls: 3, provider: 'anthropic' });
    const prefix = 'http://127.0.0.1:8080/relayapi/';
    assert.ok(url.startsWith(prefix));
    const claims = client.decodeToken(url.slice(prefix.length));
    assert.equal(claims.max, 3);
    assert.equal(claims.prv, 'anthropic');
    assert.equal(claims.key, 'test-key-123');
  });
});

describe('decodeToken and verifyToken', () => {
  const ring = vectorKeyring();
  const claims = {
    jti: '0123456789abcdef0123456789abcdef',
    tid: 'acme',
    iat: 1790000000,
    exp: 1790003600,
    prv: 'openai',
    key: 'test-key-123',
  };
  const salt = Buffer.alloc(16, 1);

  it('reads tokens of the current key and of previous keys, not of other tenants', () => {
    assert.deepEqual(client.decodeToken(TOKEN), readVector('generate.json')[0].claims);
    const old = mintFromParts({ claims, kid: 'k2-2026.rotated', key: ring.get('k2-2026.rotated').key, salt });
    assert.deepEqual(client.decodeToken(old.token), claims);
    const globex = mintFromParts({
      claims: { ...claims, tid: 'globex-corp' },
      kid: 'globex',
      key: ring.get('globex').key,
      salt,
    });
    assert.throws(() => client.decodeToken(globex.token), { code: 'ERR_INVALID_TOKEN' });
  });

  it('decodeToken ignores time; verifyToken checks it, with leeway', () => {
    const { token } = mintFromParts({ claims, kid: 'k1', key: ring.get('k1').key, salt });
    assert.equal(client.decodeToken(token).exp, 1790003600);
    assert.deepEqual(client.verifyToken(token, { now: 1790000000 }), claims);
    assert.throws(() => client.verifyToken(token, { now: 1790003600 }), { code: 'ERR_TOKEN_EXPIRED' });
    assert.doesNotThrow(() => client.verifyToken(token, { now: 1790003600, leeway: 60 }));
    assert.throws(
      () => client.verifyToken(token, { now: 1789999999 }),
      (err) => {
        // Expired and not-yet-valid are InvalidTokenErrors too, with their own codes.
        assert.equal(err.name, 'TokenNotYetValidError');
        assert.equal(err.code, 'ERR_TOKEN_NOT_YET_VALID');
        assert.ok(err instanceof Error && err.constructor.name === 'TokenNotYetValidError');
        return true;
      },
    );
    // A token minted a moment ago is valid against the system clock.
    assert.doesNotThrow(() => client.verifyToken(client.createToken({ apiKey: 'test-key-123' })));
    assert.throws(() => client.verifyToken(token, { now: -1 }), { param: 'now' });
    assert.throws(() => client.verifyToken(token, { leeway: 1.5 }), { param: 'leeway' });
  });
});

describe('constructor', () => {
  it('refuses a bad config with ConfigError and bad options with InvalidArgumentError', () => {
    assert.throws(() => new RelayAPIClient(raiObject({ version: 2 })), {
      code: 'ERR_CONFIG',
      field: 'version',
    });
    assert.throws(() => new RelayAPIClient(raiObject(), { timeout: 0 }), { param: 'timeout' });
    assert.throws(() => new RelayAPIClient(raiObject(), { timeout: Infinity }), { param: 'timeout' });
    assert.throws(() => new RelayAPIClient(raiObject(), { timeout: 30 * 86400 }), { param: 'timeout' });
    assert.throws(() => new RelayAPIClient(raiObject(), { timeout: NaN }), { param: 'timeout' });
    assert.doesNotThrow(() => new RelayAPIClient(raiObject(), { timeout: 0.5 }));
    assert.throws(() => new RelayAPIClient(raiObject(), /** @type {any} */ ({ timeOut: 5 })), {
      param: 'timeOut',
    });
    assert.throws(() => new RelayAPIClient(raiObject(), /** @type {any} */ ({ fetch: 'x' })), {
      param: 'fetch',
    });
  });
});
