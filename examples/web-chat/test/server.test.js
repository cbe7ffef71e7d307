// The backend on its own, no relay or browser needed: what /api/session mints and for whom, what the
// static routes send (with their security headers), and the `npm start` program's checks.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { RelayAPIClient } from 'relayapi-tokens';

import { DEFAULT_EXPIRE_SECONDS, DEFAULT_MAX_CALLS, DEFAULT_MODEL, createChatServer } from '../server.js';

const FAKE_KEY = 'test-web-chat-key-2718';
const RAI = {
  version: 1,
  server: { scheme: 'http', host: '127.0.0.1', port: 9, base_path: '/relayapi/' },
  crypto: {
    method: 'aes-256-gcm-hkdf-sha256',
    key_id: 'web-chat-unit',
    key: randomBytes(32).toString('base64url'),
    tenant_id: 'web-chat',
  },
};
const client = new RelayAPIClient(RAI);

/**
 * Starts `server` on 127.0.0.1 port 0.
 *
 * @param {import('node:http').Server} server
 * @returns {Promise<string>} its origin
 */
async function listen(server) {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`;
}

/** @param {import('node:http').Server} server */
function stop(server) {
  server.closeAllConnections();
  server.close();
}

describe('POST /api/session', () => {
  /** @type {string[]} */
  const log = [];
  const server = createChatServer({ client, apiKey: FAKE_KEY, log: (l) => log.push(l) });
  /** @type {string} */
  let origin;
  before(async () => {
    origin = await listen(server);
  });
  after(() => stop(server));

  /** @param {RequestInit & { headers?: Record<string, string> }} [init] */
  const session = (init = {}) =>
    fetch(`${origin}/api/session`, { method: 'POST', ...init, headers: { origin, ...init.headers } });

  it('mints a chat-only, single-model URL bound to the page origin', async () => {
    const res = await session();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const doc = await res.json();
    assert.deepEqual(Object.keys(doc).sort(), ['baseURL', 'expiresAt', 'maxCalls', 'model']);
    const prefix = `${client.origin}/relayapi/`;
    assert.ok(doc.baseURL.startsWith(prefix), doc.baseURL);
    const token = doc.baseURL.slice(prefix.length);
    const claims = client.verifyToken(token);
    assert.equal(claims.prv, 'openai');
    assert.equal(claims.key, FAKE_KEY);
    assert.equal(claims.kref, undefined);
    assert.equal(claims.max, DEFAULT_MAX_CALLS);
    assert.equal(claims.exp - claims.iat, DEFAULT_EXPIRE_SECONDS);
    assert.deepEqual(claims.paths, ['/chat/completions']);
    assert.deepEqual(claims.models, [DEFAULT_MODEL]);
    assert.deepEqual(claims.origins, [origin]);
    assert.deepEqual(
      { model: doc.model, expiresAt: doc.expiresAt, maxCalls: doc.maxCalls },
      { model: DEFAULT_MODEL, expiresAt: claims.exp, maxCalls: DEFAULT_MAX_CALLS },
    );
    assert.ok(!log.join('\n').includes(token), 'the token is not logged');
    assert.ok(log.includes('POST /api/session 200'));
  });

  it('mints a fresh token on every call', async () => {
    const [a, b] = await Promise.all([session().then((r) => r.json()), session().then((r) => r.json())]);
    assert.notEqual(a.baseURL, b.baseURL);
  });

  it('answers only a page on its own origin', async () => {
    for (const other of ['http://localhost:1', 'https://evil.example', 'null']) {
      const res = await session({ headers: { origin: other } });
      assert.equal(res.status, 403, other);
      assert.match((await res.json()).error, /only pages on http:\/\/127\.0\.0\.1:\d+ may ask/);
    }
    // No Origin at all (curl, a script): not a page, so no URL either.
    const res = await fetch(`${origin}/api/session`, { method: 'POST' });
    assert.equal(res.status, 403);
  });

  it('refuses other methods and any real body', async () => {
    const get = await fetch(`${origin}/api/session`, { headers: { origin } });
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    const big = await session({ body: 'x'.repeat(4096) });
    assert.equal(big.status, 413);
    const small = await session({ body: '{}' });
    assert.equal(small.status, 200);
  });
});

describe('options', () => {
  it('keyRef, model, limits and an explicit page origin go into the token', async () => {
    const pageOrigin = 'https://chat.example.test';
    const server = createChatServer({
      client,
      keyRef: 'openai-main',
      model: 'gpt-4.1-nano',
      maxCalls: 3,
      expireSeconds: 60,
      pageOrigin,
      log: () => {},
    });
    const origin = await listen(server);
    try {
      const res = await fetch(`${origin}/api/session`, { method: 'POST', headers: { origin: pageOrigin } });
      assert.equal(res.status, 200);
      const { baseURL, model, maxCalls } = await res.json();
      const claims = client.decodeToken(new URL(baseURL).pathname.split('/')[2]);
      assert.equal(claims.kref, 'openai-main');
      assert.equal(claims.key, undefined);
      assert.deepEqual(
        [claims.max, claims.exp - claims.iat, claims.models, claims.origins],
        [3, 60, ['gpt-4.1-nano'], [pageOrigin]],
      );
      assert.deepEqual([model, maxCalls], ['gpt-4.1-nano', 3]);
      // The listening address is no longer the page origin once one is configured.
      const direct = await fetch(`${origin}/api/session`, { method: 'POST', headers: { origin } });
      assert.equal(direct.status, 403);
    } finally {
      stop(server);
    }
  });

  it('inconsistent options are refused at once', () => {
    assert.throws(() => createChatServer({ client }), /exactly one of apiKey and keyRef/);
    assert.throws(
      () => createChatServer({ client, apiKey: FAKE_KEY, keyRef: 'openai-main' }),
      /exactly one of apiKey and keyRef/,
    );
    assert.throws(
      () => createChatServer({ client: /** @type {any} */ (RAI), apiKey: FAKE_KEY }),
      /client must be a RelayAPIClient/,
    );
    for (const bad of ['chat.example.test', 'http://chat.example.test/', 'ftp://chat.example.test', '']) {
      assert.throws(() => createChatServer({ client, apiKey: FAKE_KEY, pageOrigin: bad }), /pageOrigin/, bad);
    }
  });

  it('a key the SDK refuses is a 500 for the page and a message in the server log', async (t) => {
    const errors = t.mock.method(console, 'error', () => {});
    const server = createChatServer({ client, apiKey: 'bad key\nwith a newline', log: () => {} });
    const origin = await listen(server);
    try {
      const res = await fetch(`${origin}/api/session`, { method: 'POST', headers: { origin } });
      assert.equal(res.status, 500);
      assert.deepEqual(await res.json(), { error: 'cannot mint a relay URL' });
      assert.match(String(errors.mock.calls[0].arguments[0]), /cannot mint a token/);
    } finally {
      stop(server);
    }
  });
});

describe('static routes', () => {
  const server = createChatServer({ client, apiKey: FAKE_KEY, log: () => {} });
  /** @type {string} */
  let origin;
  before(async () => {
    origin = await listen(server);
  });
  after(() => stop(server));

  it('serve the page with a CSP that lets it reach only itself and the relay', async () => {
    const res = await fetch(`${origin}/?utm=x`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.ok(csp.includes(`connect-src 'self' ${client.origin};`), csp);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    const html = await res.text();
    assert.match(html, /<script type="module" src="\/app\.js"><\/script>/);
    assert.ok(!html.includes(FAKE_KEY));
  });

  it('serve the bundle and the stylesheet, never the key', async () => {
    // `npm test` builds dist/app.js first.
    const js = await fetch(`${origin}/app.js`);
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.ok(!(await js.text()).includes(FAKE_KEY));
    const css = await fetch(`${origin}/style.css`);
    assert.equal(css.status, 200);
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
    const head = await fetch(`${origin}/style.css`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });

  it('answer 404 for anything else and 405 for writes', async () => {
    for (const path of ['/server.js', '/package.json', '/../server.js', '/dist/app.js', '/favicon.ico']) {
      assert.equal((await fetch(`${origin}${path}`)).status, 404, path);
    }
    const post = await fetch(`${origin}/`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  });
});

describe('npm start (server.js as a program)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relayapi-web-chat-cli-'));
  const raiPath = join(dir, 'test.rai');
  writeFileSync(raiPath, JSON.stringify(RAI));
  const script = fileURLToPath(new URL('../server.js', import.meta.url));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** @param {Record<string, string>} env */
  const run = (env) =>
    spawn(process.execPath, [script], {
      env: { PATH: process.env.PATH, RELAYAPI_RAI: raiPath, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  /** @param {import('node:child_process').ChildProcess} child */
  async function finish(child) {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    const [code] = await once(child, 'exit');
    return { code, stdout, stderr };
  }

  it('refuses to start without exactly one credential, or on a wildcard host without PUBLIC_ORIGIN', async () => {
    let r = await finish(run({}));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /set exactly one of OPENAI_API_KEY .* and RELAYAPI_KEY_REF/);
    r = await finish(run({ OPENAI_API_KEY: FAKE_KEY, RELAYAPI_KEY_REF: 'openai-main' }));
    assert.equal(r.code, 2);
    r = await finish(run({ OPENAI_API_KEY: FAKE_KEY, HOST: '0.0.0.0' }));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /set PUBLIC_ORIGIN/);
    r = await finish(run({ OPENAI_API_KEY: FAKE_KEY, PORT: 'eighty' }));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /PORT must be a port number/);
    r = await finish(run({ OPENAI_API_KEY: FAKE_KEY, RELAYAPI_RAI: join(dir, 'missing.rai') }));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing\.rai/);
  });

  it('serves until SIGTERM, printing where to open the page and never the key', async () => {
    const child = run({ OPENAI_API_KEY: FAKE_KEY, PORT: '0' });
    const done = finish(child);
    const lines = createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) });
    const [first] = await once(lines, 'line');
    const url = /open (http:\/\/127\.0\.0\.1:\d+)\//.exec(first)?.[1];
    assert.ok(url, first);
    const res = await fetch(`${url}/api/session`, { method: 'POST', headers: { origin: url } });
    assert.equal(res.status, 200);
    child.kill('SIGTERM');
    const { code, stdout, stderr } = await done;
    assert.equal(code, 0, stderr);
    assert.match(stdout, /POST \/api\/session 200/);
    assert.ok(!`${first}\n${stdout}\n${stderr}`.includes(FAKE_KEY));
  });
});
