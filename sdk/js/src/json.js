/**
 * A strict RFC 8259 JSON parser for token claims and `.rai` files.
 *
 * `JSON.parse` is too forgiving for a security format: it keeps the last of two duplicate members
 * (so `{"max":5,"max":1000}` would silently lift a limit) and it turns `1.0` and `1e3` into integers,
 * while docs/token-format.md §5 requires verifiers to reject both. This parser owns exactly that gap;
 * what the values mean is left to the callers (claims.js, config.js).
 *
 * @module
 */

/**
 * Stands for a number whose text is not a plain non-negative decimal integer (`-1`, `-0`, `1.0`, `1e3`).
 * Every number in our formats is such an integer, so callers treat this as a wrong type; it is kept as a
 * value rather than an immediate error so that the caller can name the member it found it in.
 */
export class NonIntegerNumber {
  /** @param {string} text the number exactly as written */
  constructor(text) {
    this.text = text;
  }
}

/** Thrown for any syntax error; callers turn it into their own error type. */
export class JsonSyntaxError extends Error {}

// docs/token-format.md §7.1 J6, the same limit as the relay and the Python SDK: claims nest two levels deep
// and `.rai` files four; the cap stops a hostile document from exhausting the call stack (each level is
// one recursive call).
const MAX_DEPTH = 16;

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const INTEGER = /^(?:0|[1-9][0-9]*)$/;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;

/**
 * Parses `text` as one JSON value with surrounding whitespace only.
 *
 * Objects come back as plain objects with a null prototype (so a member named `__proto__` is just a
 * member), duplicate member names are an error, non-integer numbers come back as {@link NonIntegerNumber},
 * and unpaired surrogate escapes are an error because they cannot be written as UTF-8.
 *
 * @param {string} text
 * @returns {unknown}
 * @throws {JsonSyntaxError}
 */
export function parseStrictJson(text) {
  let pos = 0;

  const fail = (/** @type {string} */ what) => {
    throw new JsonSyntaxError(`${what} at offset ${pos}`);
  };
  const skipWs = () => {
    while (pos < text.length && WS.has(text.charCodeAt(pos))) pos += 1;
  };

  const parseString = () => {
    // The caller has checked the opening quote.
    pos += 1;
    let out = '';
    for (;;) {
      if (pos >= text.length) fail('unterminated string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        pos += 1;
        return out;
      }
      if (c < 0x20) fail('raw control character in string');
      if (c === 0x5c) {
        const e = text[pos + 1];
        if (e === 'u') {
          const unit = readHex4(pos + 2);
          pos += 6;
          if (unit >= 0xd800 && unit <= 0xdbff) {
            if (text[pos] !== '\\' || text[pos + 1] !== 'u') fail('unpaired surrogate');
            const low = readHex4(pos + 2);
            if (low < 0xdc00 || low > 0xdfff) fail('unpaired surrogate');
            pos += 6;
            out += String.fromCharCode(unit, low);
          } else if (unit >= 0xdc00 && unit <= 0xdfff) {
            fail('unpaired surrogate');
          } else {
            out += String.fromCharCode(unit);
          }
        } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
          out += ESCAPES[/** @type {keyof typeof ESCAPES} */ (e)];
          pos += 2;
        } else {
          fail('bad escape');
        }
      } else {
        // Input comes from a fatal UTF-8 decoder or a JS string; a lone surrogate can only arrive here
        // from a JS string and would not survive a round trip to UTF-8.
        if (c >= 0xd800 && c <= 0xdfff) {
          const next = text.charCodeAt(pos + 1);
          if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) fail('unpaired surrogate');
          out += text.slice(pos, pos + 2);
          pos += 2;
          continue;
        }
        out += text[pos];
        pos += 1;
      }
    }
  };

  const readHex4 = (/** @type {number} */ at) => {
    const hex = text.slice(at, at + 4);
    if (!HEX4.test(hex)) fail('bad \\u escape');
    return Number.parseInt(hex, 16);
  };

  /** @returns {unknown} */
  const parseValue = (/** @type {number} */ depth) => {
    skipWs();
    if (pos >= text.length) fail('unexpected end');
    const c = text[pos];
    if (c === '{') return parseObject(depth + 1);
    if (c === '[') return parseArray(depth + 1);
    if (c === '"') return parseString();
    for (const [word, value] of /** @type {const} */ ([
      ['true', true],
      ['false', false],
      ['null', null],
    ])) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m === null || m[0].length === 0) fail('unexpected character');
    const lexeme = /** @type {RegExpExecArray} */ (m)[0];
    pos += lexeme.length;
    return INTEGER.test(lexeme) ? Number(lexeme) : new NonIntegerNumber(lexeme);
  };

  const parseObject = (/** @type {number} */ depth) => {
    if (depth > MAX_DEPTH) fail('nested too deeply');
    pos += 1;
    /** @type {Record<string, unknown>} */
    const obj = Object.create(null);
    skipWs();
    if (text[pos] === '}') {
      pos += 1;
      return obj;
    }
    for (;;) {
      skipWs();
      if (text[pos] !== '"') fail('expected member name');
      const name = parseString();
      if (Object.hasOwn(obj, name)) fail('duplicate member');
      skipWs();
      if (text[pos] !== ':') fail('expected colon');
      pos += 1;
      obj[name] = parseValue(depth);
      skipWs();
      if (text[pos] === ',') {
        pos += 1;
      } else if (text[pos] === '}') {
        pos += 1;
        return obj;
      } else {
        fail('expected comma or closing brace');
      }
    }
  };

  const parseArray = (/** @type {number} */ depth) => {
    if (depth > MAX_DEPTH) fail('nested too deeply');
    pos += 1;
    /** @type {unknown[]} */
    const arr = [];
    skipWs();
    if (text[pos] === ']') {
      pos += 1;
      return arr;
    }
    for (;;) {
      arr.push(parseValue(depth));
      skipWs();
      if (text[pos] === ',') {
        pos += 1;
      } else if (text[pos] === ']') {
        pos += 1;
        return arr;
      } else {
        fail('expected comma or closing bracket');
      }
    }
  };

  if (typeof text !== 'string') throw new JsonSyntaxError('input is not a string');
  const value = parseValue(0);
  skipWs();
  if (pos !== text.length) fail('trailing data');
  return value;
}
