// tests/vectors/conformance.json: one case per rule of the token format's §3, §5.1, §6 step 8 and §7.1
// and of the `.rai` rules, with the verdict the relay and the Python SDK reach too. Token cases run
// through the verifier and, when they carry claims, through the minter; `.rai` cases through loadConfig
// on a real file. (The schema check of the file is in vectors.test.js.)
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { canonicalJson, checkClaims, ClaimError } from '../src/claims.js';
import { loadConfig } from '../src/config.js';
import { ConfigError, InvalidTokenError } from '../src/errors.js';
import { mintFromParts, openToken } from '../src/token.js';
import { readVector, vectorKeyring } from './helpers.js';

const { tokens, rai } = readVector('conformance.json');
const ring = new Map([['k1', vectorKeyring().get('k1')]]);

describe('conformance.json: token verdicts of the verifier', () => {
  for (const c of tokens) {
    it(`${c.rule} ${c.desc}`, () => {
      if (c.verdict === 'valid') {
        const { claims } = openToken(c.token, ring);
        if (c.claims !== undefined) assert.deepEqual({ ...claims }, c.claims);
      } else {
        assert.throws(
          () => openToken(c.token, ring),
          (err) => err instanceof InvalidTokenError && err.constructor === InvalidTokenError,
        );
      }
    });
  }
});

describe('conformance.json: token verdicts of the minter', () => {
  for (const c of tokens.filter((t) => t.claims !== undefined)) {
    it(`${c.rule} ${c.desc}`, () => {
      const parts = {
        claims: c.claims,
        kid: 'k1',
        key: ring.get('k1').key,
        salt: Buffer.from(c.salt, 'hex'),
      };
      if (c.verdict === 'valid') {
        assert.equal(canonicalJson(checkClaims(c.claims)), c.canonical);
        const { token, claimsJson } = mintFromParts(parts);
        assert.equal(claimsJson, c.canonical);
        assert.deepEqual({ ...openToken(token, ring).claims }, c.claims);
        if (c.plaintext === c.canonical) assert.equal(token, c.token);
      } else {
        assert.throws(() => mintFromParts(parts), ClaimError);
      }
    });
  }
});

describe('conformance.json: .rai verdicts of loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relayapi-conformance-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  rai.forEach((c, i) => {
    it(`${c.rule} ${c.desc}`, () => {
      const path = join(dir, `case-${i}.rai`);
      writeFileSync(path, c.rai, 'utf8');
      if (c.verdict === 'load') {
        assert.ok(loadConfig(path).tenantId);
      } else {
        assert.throws(() => loadConfig(path), ConfigError);
      }
    });
  });
});

it('conformance.json covers both verdicts and every rule group', () => {
  assert.ok(tokens.length >= 180 && rai.length >= 60);
  assert.deepEqual(new Set(tokens.map((t) => t.verdict)), new Set(['valid', 'invalid']));
  for (const rule of ['J1', 'J2', 'J3', 'J4', 'J5', 'J6', 'J7', '3', '6.8']) {
    assert.ok(
      tokens.some((t) => t.rule === rule),
      rule,
    );
  }
  for (let i = 1; i <= 9; i += 1)
    assert.ok(
      rai.some((r) => r.rule === `C${i}`),
      `C${i}`,
    );
});
