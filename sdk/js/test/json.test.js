// The strict JSON parser: what JSON.parse forgives and docs/token-format.md §5/§7 forbids.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { JsonSyntaxError, NonIntegerNumber, parseStrictJson } from '../src/json.js';

describe('parseStrictJson', () => {
  it('agrees with JSON.parse on ordinary documents', () => {
    const docs = [
      '{}',
      '[]',
      ' {"a" : [1, 2, {"b": null}], "c": true, "d": false } ',
      '"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\"\\\\"',
      '"é漢字😀"',
      '0',
      '9007199254740991',
      '{"nested": {"deeper": {"x": ["y"]}}}',
    ];
    for (const doc of docs) {
      assert.deepEqual(JSON.parse(JSON.stringify(parseStrictJson(doc))), JSON.parse(doc), doc);
    }
  });

  it('refuses duplicate members at any depth, unlike JSON.parse', () => {
    assert.deepEqual(JSON.parse('{"max":5,"max":1000}'), { max: 1000 });
    assert.throws(() => parseStrictJson('{"max":5,"max":1000}'), JsonSyntaxError);
    assert.throws(() => parseStrictJson('{"ext":{"rep_m":"a","rep_m":"b"}}'), JsonSyntaxError);
    assert.throws(() => parseStrictJson('[{"a":1,"a":1}]'), JsonSyntaxError);
    // The same name spelt with an escape is the same member.
    assert.throws(() => parseStrictJson('{"max":5,"m\\u0061x":6}'), JsonSyntaxError);
  });

  it('keeps members named like Object.prototype properties as plain data', () => {
    const obj = /** @type {Record<string, unknown>} */ (parseStrictJson('{"__proto__":1,"constructor":2}'));
    assert.equal(Object.getPrototypeOf(obj), null);
    assert.deepEqual(Object.keys(obj), ['__proto__', 'constructor']);
    assert.throws(() => parseStrictJson('{"__proto__":1,"__proto__":2}'), JsonSyntaxError);
  });

  it('marks every number that is not a plain non-negative integer', () => {
    for (const text of ['1.0', '1e3', '1E+3', '-1', '-0', '0.5', '1790003600.0']) {
      const v = parseStrictJson(text);
      assert.ok(v instanceof NonIntegerNumber, text);
      assert.equal(v.text, text);
    }
    assert.equal(parseStrictJson('1790003600'), 1790003600);
    // Beyond 2^53 the double is inexact; callers see an unsafe integer and refuse it.
    assert.equal(Number.isSafeInteger(parseStrictJson('9007199254740993')), false);
  });

  it('refuses what RFC 8259 does not allow', () => {
    const bad = [
      '',
      ' ',
      '{',
      '{"a":1,}',
      '[1,]',
      '{"a" 1}',
      "{'a':1}",
      '{a:1}',
      '01',
      '+1',
      '1.',
      '.5',
      '-',
      'NaN',
      'Infinity',
      'tru',
      'nul',
      '"unterminated',
      '"raw\u0001control"',
      '"raw\nnewline"',
      '"bad \\x escape"',
      '"\\u12"',
      '"\\u12G4"',
      '{} x',
      '{}{}',
      '\ufeff{}',
      '{"a":1}\u00a0',
    ];
    for (const doc of bad) assert.throws(() => parseStrictJson(doc), JsonSyntaxError, JSON.stringify(doc));
  });

  it('refuses unpaired surrogates, escaped or raw, since they have no UTF-8 form', () => {
    for (const doc of [
      '"\\ud800"',
      '"\\udc00"',
      '"\\ud800\\u0041"',
      '"\\ud800x"',
      '"\ud800"',
      '"\udc00\ud800"',
    ]) {
      assert.throws(() => parseStrictJson(doc), JsonSyntaxError, doc);
    }
    assert.equal(parseStrictJson('"\\ud83d\\ude00"'), '😀');
  });

  it('caps nesting depth instead of exhausting the stack', () => {
    assert.throws(() => parseStrictJson('['.repeat(100000) + ']'.repeat(100000)), JsonSyntaxError);
    assert.doesNotThrow(() => parseStrictJson('['.repeat(16) + ']'.repeat(16)));
    assert.throws(() => parseStrictJson('['.repeat(17) + ']'.repeat(17)), JsonSyntaxError);
  });

  it('accepts JSON whitespace around tokens but nothing else', () => {
    assert.deepEqual({ .../** @type {object} */ (parseStrictJson('\t\r\n {"a"\n:\r1}\n')) }, { a: 1 });
    assert.throws(() => parseStrictJson('{"a":\u00201\u000b}'), JsonSyntaxError);
  });

  it('refuses input that is not a string', () => {
    assert.throws(() => parseStrictJson(/** @type {any} */ (Buffer.from('{}'))), JsonSyntaxError);
  });
});
