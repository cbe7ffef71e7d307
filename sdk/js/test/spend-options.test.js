// The spend-limit options (docs/budgets.md §1): budgetTokens, budgetCost and userQuotas become the claims
// bud and uq, and every rule of token format §5.1.20-21 is refused under the option's name, with the
// messages the Python SDK gives.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { checkClaims } from '../src/claims.js';
import { loadConfig } from '../src/config.js';
import { mintChecked, TokenGenerator } from '../src/generator.js';
import { claimsFromOptions } from '../src/options.js';
import { raiObject, readVector, vectorKeyring } from './helpers.js';

const MAX = Number.MAX_SAFE_INTEGER;
const generator = new TokenGenerator(raiObject());
const claimsOf = (/** @type {Record<string, unknown>} */ options) =>
  generator.decodeToken(generator.createToken({ apiKey: 'test-key-123', ...options }));

describe('spend-limit options', () => {
  it('budgetTokens and budgetCost become bud', () => {
    assert.deepEqual(claimsOf({ budgetTokens: 200000, budgetCost: 1000000 }).bud, {
      tok: 200000,
      cost: 1000000,
    });
    assert.deepEqual(claimsOf({ budgetCost: MAX }).bud, { cost: MAX });
    assert.deepEqual(claimsOf({ budgetTokens: 1, budgetCost: null }).bud, { tok: 1 });
    assert.equal('bud' in claimsOf({ budgetTokens: null }), false);
  });

  it('userQuotas become uq in the order given, members in claim order', () => {
    const claims = claimsOf({
      userId: 'user-42',
      userQuotas: [
        { window: 'month', cost: 20000000 },
        { cost: 1000000, tokens: 200000, window: 'day', calls: 50 },
        { window: 'all', tokens: MAX, calls: null },
      ],
    });
    assert.deepEqual(claims.uq, [
      { w: 'month', cost: 20000000 },
      { w: 'day', calls: 50, tok: 200000, cost: 1000000 },
      { w: 'all', tok: MAX },
    ]);
  });

  for (const [desc, options] of [
    [
      'spend limits: token budget and three user quotas',
      (/** @type {any} */ c) => ({ apiKey: c.key, userId: c.uid }),
    ],
    [
      'spend limits: money budget only, one monthly call quota, server-side key',
      (/** @type {any} */ c) => ({ keyRef: c.kref, userId: c.uid }),
    ],
  ]) {
    it(`reproduces the "${desc}" vector byte for byte from options`, () => {
      const v = readVector('generate.json').find((g) => g.desc === desc);
      const c = v.claims;
      const claims = claimsFromOptions(
        {
          ...options(c),
          budgetTokens: c.bud.tok,
          budgetCost: c.bud.cost,
          userQuotas: c.uq.map((/** @type {any} */ q) => ({
            window: q.w,
            calls: q.calls,
            tokens: q.tok,
            cost: q.cost,
          })),
        },
        { tenant: 'acme', now: c.iat, jti: c.jti },
      );
      const config = { ...loadConfig(raiObject()), keyId: v.kid, key: vectorKeyring().get(v.kid).key };
      assert.equal(mintChecked(config, claims, Buffer.from(v.salt, 'hex')), v.token);
    });
  }

  /** @type {[Record<string, unknown>, string, string][]} */
  const BAD = [
    [{ budgetTokens: 0 }, 'budgetTokens', 'from 1 to'],
    [{ budgetTokens: MAX + 1 }, 'budgetTokens', 'from 1 to'],
    [{ budgetTokens: '100' }, 'budgetTokens', 'integer'],
    [{ budgetTokens: true }, 'budgetTokens', 'integer'],
    [{ budgetTokens: 10n }, 'budgetTokens', 'got 10'],
    [{ budgetCost: 1.5 }, 'budgetCost', 'integer'],
    [{ budgetCost: -1 }, 'budgetCost', 'from 1 to'],
    [{ userQuotas: [{ window: 'day', calls: 5 }] }, 'userQuotas', 'needs userId'],
    [{ userId: 'u', userQuotas: [] }, 'userQuotas', '1 to 3'],
    [{ userId: 'u', userQuotas: { window: 'day', calls: 5 } }, 'userQuotas', 'list of quotas'],
    [{ userId: 'u', userQuotas: 'day' }, 'userQuotas', 'list of quotas'],
    [{ userId: 'u', userQuotas: [['day', 5]] }, 'userQuotas', 'entry 0: must be an object'],
    [{ userId: 'u', userQuotas: [{ window: 'week', calls: 5 }] }, 'userQuotas', 'entry 0: window'],
    [{ userId: 'u', userQuotas: [{ window: 'Day', calls: 5 }] }, 'userQuotas', 'entry 0: window'],
    [{ userId: 'u', userQuotas: [{ calls: 5 }] }, 'userQuotas', 'entry 0: window'],
    [{ userId: 'u', userQuotas: [{ window: 'day' }] }, 'userQuotas', 'at least one of'],
    [{ userId: 'u', userQuotas: [{ window: 'day', calls: null }] }, 'userQuotas', 'at least one of'],
    [{ userId: 'u', userQuotas: [{ window: 'day', tok: 5 }] }, 'userQuotas', 'unknown key "tok"'],
    [{ userId: 'u', userQuotas: [{ window: 'day', calls: 0 }] }, 'userQuotas', 'entry 0: calls'],
    [{ userId: 'u', userQuotas: [{ window: 'day', tokens: MAX + 1 }] }, 'userQuotas', 'entry 0: tokens'],
    [{ userId: 'u', userQuotas: [{ window: 'day', cost: '5' }] }, 'userQuotas', 'entry 0: cost'],
    [
      {
        userId: 'u',
        userQuotas: [
          { window: 'day', calls: 5 },
          { window: 'day', tokens: 5 },
        ],
      },
      'userQuotas',
      'entry 1: window "day" appears twice',
    ],
    [
      { userId: 'u', userQuotas: ['day', 'month', 'all', 'day'].map((window) => ({ window, calls: 1 })) },
      'userQuotas',
      '1 to 3',
    ],
  ];
  for (const [options, param, says] of BAD) {
    it(`refuses ${String(Object.values(options).at(-1)).slice(0, 50)} → ${param}: ${says}`, () => {
      assert.throws(
        () => generator.createToken({ apiKey: 'test-key-123', ...options }),
        (err) => {
          assert.equal(/** @type {any} */ (err).code, 'ERR_INVALID_ARGUMENT');
          assert.equal(/** @type {any} */ (err).param, param);
          assert.ok(/** @type {Error} */ (err).message.includes(says), /** @type {Error} */ (err).message);
          return true;
        },
      );
    });
  }
});

describe('bud and uq claim checks name the member', () => {
  const base = { jti: 'cd'.repeat(16), tid: 'acme', iat: 10, exp: 20, prv: 'openai', key: 'k' };
  for (const [extra, field] of /** @type {[Record<string, unknown>, string][]} */ ([
    [{ bud: {} }, 'bud'],
    [{ bud: { tok: 1, calls: 1 } }, 'bud.calls'],
    [{ bud: { cost: 0 } }, 'bud.cost'],
    [{ bud: [1] }, 'bud'],
    [{ uq: [{ w: 'day', calls: 1 }] }, 'uq'],
    [
      {
        uid: 'u',
        uq: [
          { w: 'day', calls: 1 },
          { w: 'day', calls: 1 },
        ],
      },
      'uq[1].w',
    ],
    [{ uid: 'u', uq: [{ w: 'day' }] }, 'uq[0]'],
    [{ uid: 'u', uq: [{ w: 'day', calls: 1, tokens: 1 }] }, 'uq[0].tokens'],
    [{ uid: 'u', uq: [] }, 'uq'],
    [{ uid: 'u', uq: [{ w: null, calls: 1 }] }, 'uq[0].w'],
  ])) {
    it(`${JSON.stringify(extra)} → ${field}`, () => {
      assert.throws(() => checkClaims({ ...base, ...extra }), { field });
    });
  }

  it('rebuilds bud and quotas in canonical member order', () => {
    const out = checkClaims({ ...base, uid: 'u', bud: { cost: 5, tok: 7 }, uq: [{ cost: 3, w: 'all' }] });
    assert.equal(JSON.stringify(out.bud), '{"tok":7,"cost":5}');
    assert.equal(JSON.stringify(out.uq), '[{"w":"all","cost":3}]');
  });
});
