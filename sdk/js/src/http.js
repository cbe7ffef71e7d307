/**
 * The SDK's HTTP leg on the built-in `fetch`: deadlines, relay error bodies and event streams.
 *
 * Maps every failure onto the SDK's error classes (APIError for relay answers, RelayConnectionError for
 * no answer, BadResponseError for answers it cannot read). What to send where is client.js's business.
 *
 * @module
 */

import { APIError, BadResponseError, RelayConnectionError } from './errors.js';
import { parseSse } from './sse.js';

/** Characters of a non-JSON error body kept in the error message. */
const ERROR_SNIPPET_CHARS = 200;

/**
 * One abort controller fed by the caller's signal and by a re-armable timer.
 *
 * The timeout bounds each wait, never the whole answer: until the response headers arrive, then each
 * read of the next body chunk (JSON and event streams alike). An answer is never cut as long as it keeps
 * arriving; the Python SDK's socket timeout means the same.
 */
class Deadline {
  /**
   * @param {number} timeoutMs
   * @param {AbortSignal | undefined} userSignal
   */
  constructor(timeoutMs, userSignal) {
    this.controller = new AbortController();
    this.timeoutMs = timeoutMs;
    this.timedOut = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.userSignal = userSignal;
    this.onUserAbort = () => this.controller.abort(userSignal?.reason);
    if (userSignal?.aborted) this.controller.abort(userSignal.reason);
    else userSignal?.addEventListener('abort', this.onUserAbort, { once: true });
  }

  get signal() {
    return this.controller.signal;
  }

  arm() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.timeoutMs);
  }

  done() {
    clearTimeout(this.timer);
    this.userSignal?.removeEventListener('abort', this.onUserAbort);
  }

  /**
   * Turns a failure of fetch or of a body read into the error the caller should see.
   *
   * @param {unknown} err
   * @param {string} what e.g. "POST http://127.0.0.1:8080/health"
   * @returns {unknown}
   */
  translate(err, what) {
    if (this.timedOut) {
      return new RelayConnectionError(`${what}: no answer within ${this.timeoutMs / 1000} s`, {
        cause: err,
      });
    }
    // The caller's own abort surfaces as the reason they gave, like any fetch.
    if (this.userSignal?.aborted) return this.userSignal.reason;
    if (err instanceof APIError || err instanceof BadResponseError) return err;
    const detail = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
    return new RelayConnectionError(`${what}: ${detail}`, { cause: err });
  }
}

/**
 * Builds an {@link APIError} from a non-2xx answer.
 *
 * @param {Response} res
 * @param {string} text the body
 */
function apiError(res, text) {
  /** @type {unknown} */
  let body = text;
  let message = text.slice(0, ERROR_SNIPPET_CHARS) || res.statusText;
  let type = null;
  let code = null;
  try {
    body = JSON.parse(text);
    const error = /** @type {{ error?: unknown }} */ (body)?.error;
    if (typeof error === 'object' && error !== null) {
      const e = /** @type {Record<string, unknown>} */ (error);
      if (typeof e.message === 'string') message = e.message;
      if (typeof e.type === 'string') type = e.type;
      // As in the Python SDK: Anthropic-style bodies name the kind only in `type`.
      code = typeof e.code === 'string' ? e.code : type;
    }
  } catch {
    // Not JSON (e.g. a proxy's HTML page): keep the text snippet as the message.
  }
  return new APIError(res.status, { message, type, code, body, headers: res.headers });
}

/**
 * Reads a whole body as text, re-arming the deadline before each read.
 *
 * @param {Response} res
 * @param {Deadline} deadline
 * @returns {Promise<string>}
 */
async function readText(res, deadline) {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    deadline.arm();
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    text += decoder.decode(value, { stream: true });
  }
}

/**
 * @typedef {object} RequestSpec
 * @property {typeof fetch} fetch
 * @property {string} method
 * @property {string} url
 * @property {Record<string, string>} headers
 * @property {string} [body]
 * @property {number} timeoutMs
 * @property {AbortSignal} [signal]
 */

/**
 * Sends a request and returns the parsed JSON body of a 2xx answer.
 *
 * @param {RequestSpec} spec
 * @returns {Promise<unknown>}
 */
export async function requestJson(spec) {
  const what = `${spec.method} ${spec.url}`;
  const deadline = new Deadline(spec.timeoutMs, spec.signal);
  deadline.arm();
  try {
    const res = await spec.fetch(spec.url, {
      method: spec.method,
      headers: { accept: 'application/json', ...spec.headers },
      body: spec.body,
      signal: deadline.signal,
    });
    const text = await readText(res, deadline);
    if (!res.ok) throw apiError(res, text);
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new BadResponseError(`${what}: answer is not JSON`, {
        status: res.status,
        body: text.slice(0, ERROR_SNIPPET_CHARS),
        cause: err,
      });
    }
  } catch (err) {
    throw deadline.translate(err, what);
  } finally {
    deadline.done();
  }
}

/**
 * Sends a request that answers with an event stream and returns the parsed `data` of each event.
 *
 * The request is made before this resolves, so relay errors (401, 429, ...) reject the returned promise
 * rather than surfacing on the first iteration. Events stop at `data: [DONE]`. Breaking out of the loop
 * cancels the response body, which closes the connection.
 *
 * @param {RequestSpec} spec
 * @returns {Promise<AsyncGenerator<unknown, void, undefined>>}
 */
export async function requestStream(spec) {
  const what = `${spec.method} ${spec.url}`;
  const deadline = new Deadline(spec.timeoutMs, spec.signal);
  deadline.arm();
  /** @type {Response} */
  let res;
  try {
    res = await spec.fetch(spec.url, {
      method: spec.method,
      headers: { accept: 'text/event-stream', ...spec.headers },
      body: spec.body,
      signal: deadline.signal,
    });
    if (!res.ok) throw apiError(res, await res.text());
    const type = res.headers.get('content-type') ?? '';
    if (!type.toLowerCase().startsWith('text/event-stream')) {
      await res.body?.cancel();
      throw new BadResponseError(`${what}: expected an event stream, got "${type}"`, { status: res.status });
    }
  } catch (err) {
    deadline.done();
    throw deadline.translate(err, what);
  }
  // Between the headers and the first read the caller may take its time; the idle timer runs per read.
  clearTimeout(deadline.timer);
  return streamEvents(/** @type {ReadableStream<Uint8Array>} */ (res.body), deadline, what, res);
}

/**
 * @param {ReadableStream<Uint8Array>} body
 * @param {Deadline} deadline
 * @param {string} what
 * @param {Response} res
 * @returns {AsyncGenerator<unknown, void, undefined>}
 */
async function* streamEvents(body, deadline, what, res) {
  const reader = body.getReader();
  async function* chunks() {
    for (;;) {
      deadline.arm();
      const { done, value } = await reader.read();
      clearTimeout(deadline.timer);
      if (done) return;
      yield value;
    }
  }
  try {
    for await (const event of parseSse(chunks())) {
      if (event.data === '[DONE]') return;
      let parsed;
      try {
        parsed = JSON.parse(event.data);
      } catch (err) {
        throw new BadResponseError(`${what}: stream event is not JSON`, {
          status: res.status,
          body: event.data.slice(0, ERROR_SNIPPET_CHARS),
          cause: err,
        });
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new BadResponseError(`${what}: stream event is not a JSON object`, {
          status: res.status,
          body: parsed,
        });
      }
      // Providers report mid-stream failures as an event carrying an `error` object.
      if (typeof parsed === 'object' && parsed !== null && 'error' in parsed && parsed.error) {
        throw apiError(res, event.data);
      }
      yield parsed;
    }
  } catch (err) {
    throw deadline.translate(err, what);
  } finally {
    deadline.done();
    // Releases the connection when the caller stops early or something failed; a no-op after the end.
    await reader.cancel().catch(() => {});
  }
}
