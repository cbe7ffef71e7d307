// Packaging promises: the exports map (types first), no runtime dependencies, runtime exports matching
// the hand-written declarations, and stable error codes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import * as sdk from 'relayapi-tokens';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const dts = readFileSync(new URL('../types/index.d.ts', import.meta.url), 'utf8');

describe('package.json', () => {
  it('is an ES module with an exports map that lists types first', () => {
    assert.equal(pkg.type, 'module');
    assert.deepEqual(Object.keys(pkg.exports['.']), ['types', 'default']);
    assert.equal(pkg.exports['.'].types, './types/index.d.ts');
    assert.equal(pkg.engines.node, '>=20');
  });

  it('has no runtime dependencies', () => {
    assert.equal(pkg.dependencies, undefined);
    assert.equal(pkg.peerDependencies, undefined);
    assert.equal(pkg.optionalDependencies, undefined);
  });

  it('keeps internal modules out of reach', async () => {
    await assert.rejects(import('relayapi-tokens/src/token.js'), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
  });
});

describe('public surface', () => {
  it('exports at runtime exactly the values the declarations name', () => {
    const declared = [...dts.matchAll(/^export (?:declare )?(?:class|const|function) (\w+)/gm)].map(
      (m) => m[1],
    );
    assert.deepEqual(Object.keys(sdk).sort(), declared.sort());
  });

  it('gives every error class a stable code, also on instances', () => {
    const codes = {
      RelayAPIError: 'ERR_RELAYAPI',
      ConfigError: 'ERR_CONFIG',
      InvalidArgumentError: 'ERR_INVALID_ARGUMENT',
      InvalidTokenError: 'ERR_INVALID_TOKEN',
      TokenExpiredError: 'ERR_TOKEN_EXPIRED',
      TokenNotYetValidError: 'ERR_TOKEN_NOT_YET_VALID',
      APIError: 'ERR_API',
      RelayConnectionError: 'ERR_CONNECTION',
      BadResponseError: 'ERR_BAD_RESPONSE',
    };
    for (const [name, code] of Object.entries(codes)) {
      const cls = /** @type {any} */ (sdk)[name];
      assert.equal(cls.code, code, name);
      assert.ok(cls.prototype instanceof Error, name);
      if (name !== 'RelayAPIError') assert.ok(cls.prototype instanceof sdk.RelayAPIError, name);
    }
    assert.ok(sdk.TokenExpiredError.prototype instanceof sdk.InvalidTokenError);
    assert.ok(sdk.TokenNotYetValidError.prototype instanceof sdk.InvalidTokenError);
    const err = new sdk.TokenExpiredError({});
    assert.equal(err.code, 'ERR_TOKEN_EXPIRED');
    assert.equal(err.name, 'TokenExpiredError');
    assert.equal(err.message, 'token expired');
    assert.equal(new sdk.InvalidArgumentError('maxCalls', 'bad').param, 'maxCalls');
  });

  it('uses the Python SDK defaults', () => {
    assert.equal(sdk.DEFAULT_MAX_CALLS, 100);
    assert.equal(sdk.DEFAULT_EXPIRE_SECONDS, 3600);
    assert.equal(sdk.DEFAULT_PROVIDER, 'openai');
    assert.equal(sdk.DEFAULT_TIMEOUT_SECONDS, 600);
  });
});
