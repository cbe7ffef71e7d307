// The HTTP helpers against a tiny node:http server on 127.0.0.1 that records and asserts what the SDK
// sent: URLs, headers, bodies, admin signatures, streams, relay errors, timeouts and aborts.
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { adminKey } from '../src/admin.js';
import { RelayAPIClient } from '../src/index.js';
import { raiObject, readVector, vectorKeyring } from './helpers.js';

const VECTOR = readVector('generate.json')[0];
const TOKEN = VECTOR.token;
const JTI = VECTOR.claims.jti;

/**
 * @typedef {{ method: string, url: string, headers: import('node:http').IncomingHttpHeaders, body: string }} Seen
 * @typedef {(req: Seen, res: import('node:http').ServerResponse) => void | Promise<void>} Handler
 */

/** @type {Seen[]} */
let seen = [];
/** @type {Handler} */
let handler = (_req, res) => res.end();
const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const record = {
    method: req.method ?? '',
    url: req.url ?? '',
    headers: req.headers,
    body: Buffer.concat(chunks).toString(),
  };
  seen.push(record);
  await handler(record, res);
});
/** @type {RelayAPIClient} */
let client;
let port = 0;

before(async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
  client = new RelayAPIClient(raiObject({ server: { port } }), { timeout: 5 });
});
after(() => {
  server.closeAllConnections();
  server.close();
});
beforeEach(() => {
  seen = [];
});

const json = (
  /** @type {import('node:http').ServerResponse} */ res,
  /** @type {number} */ status,
  /** @type {unknown} */ body,
  headers = {},
) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};
const sse = (/** @type {import('node:http').ServerResponse} */ res) =>
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });

describe('provider helpers send the header form', () => {
  it('chat posts model, messages and extra parameters with the token as a bearer', async () => {
    handler = (_req, res) => json(res, 200, { id: 'chatcmpl-1', choices: [{ message: { content: 'hi' } }] });
    const messages = [{ role: 'user', content: 'Hello' }];
    const out = await client.chatCompletions(TOKEN, { model: 'gpt-4o-mini', messages, temperature: 0.2 });
    assert.deepEqual(out, { id: 'chatcmpl-1', choices: [{ message: { content: 'hi' } }] });
    assert.equal(seen.length, 1);
    const [req] = seen;
    assert.equal(req.method, 'POST');
    assert.equal(req.url, '/relayapi/chat/completions');
    assert.equal(req.headers.authorization, `Bearer ${TOKEN}`);
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers.accept, 'application/json');
    assert.match(String(req.headers['user-agent']), /^relayapi-tokens-js\//);
    assert.deepEqual(JSON.parse(req.body), { temperature: 0.2, model: 'gpt-4o-mini', messages });
    assert.ok(!req.url.includes(TOKEN), 'the token must not be in the URL');
  });

  it('generateImage and createEmbedding post to their endpoints', async () => {
    handler = (_req, res) => json(res, 200, { data: [] });
    await client.imagesGenerations(TOKEN, { prompt: 'a red fox', size: '256x256', n: 1 });
    await client.embeddings(TOKEN, { model: 'text-embedding-3-small', input: ['a', 'b'] });
    assert.deepEqual(
      seen.map((r) => [r.url, JSON.parse(r.body)]),
      [
        ['/relayapi/images/generations', { size: '256x256', n: 1, prompt: 'a red fox' }],
        ['/relayapi/embeddings', { model: 'text-embedding-3-small', input: ['a', 'b'] }],
      ],
    );
  });

  it('refuses bad arguments before sending anything', async () => {
    await assert.rejects(client.chatCompletions('nope', { model: 'm', messages: [] }), { param: 'token' });
    await assert.rejects(client.chatCompletions(TOKEN, /** @type {any} */ ({ model: 'm' })), {
      param: 'messages',
    });
    await assert.rejects(client.chatCompletions(TOKEN, /** @type {any} */ ({ messages: [] })), {
      param: 'model',
    });
    await assert.rejects(client.imagesGenerations(TOKEN, /** @type {any} */ ({})), { param: 'prompt' });
    await assert.rejects(client.embeddings(TOKEN, /** @type {any} */ ({ model: 'm' })), {
      param: 'input',
    });
    assert.equal(seen.length, 0);
  });

  it('healthCheck gets /health at the origin', async () => {
    handler = (_req, res) => json(res, 200, { status: 'ok', version: '0.1.0', uptime_secs: 3, requests: {} });
    assert.equal((await client.healthCheck()).status, 'ok');
    assert.equal(seen[0].method, 'GET');
    assert.equal(seen[0].url, '/health');
    assert.equal(seen[0].headers.authorization, undefined);
  });
});

describe('streamed chat', () => {
  it('yields each chunk as it arrives and stops at [DONE]', async () => {
    let release = () => {};
    const released = new Promise((r) => {
      release = () => r(undefined);
    });
    handler = async (_req, res) => {
      sse(res);
      res.write('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n');
      // The second event is only produced after the client has shown it received the first one.
      await released;
      res.write('data: {"choices":[{"delta":{"content":"lo"}}]}\r\n\r\n: keep-alive\n\n');
      res.write('data: [DONE]\n\ndata: {"after":"done"}\n\n');
      res.end();
    };
    const stream = await client.chatCompletions(TOKEN, { model: 'gpt-4o-mini', messages: [], stream: true });
    assert.deepEqual(JSON.parse(seen[0].body).stream, true);
    assert.equal(seen[0].headers.accept, 'text/event-stream');
    const parts = [];
    for await (const chunk of stream) {
      parts.push(/** @type {any} */ (chunk).choices[0].delta.content);
      release();
    }
    assert.deepEqual(parts, ['Hel', 'lo']);
  });

  it('closes the connection when the caller stops early', async () => {
    const closed = new Promise((resolve) => {
      handler = (_req, res) => {
        sse(res);
        res.on('close', () => resolve(true));
        const timer = setInterval(() => res.write('data: {"n":1}\n\n'), 20);
        res.on('close', () => clearInterval(timer));
      };
    });
    const stream = await client.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true });
    for await (const _ of stream) break;
    assert.equal(await closed, true);
  });

  it('rejects the call itself when the relay refuses the request', async () => {
    handler = (_req, res) =>
      json(
        res,
        401,
        { error: { message: 'token expired', type: 'invalid_request_error', code: 'token_expired' } },
        {
          'x-should-retry': 'false',
        },
      );
    await assert.rejects(client.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true }), {
      code: 'ERR_API',
      status: 401,
      errorCode: 'token_expired',
      shouldRetry: false,
    });
  });

  it('turns an error event into APIError and a broken event into BadResponseError', async () => {
    handler = (_req, res) => {
      sse(res);
      res.end('data: {"n":1}\n\ndata: {"error":{"message":"upstream died","code":"upstream_error"}}\n\n');
    };
    let stream = await client.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true });
    const got = [];
    await assert.rejects(
      (async () => {
        for await (const c of stream) got.push(c);
      })(),
      { code: 'ERR_API', errorCode: 'upstream_error' },
    );
    assert.deepEqual(got, [{ n: 1 }]);

    handler = (_req, res) => {
      sse(res);
      res.end('data: {not json\n\n');
    };
    stream = await client.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true });
    await assert.rejects(stream.next(), { code: 'ERR_BAD_RESPONSE' });
  });

  it('refuses a 2xx answer that is not an event stream', async () => {
    handler = (_req, res) => json(res, 200, { not: 'a stream' });
    await assert.rejects(client.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true }), {
      code: 'ERR_BAD_RESPONSE',
    });
  });

  it('times out an idle stream per read, but never a stream that keeps producing', async () => {
    const quick = new RelayAPIClient(raiObject({ server: { port } }), { timeout: 0.3 });
    handler = async (_req, res) => {
      sse(res);
      // 8 events 100 ms apart: longer in total than the timeout, never idle for as long.
      for (let i = 0; i < 8; i += 1) {
        res.write(`data: {"i":${i}}\n\n`);
        await sleep(100);
      }
      res.end('data: [DONE]\n\n');
    };
    let n = 0;
    for await (const _ of await quick.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true }))
      n += 1;
    assert.equal(n, 8);

    handler = (_req, res) => {
      sse(res);
      res.write('data: {"i":0}\n\n');
      // ...and then silence.
    };
    const stream = await quick.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true });
    assert.deepEqual((await stream.next()).value, { i: 0 });
    await assert.rejects(stream.next(), { code: 'ERR_CONNECTION', message: /no answer within 0.3 s/ });
  });

  it('times a JSON answer per read too, like the Python SDK (sdk/api.json "timeout")', async () => {
    const quick = new RelayAPIClient(raiObject({ server: { port } }), { timeout: 0.5 });
    handler = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      // A JSON body in 8 pieces 150 ms apart: longer in total than the timeout, never idle for as long.
      const text = JSON.stringify({ pieces: 'x'.repeat(70) });
      for (let i = 0; i < 8; i += 1) {
        res.write(text.slice(i * 10, (i + 1) * 10));
        await sleep(150);
      }
      res.end(text.slice(80));
    };
    assert.deepEqual(await quick.healthCheck(), { pieces: 'x'.repeat(70) });

    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":');
      // ...and then silence.
    };
    await assert.rejects(quick.healthCheck(), { code: 'ERR_CONNECTION', message: /no answer within 0.5 s/ });
  });

  it('reports a 2xx it cannot read as BadResponseError with the status', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>');
    };
    await assert.rejects(client.healthCheck(), { code: 'ERR_BAD_RESPONSE', status: 200, body: '<html>' });
    handler = (_req, res) => {
      sse(res);
      res.end('data: 42\n\n');
    };
    const stream = await client.chatCompletions(TOKEN, { model: 'm', messages: [], stream: true });
    await assert.rejects(stream.next(), { code: 'ERR_BAD_RESPONSE', message: /not a JSON object/ });
  });
});

describe('errors', () => {
  it('maps relay error bodies onto APIError', async () => {
    handler = (_req, res) =>
      json(
        res,
        429,
        { error: { message: 'calls used up', type: 'rate_limit_error', code: 'token_exhausted' } },
        {
          'x-should-retry': 'false',
        },
      );
    await assert.rejects(client.chatCompletions(TOKEN, { model: 'm', messages: [] }), (err) => {
      assert.equal(err.name, 'APIError');
      assert.equal(err.code, 'ERR_API');
      assert.equal(err.status, 429);
      assert.equal(err.errorCode, 'token_exhausted');
      assert.equal(err.errorType, 'rate_limit_error');
      assert.equal(err.shouldRetry, false);
      assert.match(err.message, /429 token_exhausted: calls used up/);
      return true;
    });

    handler = (_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>bad gateway</html>');
    };
    await assert.rejects(client.healthCheck(), {
      status: 502,
      errorCode: null,
      shouldRetry: true,
      body: '<html>bad gateway</html>',
    });
  });

  it('refuses a 2xx answer that is not JSON', async () => {
    handler = (_req, res) => res.end('not json');
    await assert.rejects(client.healthCheck(), { code: 'ERR_BAD_RESPONSE' });
  });

  it('reports an unreachable relay as RelayConnectionError', async () => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const closedPort = /** @type {import('node:net').AddressInfo} */ (probe.address()).port;
    probe.close();
    await once(probe, 'close');
    const nowhere = new RelayAPIClient(raiObject({ server: { port: closedPort } }), { timeout: 5 });
    await assert.rejects(nowhere.healthCheck(), { name: 'RelayConnectionError', code: 'ERR_CONNECTION' });
  });

  it('gives up after the timeout when the relay does not answer', async () => {
    handler = () => {}; // never answers
    const quick = new RelayAPIClient(raiObject({ server: { port } }), { timeout: 0.2 });
    const started = Date.now();
    await assert.rejects(quick.healthCheck(), { code: 'ERR_CONNECTION', message: /no answer within 0.2 s/ });
    assert.ok(Date.now() - started < 3000);
  });

  it("surfaces the caller's own abort as the abort reason", async () => {
    handler = () => {};
    const controller = new AbortController();
    const pending = client.healthCheck({ signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(pending, { name: 'AbortError' });
    await assert.rejects(client.healthCheck({ signal: AbortSignal.abort() }), { name: 'AbortError' });
  });
});

describe('admin API', () => {
  const tenantKey = vectorKeyring().get('k1').key;

  /** Checks a request's signature the way the relay does (docs/admin-api.md). */
  function assertSigned(/** @type {Seen} */ req) {
    const m = /^RelayAPI-HMAC-SHA256 kid=([^,]+),ts=(\d+),sig=([A-Za-z0-9_-]+)$/.exec(
      String(req.headers.authorization),
    );
    assert.ok(m, `bad authorization header ${req.headers.authorization}`);
    const [, kid, ts, sig] = m;
    assert.equal(kid, 'k1');
    assert.ok(Math.abs(Number(ts) - Date.now() / 1000) <= 5, 'ts is the current UTC second');
    const bodyHash = createHash('sha256').update(req.body).digest('hex');
    const mac = createHmac('sha256', adminKey(tenantKey))
      .update(`${req.method}\n${req.url}\n${ts}\n${bodyHash}`)
      .digest('base64url');
    assert.equal(sig, mac);
  }

  const usage = {
    token_id: JTI,
    tenant_id: 'acme',
    calls_used: 3,
    max_calls: 100,
    remaining: 97,
    first_used_at: 1790000012,
    last_used_at: 1790000420,
    expires_at: 1790003600,
    revoked: false,
    tokens: { input: 5120, output: 2048, cached_input: 1024 },
    cost: 33280,
  };

  it('getUsage takes a token (opened locally) or a token id', async () => {
    handler = (_req, res) => json(res, 200, usage);
    assert.deepEqual(await client.getUsage(TOKEN), usage);
    assert.deepEqual(await client.getUsage(JTI), usage);
    for (const req of seen) {
      assert.equal(req.method, 'GET');
      assert.equal(req.url, `/admin/v1/tokens/${JTI}`);
      assert.equal(req.body, '');
      assertSigned(req);
    }
  });

  it('revoke posts to the token and revokeBefore posts the time', async () => {
    handler = (req, res) =>
      req.url.endsWith('/revoke')
        ? json(res, 200, { ...usage, revoked: true })
        : json(res, 200, { tenant_id: 'acme', revoked_before: 1790000000 });
    assert.equal((await client.revoke(TOKEN)).revoked, true);
    assert.deepEqual(await client.revokeBefore(1790000000), {
      tenant_id: 'acme',
      revoked_before: 1790000000,
    });
    assert.equal(seen[0].method, 'POST');
    assert.equal(seen[0].url, `/admin/v1/tokens/${JTI}/revoke`);
    assert.equal(seen[0].body, '');
    assert.equal(seen[1].url, '/admin/v1/revoke-before');
    assert.equal(seen[1].body, '{"before":1790000000}');
    assert.equal(seen[1].headers['content-type'], 'application/json');
    for (const req of seen) assertSigned(req);
  });

  it('refuses bad ids, foreign tokens and bad times without sending anything', async () => {
    await assert.rejects(client.getUsage('not-an-id'), { param: 'tokenOrId' });
    await assert.rejects(client.revoke(JTI.toUpperCase()), { param: 'tokenOrId' });
    await assert.rejects(client.getUsage('rt1.AAAA'), { code: 'ERR_INVALID_TOKEN' });
    await assert.rejects(client.revokeBefore(1.5), { param: 'ts' });
    await assert.rejects(client.revokeBefore(-1), { param: 'ts' });
    assert.equal(seen.length, 0);
  });

  const userUsage = {
    tenant_id: 'acme',
    user_id: 'user 42/a',
    windows: {
      day: {
        period: '2026-12-07',
        calls: 3,
        tokens: { input: 120, output: 80, cached_input: 0 },
        cost: 1500,
        resets_at: 1796688000,
      },
      month: {
        period: '2026-12',
        calls: 9,
        tokens: { input: 400, output: 300, cached_input: 64 },
        cost: 4100,
        resets_at: 1798761600,
      },
      all: {
        period: null,
        calls: 9,
        tokens: { input: 400, output: 300, cached_input: 64 },
        cost: 4100,
        resets_at: null,
      },
    },
  };

  it('getUserUsage sends the user id as one percent-encoded segment (the bytes Python sends)', async () => {
    handler = (_req, res) => json(res, 200, userUsage);
    for (const [userId, segment] of [
      ['user-42', 'user-42'],
      ['user 42/a', 'user%2042%2Fa'],
      ['Az09-._~', 'Az09-._~'],
      [
        '!*\'()"%+:@?#&=;,$[]\\^`{|}<>',
        '%21%2A%27%28%29%22%25%2B%3A%40%3F%23%26%3D%3B%2C%24%5B%5D%5C%5E%60%7B%7C%7D%3C%3E',
      ],
      ['u'.repeat(128), 'u'.repeat(128)],
    ]) {
      seen.length = 0;
      assert.deepEqual(await client.getUserUsage(userId), userUsage);
      assert.equal(seen.length, 1);
      assert.equal(seen[0].method, 'GET');
      assert.equal(seen[0].url, `/admin/v1/users/${segment}/usage`);
      assert.equal(seen[0].body, '');
      assertSigned(seen[0]);
    }
  });

  it('getUserUsage refuses a user id no token can carry, without sending', async () => {
    for (const bad of ['', 'u'.repeat(129), 'line\nbreak', 'usér', '.', '..', null, 42]) {
      await assert.rejects(client.getUserUsage(/** @type {any} */ (bad)), { param: 'userId' });
    }
    assert.equal(seen.length, 0);
  });

  it('getUserUsage reports relay errors as APIError', async () => {
    handler = (_req, res) =>
      json(res, 503, { error: { message: 'store unavailable', type: 'server', code: 'store_unavailable' } });
    await assert.rejects(client.getUserUsage('u1'), { status: 503, errorCode: 'store_unavailable' });
  });

  it('reports a refused signature as APIError', async () => {
    handler = (_req, res) =>
      json(res, 401, {
        error: { message: 'invalid admin signature', type: 'auth', code: 'invalid_admin_signature' },
      });
    await assert.rejects(client.getUsage(JTI), { status: 401, errorCode: 'invalid_admin_signature' });
  });
});
