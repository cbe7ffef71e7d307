// Event stream parsing, re-run with the input split at every byte offset (chunk boundaries inside
// UTF-8 sequences and between CR and LF must not change the events).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseSse } from '../src/sse.js';

/** @param {Uint8Array[]} chunks */
async function collect(chunks) {
  async function* gen() {
    yield* chunks;
  }
  const out = [];
  for await (const ev of parseSse(gen())) out.push(ev);
  return out;
}

/** Every way of cutting `bytes` into two chunks, plus one byte per chunk. */
function splits(/** @type {Buffer} */ bytes) {
  const out = [[bytes]];
  for (let i = 1; i < bytes.length; i += 1) out.push([bytes.subarray(0, i), bytes.subarray(i)]);
  out.push([...bytes].map((b) => Uint8Array.of(b)));
  return out;
}

const STREAM =
  '\ufeff: comment\n' +
  'data: {"a":1}\n\n' +
  'event: delta\r\nid: 7\r\ndata: line one\r\ndata:line two\r\n\r\n' +
  'data: é漢😀\r\r' +
  'retry: 100\nunknown: x\ndata\n\n' +
  'data: [DONE]\n\n' +
  'data: unterminated';

const EXPECTED = [
  { event: 'message', data: '{"a":1}', id: '' },
  { event: 'delta', data: 'line one\nline two', id: '7' },
  { event: 'message', data: 'é漢😀', id: '7' },
  { event: 'message', data: '', id: '7' },
  { event: 'message', data: '[DONE]', id: '7' },
];

describe('parseSse', () => {
  it('parses fields, comments, multi-line data and all three line endings', async () => {
    assert.deepEqual(await collect([Buffer.from(STREAM)]), EXPECTED);
  });

  it('gives the same events wherever the chunks are cut', async () => {
    for (const chunks of splits(Buffer.from(STREAM))) assert.deepEqual(await collect(chunks), EXPECTED);
  });

  it('treats a CR at the end of a chunk as a line end only once the next chunk shows no LF', async () => {
    const bytes = Buffer.from('data: x\r\n\r\n');
    for (const chunks of splits(bytes)) {
      assert.deepEqual(await collect(chunks), [{ event: 'message', data: 'x', id: '' }]);
    }
  });

  it('dispatches a final event ended by CR CR at the end of the stream', async () => {
    assert.deepEqual(await collect([Buffer.from('data: x\r\r')]), [{ event: 'message', data: 'x', id: '' }]);
  });

  it('drops an event that never got its blank line, and events without data', async () => {
    assert.deepEqual(await collect([Buffer.from('event: x\n\nid: 3\n\ndata: y\n')]), []);
  });
});
