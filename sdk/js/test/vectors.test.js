// The shared vectors of docs/token-format.md §9, run through the JS implementation after checking the
// files' shape against tests/vectors/schema.json.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import Ajv2020 from 'ajv/dist/2020.js';

import { canonicalJson, checkClaims } from '../src/claims.js';
import { checkTime, mintFromParts, openToken } from '../src/token.js';
import { readVector, vectorKeyring } from './helpers.js';

const schema = readVector('schema.json');
const files = {
  keys: readVector('keys.json'),
  generate: readVector('generate.json'),
  verify: readVector('verify.json'),
  invalid: readVector('invalid.json'),
  conformance: readVector('conformance.json'),
};

describe('vector files match schema.json', () => {
  // strictRequired flags the schema's valid if/then on `claims` (declared in the outer properties).
  const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
  ajv.addSchema(schema);
  for (const [name, data] of Object.entries(files)) {
    it(`${name}.json`, () => {
      const validate = ajv.getSchema(`${schema.$id}#/$defs/${name}`);
      assert.ok(validate, `schema has no $defs/${name}`);
      assert.ok(validate(data), ajv.errorsText(validate.errors));
    });
  }
  it('the schema check can fail (a misspelt member is refused)', () => {
    const validate = ajv.getSchema(`${schema.$id}#/$defs/invalid`);
    assert.equal(validate([{ description: 'x', token: 'rt1.A', now: 1 }]), false);
  });
});

describe('generate.json: byte-identical minting', () => {
  const ring = vectorKeyring();
  for (const g of files.generate) {
    it(g.desc, () => {
      assert.equal(canonicalJson(checkClaims(g.claims)), g.claims_json);
      const { token, claimsJson } = mintFromParts({
        claims: g.claims,
        kid: g.kid,
        key: ring.get(g.kid).key,
        salt: Buffer.from(g.salt, 'hex'),
      });
      assert.equal(claimsJson, g.claims_json);
      assert.equal(token, g.token);
    });
  }
});

describe('verify.json: results at the given time and max_lifetime, leeway 0', () => {
  const ring = vectorKeyring();
  for (const v of files.verify) {
    it(v.desc, () => {
      const { claims } = openToken(v.token, ring);
      if (v.result === 'ok') {
        checkTime(claims, v.now, 0, v.max_lifetime);
        assert.deepEqual(claims, v.claims);
      } else {
        const code = {
          expired: 'ERR_TOKEN_EXPIRED',
          not_yet_valid: 'ERR_TOKEN_NOT_YET_VALID',
          lifetime_too_long: 'ERR_TOKEN_LIFETIME_TOO_LONG',
        }[v.result];
        assert.throws(() => checkTime(claims, v.now, 0, v.max_lifetime), { code });
      }
    });
  }
});

describe('invalid.json: every token refused with the one InvalidTokenError', () => {
  const ring = vectorKeyring();
  for (const v of files.invalid) {
    it(v.desc, () => {
      assert.throws(() => openToken(v.token, ring), { name: 'InvalidTokenError', message: 'invalid token' });
    });
  }
});
