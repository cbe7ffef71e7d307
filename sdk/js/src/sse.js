/**
 * Server-sent events parsing (WHATWG HTML "event stream interpretation") over a byte stream.
 *
 * Knows nothing about HTTP or about what the events mean: client.js hands in the response body and
 * decides what a `[DONE]` or an error payload is.
 *
 * @module
 */

/**
 * @typedef {object} SseEvent
 * @property {string} event the `event:` field, "message" when absent
 * @property {string} data `data:` lines joined with "\n"
 * @property {string} id last `id:` seen on the stream so far
 */

/**
 * Splits a stream of byte chunks into events. Chunk boundaries may fall anywhere, also inside a UTF-8
 * sequence or between the CR and LF of a line ending.
 *
 * @param {AsyncIterable<Uint8Array>} chunks
 * @returns {AsyncGenerator<SseEvent>}
 */
export async function* parseSse(chunks) {
  // Streaming mode keeps a partial UTF-8 sequence for the next chunk; the default (not ignoreBOM)
  // drops one leading BOM, as the event stream rules require.
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  /** @type {string[]} */
  let data = [];
  let event = '';
  let id = '';
  let sawData = false;

  const line = (/** @type {string} */ text) => {
    if (text === '') {
      // Blank line: dispatch, but only when the event carried data (per the spec).
      const out = sawData ? { event: event || 'message', data: data.join('\n'), id } : null;
      data = [];
      event = '';
      sawData = false;
      return out;
    }
    if (text.startsWith(':')) return null;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') {
      data.push(value);
      sawData = true;
    } else if (field === 'event') {
      event = value;
    } else if (field === 'id' && !value.includes('\0')) {
      id = value;
    }
    // `retry` and unknown fields are ignored: reconnection is the caller's business.
    return null;
  };

  for await (const chunk of chunks) {
    buffer += decoder.decode(chunk, { stream: true });
    let start = 0;
    for (;;) {
      const cr = buffer.indexOf('\r', start);
      const lf = buffer.indexOf('\n', start);
      let end;
      let next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of CRLF: wait for the next chunk to decide.
        if (cr === buffer.length - 1) break;
        end = cr;
        next = buffer[cr + 1] === '\n' ? cr + 2 : cr + 1;
      } else if (lf >= 0) {
        end = lf;
        next = lf + 1;
      } else {
        break;
      }
      const ev = line(buffer.slice(start, end));
      start = next;
      if (ev !== null) yield ev;
    }
    buffer = buffer.slice(start);
  }
  buffer += decoder.decode();
  // A final line ended by a lone CR is complete once the stream ends; an unterminated event is dropped,
  // as the spec says.
  if (buffer.endsWith('\r')) {
    const ev = line(buffer.slice(0, -1));
    if (ev !== null) yield ev;
  }
}
