// The public surface against sdk/api.json, the manifest the Python SDK's tests check too: every
// operation (camelCase of the manifest's snake_case), its positional arguments, its options and their
// defaults, the token options, constants, exports, error classes and codes, the package identity. A
// name, default or code that differs from the Python SDK fails here or there.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import * as sdk from 'relayapi-tokens';

import { TOKEN_OPTIONS } from '../src/options.js';
import { checkRevokeBefore } from '../src/client.js';
import { raiObject } from './helpers.js';

const manifest = JSON.parse(readFileSync(new URL('../../api.json', import.meta.url), 'utf8'));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const dts = readFileSync(new URL('../types/index.d.ts', import.meta.url), 'utf8');

/** @param {string} name snake_case */
const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

/**
 * Splits `text` at top-level commas (outside brackets, braces, parentheses and quotes).
 *
 * @param {string} text
 * @returns {string[]}
 */
function splitTop(text) {
  const parts = [];
  let depth = 0;
  let quote = '';
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quote) {
      if (c === quote && text[i - 1] !== '\\') quote = '';
    } else if (c === "'" || c === '"' || c === '`') quote = c;
    else if ('([{'.includes(c)) depth += 1;
    else if (')]}'.includes(c)) depth -= 1;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.replace(/\/\*[\s\S]*?\*\//g, '').trim()).filter((p) => p !== '');
}

/**
 * The parameter list of a function as written: `[{ name, default? }]` for plain parameters and
 * `{ pattern: [{ name, default? }], rest }` for an object pattern.
 *
 * @param {Function} fn
 */
function parameters(fn) {
  const text = fn.toString();
  // A class's source is the whole class: its parameters are the constructor's.
  const src = text.startsWith('class') ? text.slice(text.indexOf('constructor(')) : text;
  const open = src.indexOf('(');
  let depth = 0;
  let close = open;
  for (; close < src.length; close += 1) {
    if (src[close] === '(') depth += 1;
    if (src[close] === ')' && --depth === 0) break;
  }
  return splitTop(src.slice(open + 1, close)).map((p) => {
    if (p.startsWith('{')) {
      let end = 0;
      for (let depth = 0; end < p.length; end += 1) {
        if (p[end] === '{') depth += 1;
        if (p[end] === '}' && --depth === 0) break;
      }
      const body = p.slice(1, end);
      const entries = splitTop(body);
      return {
        pattern: entries.filter((e) => !e.startsWith('...')).map((e) => entry(e.replace(/:\s*\w+/, ''))),
        rest: entries.some((e) => e.startsWith('...')),
      };
    }
    return entry(p);
  });
}

/** @param {string} text `name` or `name = default` */
function entry(text) {
  const [name, def] = text.split(/\s*=\s*/, 2);
  return def === undefined ? { name } : { name, default: literal(def) };
}

/** @param {string} text a default value as written */
function literal(text) {
  if (/^'.*'$/.test(text)) return text.slice(1, -1);
  if (Object.hasOwn(sdk, text)) return /** @type {any} */ (sdk)[text];
  if (text === 'globalThis.fetch') return globalThis.fetch; // the JS-only `fetch` option
  return JSON.parse(text);
}

/** @param {{ name: string, default?: unknown }[]} params */
const expected = (params) =>
  params.map((p) =>
    Object.hasOwn(p, 'default') ? { name: camel(p.name), default: p.default } : { name: camel(p.name) },
  );

/** JS-only options that sdk/api.json names under language_only.js. */
const JS_ONLY_OPTIONS = new Set(['signal', 'fetch']);

describe('sdk/api.json: classes and operations', () => {
  for (const [className, spec] of Object.entries(manifest.classes)) {
    const cls = /** @type {any} */ (sdk)[className];
    const ops = { constructor: spec.constructor, ...spec.methods };
    for (const [op, opSpec] of Object.entries(ops)) {
      const name = op === 'constructor' ? op : camel(op);
      it(`${className}.${name} has the manifest's arguments, options and defaults`, () => {
        const fn = op === 'constructor' ? cls : cls.prototype[name];
        assert.equal(typeof fn, 'function', `${className}.${name} is missing`);
        const params = parameters(fn);
        const args = params.slice(0, opSpec.args.length);
        assert.deepEqual(args, expected(opSpec.args));
        const rest = params.slice(opSpec.args.length);
        if (opSpec.token_options) {
          // One options object that createToken validates; its extra members are checked below.
          assert.deepEqual(rest, [{ name: 'options' }]);
          return;
        }
        if (opSpec.options.length === 0 && !opSpec.http) {
          assert.deepEqual(rest, []);
          return;
        }
        const pattern = rest[0] && 'pattern' in rest[0] ? rest[0] : { pattern: [], rest: false };
        const own = pattern.pattern.filter((p) => !JS_ONLY_OPTIONS.has(p.name));
        assert.deepEqual(own, expected(opSpec.options));
        assert.equal(pattern.rest, Boolean(opSpec.extra_body) || op === 'constructor');
      });
    }
    it(`${className} has no public method or property outside the manifest`, () => {
      const listed = new Set(['constructor']);
      for (let c = className; c; c = manifest.classes[c].extends) {
        for (const m of Object.keys(manifest.classes[c].methods)) listed.add(camel(m));
        for (const p of manifest.classes[c].properties) listed.add(camel(p));
      }
      for (const key of Object.keys(manifest.deprecated.js)) {
        const [c, m] = key.split('.');
        if (c === className) listed.add(m);
      }
      const actual = new Set();
      for (let proto = cls.prototype; proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
        for (const n of Object.getOwnPropertyNames(proto)) actual.add(n);
      }
      assert.deepEqual([...actual].sort(), [...listed].sort());
      for (const p of spec.properties) {
        assert.equal(typeof Object.getOwnPropertyDescriptor(cls.prototype, camel(p))?.get, 'function');
      }
    });
    it(`${className}'s declarations name every operation`, () => {
      for (const m of Object.keys(spec.methods)) assert.match(dts, new RegExp(`\\b${camel(m)}\\(`));
    });
  }

  it('extends the same classes', () => {
    for (const [name, spec] of Object.entries(manifest.classes)) {
      if (spec.extends) {
        assert.ok(/** @type {any} */ (sdk)[name].prototype instanceof /** @type {any} */ (sdk)[spec.extends]);
      }
    }
  });

  it('generateUrl takes the endpoint option with its default', () => {
    const client = new sdk.RelayAPIClient(raiObject());
    const [{ name, default: def }] = manifest.classes.RelayAPIClient.methods.generate_url.options;
    assert.equal(name, 'endpoint');
    const base = client.generateUrl({ apiKey: 'test-key-123' });
    assert.match(base, /\/relayapi\/rt1\.[A-Za-z0-9_-]+$/);
    const token = base.slice(base.lastIndexOf('/') + 1);
    assert.equal(client.urlForToken(token, def), base);
    assert.match(client.generateUrl({ apiKey: 'k', endpoint: 'embeddings' }), /\/embeddings$/);
  });
});

describe('sdk/api.json: token options, constants, exports, errors, package', () => {
  it('token options are the manifest list, in order, with its defaults', () => {
    assert.deepEqual(
      TOKEN_OPTIONS,
      manifest.token_options.map((/** @type {{ name: string }} */ o) => camel(o.name)),
    );
    const defaults = Object.fromEntries(
      manifest.token_options
        .filter((/** @type {any} */ o) => o.default !== null)
        .map((/** @type {any} */ o) => [o.name, o.default]),
    );
    assert.deepEqual(defaults, {
      max_calls: sdk.DEFAULT_MAX_CALLS,
      expire_seconds: sdk.DEFAULT_EXPIRE_SECONDS,
      provider: sdk.DEFAULT_PROVIDER,
    });
    const client = new sdk.RelayAPIClient(raiObject());
    const claims = client.decodeToken(client.createToken({ apiKey: 'test-key-123' }));
    assert.deepEqual(
      [claims.max, /** @type {number} */ (claims.exp) - /** @type {number} */ (claims.iat), claims.prv],
      [defaults.max_calls, defaults.expire_seconds, defaults.provider],
    );
    assert.throws(() => client.createToken(/** @type {any} */ ({ apiKey: 'k', max_calls: 5 })), {
      code: 'ERR_INVALID_ARGUMENT',
      param: 'max_calls',
    });
  });

  it('constants have the manifest values', () => {
    for (const [name, value] of Object.entries(manifest.constants)) {
      assert.deepEqual(/** @type {any} */ (sdk)[name], value, name);
    }
  });

  it('exports exactly the manifest names', () => {
    const names = [
      ...Object.keys(manifest.constants),
      ...Object.keys(manifest.classes),
      ...manifest.errors.map((/** @type {{ name: string }} */ e) => e.name),
    ];
    assert.deepEqual(Object.keys(sdk).sort(), names.sort());
  });

  for (const e of manifest.errors) {
    it(`${e.name} has code ${e.code} and extends ${e.extends ?? 'Error'}`, () => {
      const cls = /** @type {any} */ (sdk)[e.name];
      assert.equal(cls.code, e.code);
      assert.equal(Object.getPrototypeOf(cls), e.extends ? /** @type {any} */ (sdk)[e.extends] : Error);
    });
  }

  it('APIError has the manifest fields', () => {
    const [entry] = manifest.errors.filter((/** @type {{ name: string }} */ e) => e.name === 'APIError');
    const err = new sdk.APIError(429, {
      code: 'rate_limited',
      message: 'slow down',
      headers: new Headers({ 'x-should-retry': 'false' }),
    });
    for (const field of entry.fields) assert.ok(camel(field) in err, field);
    assert.equal(err.code, 'ERR_API');
    assert.equal(err.errorCode, 'rate_limited');
    assert.equal(err.shouldRetry, false);
  });

  it('package name and version are the manifest identity', () => {
    assert.equal(pkg.name, manifest.packages.js.name);
    assert.equal(pkg.version, manifest.packages.version);
    assert.notEqual(pkg.name, 'relayapi-sdk'); // the name of the 1.0.0 package with the old token format
  });
});

describe('revokeBefore refuses future times (issue 9, finding 9)', () => {
  const NOW = 1_790_000_000;
  const skew = manifest.constants.MAX_CLOCK_SKEW_SECONDS;

  it('accepts UTC seconds up to now + clock skew', () => {
    for (const ts of [0, NOW - 86_400, NOW, NOW + skew]) checkRevokeBefore(ts, NOW);
  });

  it('refuses later times, naming milliseconds when they look like Date.now()', () => {
    for (const [ts, ms] of /** @type {[number, boolean][]} */ ([
      [NOW + skew + 1, false],
      [NOW + 3600, false],
      [9_999_999_999, false],
      [NOW * 1000, true],
      [NOW * 1000 + 999, true],
    ])) {
      assert.throws(
        () => checkRevokeBefore(ts, NOW),
        (/** @type {any} */ err) => {
          assert.equal(err.code, 'ERR_INVALID_ARGUMENT');
          assert.equal(err.param, 'ts');
          assert.match(err.message, /future/);
          assert.equal(/milliseconds/.test(err.message), ms, String(ts));
          return true;
        },
      );
    }
  });

  it('refuses Date.now() before sending anything', async () => {
    let sent = 0;
    const client = new sdk.RelayAPIClient(raiObject(), {
      fetch: async () => {
        sent += 1;
        return new Response('{}');
      },
    });
    await assert.rejects(client.revokeBefore(Date.now()), { param: 'ts', message: /milliseconds/ });
    assert.equal(sent, 0);
  });
});
