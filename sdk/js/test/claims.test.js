// §5 of docs/token-format.md member by member: what checkClaims accepts, refuses, and how it serialises.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CLAIM_ORDER, ClaimError, canonicalJson, checkClaims } from '../src/claims.js';
import { NonIntegerNumber } from '../src/json.js';

const BASE = Object.freeze({
  jti: '0123456789abcdef0123456789abcdef',
  tid: 'acme',
  iat: 1790000000,
  exp: 1790003600,
  prv: 'openai',
  key: 'test-key-123',
});

/** @param {Record<string, unknown>} over */
const withClaims = (over) => {
  /** @type {Record<string, unknown>} */
  const c = { ...BASE, ...over };
  for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
  return c;
};

/** Each member with values that must pass and values that must fail. */
const CASES = {
  jti: {
    ok: ['ffffffffffffffffffffffffffffffff'],
    bad: ['0123456789ABCDEF0123456789ABCDEF', 'abc', 1, null],
  },
  tid: { ok: ['a', 'A.b_c-9', 'x'.repeat(64)], bad: ['', 'x'.repeat(65), 'a b', 'ä', 5] },
  iat: { ok: [0, 1790000000], bad: [-1, 1.5, '1790000000', new NonIntegerNumber('1790000000.0'), -0, true] },
  exp: {
    ok: [1790000001, Number.MAX_SAFE_INTEGER],
    bad: [1790000000, 2 ** 53, new NonIntegerNumber('1e10')],
  },
  prv: { ok: ['openai', 'a', 'my_prov-2', 'x'.repeat(32)], bad: ['OpenAI', '', 'x'.repeat(33), 'a.b', 7] },
  key: {
    ok: ['k', 'with space', '~!@#$%^&*()', 'x'.repeat(1024)],
    bad: ['', 'x'.repeat(1025), 'tab\there', 'é', 1],
  },
  url: {
    ok: [
      'https://llm-proxy.example.com/v1',
      'https://10.0.0.1:8443',
      'https://[2001:db8::1]/v1',
      'https://[::1]:65535',
      'https://under_score.example.com/a%20b/',
      "https://h/v1;x=1/!$&'()*+,=:@~",
      // §5 does not forbid a query; the relay only uses URLs its config lists anyway.
      'https://example.com/v1?api-version=2024-06-01',
      'https://example.com?x=%20',
    ],
    bad: [
      'http://example.com/v1',
      'https://',
      'https:///path',
      'https://user:pw@example.com',
      'https://example.com/#f',
      'https://exa mple.com',
      'https://a.com\\b',
      'https://a.com/x\\y',
      'https://例え.jp',
      'ftp://example.com',
      `https://example.com/${'x'.repeat(2040)}`,
      'https://a..b',
      'https://.a',
      'https://h:0',
      'https://h:65536',
      'https://h:',
      'https://h:8a',
      'https://[::1',
      'https://[::1]x',
      'https://[fe80::1%25eth0]',
      'https://[1.2.3.4]',
      'https://h/%zz',
      'https://h/%2',
      'https://h?x=%zz',
      'https://h?x@y#',
      'https://h/a b',
      'https://h/a"b',
      'https://@h',
      `https://${'a'.repeat(64)}.com`,
    ],
  },
  max: { ok: [1, 100, Number.MAX_SAFE_INTEGER], bad: [0, -1, 2 ** 53, 1.5, '100', null] },
  ext: {
    ok: [{ rep_m: 'gpt-4o' }, { rep_m: 'x'.repeat(256) }, { rep_m: '😀'.repeat(256) }],
    bad: [
      { rep_m: '' },
      { rep_m: 'x'.repeat(257) },
      { other: 1 },
      { rep_m: 'a', other: 1 },
      {},
      { rep_m: 'a\n' },
      [],
      'gpt',
      null,
    ],
  },
  rate: {
    ok: [
      { n: 10, s: 60 },
      { s: 31536000, n: 1 },
    ],
    bad: [{ n: 10 }, { n: 0, s: 60 }, { n: 1, s: 31536001 }, { n: 1, s: 1, w: 1 }, [10, 60], null],
  },
  conc: { ok: [1, 10000], bad: [0, 10001, 2.5] },
  // §5.1.13-16: one format per entry (conformance.json holds the full case list).
  models: {
    ok: [['gpt-4o'], Array(64).fill('m'), ['x'.repeat(256)], ['modèle 😀']],
    bad: [[], Array(65).fill('m'), 'gpt-4o', [1], [null], ['\ud800'], [''], ['x'.repeat(257)], ['a\u0085']],
  },
  paths: {
    ok: [['/chat/completions', '/v1/messages'], ['/'], ['/x:y']],
    bad: [[], '/chat/completions', [1], ['chat/completions'], ['/x?y'], ['/a b']],
  },
  origins: {
    ok: [['https://app.example.com', 'http://localhost:5173', 'http://[::1]:8080']],
    bad: [
      [],
      'https://app.example.com',
      [{}],
      ['https://app.example.com/'],
      ['https://App.example.com'],
      ['https://a.example:443'],
      ['*'],
    ],
  },
  ips: {
    ok: [['203.0.113.0/24', '2001:db8::/32', '0.0.0.0/0', '::/0', '10.1.2.3/32', '::102:304/128']],
    bad: [
      ['::ffff:1.2.3.4/128'],
      ['203.0.113.7/24'],
      ['2001:DB8::/32'],
      [],
      ['10.0.0.300/8'],
      ['10.0.0.0'],
      ['10.0.0.0/33'],
      ['::/129'],
      ['10.0.0.0/08'],
      ['fe80::1%eth0/64'],
      ['x/8'],
    ],
  },
  mtok: { ok: [1, 512], bad: [0, -5, 1.5] },
  mtok_mode: { ok: [], bad: ['ignore', '', 'CLAMP', 'clamp'] },
  uid: {
    // §5.1.18: printable ASCII only.
    ok: ['user-42', 'u "\\/~', 'x'.repeat(128)],
    bad: ['', 'x'.repeat(129), '\ud800', 42, 'a\nb', 'é', '😀'],
  },
};

describe('checkClaims member rules', () => {
  for (const [member, { ok, bad }] of Object.entries(CASES)) {
    // mtok_mode is only valid next to mtok; its own test below covers the accepted values.
    if (ok.length > 0) {
      it(`${member}: accepts valid values`, () => {
        for (const v of ok)
          assert.doesNotThrow(() => checkClaims(withClaims({ [member]: v })), JSON.stringify(v));
      });
    }
    it(`${member}: refuses invalid values, naming the member`, () => {
      for (const v of bad) {
        assert.throws(
          () => checkClaims(withClaims({ [member]: v })),
          (err) => err instanceof ClaimError && err.field.split(/[.[]/)[0] === member,
          `${member} = ${JSON.stringify(v)}`,
        );
      }
    });
  }

  it('requires jti, tid, iat, exp and prv', () => {
    for (const name of ['jti', 'tid', 'iat', 'exp', 'prv']) {
      assert.throws(() => checkClaims(withClaims({ [name]: undefined })), { field: name });
    }
  });

  it('requires exactly one of key and kref', () => {
    assert.doesNotThrow(() => checkClaims(withClaims({ key: undefined, kref: 'openai-main' })));
    assert.throws(() => checkClaims(withClaims({ kref: 'openai-main' })), ClaimError);
    assert.throws(() => checkClaims(withClaims({ key: undefined })), ClaimError);
    assert.throws(() => checkClaims(withClaims({ key: undefined, kref: '' })), { field: 'kref' });
    // §5.1.9: the config.json naming rule.
    assert.throws(() => checkClaims(withClaims({ key: undefined, kref: 'any name, even with spaces' })), {
      field: 'kref',
    });
  });

  it('accepts mtok_mode only next to mtok', () => {
    for (const mode of ['clamp', 'reject']) {
      assert.doesNotThrow(() => checkClaims(withClaims({ mtok: 5, mtok_mode: mode })));
    }
  });

  it('refuses unknown members, so an old verifier never ignores a newer limit', () => {
    assert.throws(() => checkClaims(withClaims({ future_limit: 1 })), { field: 'future_limit' });
  });

  it('checks the tenant only when asked', () => {
    assert.doesNotThrow(() => checkClaims(BASE, 'acme'));
    assert.throws(() => checkClaims(BASE, 'globex'), { field: 'tid' });
  });

  it('refuses non-objects', () => {
    for (const v of [null, [], 'x', 1, new NonIntegerNumber('1.5')])
      assert.throws(() => checkClaims(v), ClaimError);
  });
});

describe('canonicalJson', () => {
  it('writes members in §5 table order whatever the input order', () => {
    const reversed = Object.fromEntries(
      Object.entries(
        withClaims({ max: 5, mtok: 9, uid: 'u', ext: { rep_m: 'm' }, rate: { s: 60, n: 10 }, models: ['a'] }),
      ).reverse(),
    );
    const json = canonicalJson(checkClaims(reversed));
    const order = Object.keys(JSON.parse(json));
    assert.deepEqual(
      order,
      CLAIM_ORDER.filter((k) => order.includes(k)),
    );
    assert.ok(json.includes('"rate":{"n":10,"s":60}'));
  });

  it('escapes exactly as §5 says', () => {
    // canonicalJson serialises whatever it is given; checkClaims keeps control characters out of valid
    // claims (§5.1.3), so only the escaping itself is under test here.
    const uid = 'q"b\\\b\f\n\r\t\u0000\u0001\u001f\u007f/é\u2028😀';
    const json = canonicalJson({ ...BASE, uid });
    const expected = '"uid":"q\\"b\\\\\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\u007f/é\u2028😀"';
    assert.ok(json.endsWith(`${expected}}`), json);
    assert.throws(() => checkClaims(withClaims({ uid })), ClaimError);
  });

  it('is compact', () => {
    assert.equal(
      canonicalJson(checkClaims(BASE)),
      '{"jti":"0123456789abcdef0123456789abcdef","tid":"acme","iat":1790000000,"exp":1790003600,' +
        '"prv":"openai","key":"test-key-123"}',
    );
  });
});
